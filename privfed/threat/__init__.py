"""Threat model, protection catalogue and per-round plans.

Threat model: the user declares the adversary (:class:`ThreatModel`: server trusted or honest-but-curious, up to c
colluding clients, expected dropout, whether the server may see the aggregate, an (epsilon, delta) target); the
catalogue (:mod:`privfed.threat.catalogue`) states what each protection guarantees; a plan (one protection per
round) is checked before any round runs and refused, with the round, the protection, the unmet requirement and the
protections that would meet it, when it falls short.

Interface used by ``privfed run`` / ``privfed compare`` (stable):

``resolve_plan(spec, rounds, threat=None) -> list[PlannedRound]`` turns a plan spec (``"plaintext"``,
``"1-3:ckks,4-6:secagg+dp"``, ``"auto"`` or a callable ``round -> name``) into one protection per round and checks
it against ``threat`` (a :class:`ThreatModel`, a mapping of the threat keys, or the compact string), raising
:class:`PlanRefused` when it falls short. Keyword-only extras: ``clients`` (clients per round; also accepted as a
``clients`` key in the threat mapping) and ``options`` (protocol options per protection name) enable the numeric
SecAgg/HE checks.
"""

from __future__ import annotations

from privfed.threat.catalogue import CATALOGUE, Protection, RoundContext, security_table, unmet_requirements
from privfed.threat.model import ThreatModel
from privfed.threat.plan import AUTO, PlannedRound, PlanRefused, parse_spec, plan_to_json, resolve_plan

__all__ = [
    "AUTO",
    "CATALOGUE",
    "PlanRefused",
    "PlannedRound",
    "Protection",
    "RoundContext",
    "ThreatModel",
    "parse_spec",
    "plan_to_json",
    "resolve_plan",
    "security_table",
    "unmet_requirements",
]
