"""Threat model, protection catalogue and per-round plans.

Interface used by ``privfed run`` / ``privfed compare`` (stable; the threat-model work fills in the checks):

``resolve_plan(spec, rounds, threat=None) -> list[PlannedRound]`` turns a plan spec (``"plaintext"``,
``"1-3:ckks,4-6:secagg+dp"``, ``"auto"`` or a callable ``round -> name``) into one protection per round and checks
it against ``threat`` (a mapping of the threat keys), raising :class:`PlanRefused` when it falls short.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from protocols.errors import ConfigError

__all__ = ["PlannedRound", "PlanRefused", "resolve_plan"]


class PlanRefused(ConfigError):
    """A plan does not meet the declared threat model (the message names round, protection and requirement)."""


@dataclass(frozen=True)
class PlannedRound:
    round: int
    protection: str
    reason: str


def resolve_plan(spec: str | Callable[[int], str], rounds: int,
                 threat: Mapping[str, Any] | None = None) -> list[PlannedRound]:
    """Provisional version: parses the compact syntax without threat checks (replaced by privfed.threat.plan)."""
    if callable(spec):
        return [PlannedRound(r, spec(r), "callable plan") for r in range(1, rounds + 1)]
    plan: dict[int, str] = {}
    for part in str(spec).split(","):
        span, sep, name = part.strip().rpartition(":")
        if not sep:
            for r in range(1, rounds + 1):
                plan.setdefault(r, name)
            continue
        first, _, last = span.partition("-")
        for r in range(int(first), int(last or first) + 1):
            plan[r] = name
    missing = [r for r in range(1, rounds + 1) if r not in plan]
    if missing:
        raise ConfigError(f"plan {spec!r} leaves rounds {missing} without a protection")
    return [PlannedRound(r, plan[r], "as planned") for r in range(1, rounds + 1)]
