"""Per-round protection plans, checked against the declared threat model before any round runs.

Threat model: a plan is accepted only if every round's protection meets the declared
:class:`~privfed.threat.model.ThreatModel` according to :mod:`privfed.threat.catalogue`; otherwise
:class:`PlanRefused` names the round, the protection, each unmet requirement and the protections that would meet it.

A plan spec is one of:

* the compact syntax ``"1-5:ckks,6-20:secagg+dp"`` (spans ``A-B:name`` or ``A:name``; one entry without a span,
  e.g. ``"plaintext"`` or ``"1-3:ckks,secagg"``, fills every round no span names; spans may not overlap);
* ``"auto"`` (also usable as a span's name, ``"1-3:ckks,4-10:auto"``): the cheapest protection by the measured
  costs (:mod:`privfed.threat.costs`) that meets the threat model in that round; baselines are never chosen;
* a Python callable ``round -> name``.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from protocols import registry
from protocols.errors import ConfigError
from privfed.threat import catalogue
from privfed.threat.budget import check_budget
from privfed.threat.costs import CostTable, load_costs
from privfed.threat.model import MALICIOUS, ThreatModel

__all__ = ["PlannedRound", "PlanRefused", "AUTO", "parse_spec", "resolve_plan", "plan_to_json", "available"]

AUTO = "auto"
PlanSpec = str | Callable[[int], str]


class PlanRefused(ConfigError):
    """A plan does not meet the declared threat model (the message names round, protection and requirement)."""


@dataclass(frozen=True)
class PlannedRound:
    """One round of a checked plan: the protection it uses and why that protection meets the threat model."""

    round: int
    protection: str
    reason: str

    def __post_init__(self) -> None:
        if isinstance(self.round, bool) or not isinstance(self.round, int) or self.round < 1:
            raise ConfigError(f"planned round must be a whole number >= 1, got {self.round!r}")
        if not isinstance(self.protection, str) or not self.protection:
            raise ConfigError(f"round {self.round}: protection must be a non-empty name")


def parse_spec(spec: str, rounds: int) -> dict[int, str]:
    """The compact syntax -> {round: name} for rounds 1..rounds (names unchecked; ``auto`` kept as is)."""
    _check_rounds(rounds)
    plan: dict[int, str] = {}
    fallback: str | None = None
    for part in str(spec).split(","):
        part = part.strip()
        if not part:
            raise ConfigError(f"plan {spec!r}: empty entry")
        span, sep, name = part.rpartition(":")
        name = name.strip()
        if not name:
            raise ConfigError(f"plan {spec!r}: entry {part!r} has no protection name")
        if not sep:
            if fallback is not None:
                raise ConfigError(f"plan {spec!r}: more than one entry without a round span")
            fallback = name
            continue
        first_text, dash, last_text = span.strip().partition("-")
        try:
            first = int(first_text)
            last = int(last_text) if dash else first
        except ValueError:
            raise ConfigError(f"plan {spec!r}: {span.strip()!r} is not a round span like 3 or 1-5") from None
        if not 1 <= first <= last:
            raise ConfigError(f"plan {spec!r}: span {span.strip()!r} must run forwards from round 1 or later")
        if last > rounds:
            raise ConfigError(f"plan {spec!r}: span {span.strip()!r} goes past the last round ({rounds})")
        for r in range(first, last + 1):
            if r in plan:
                raise ConfigError(f"plan {spec!r}: round {r} is given twice")
            plan[r] = name
    for r in range(1, rounds + 1):
        if r not in plan and fallback is not None:
            plan[r] = fallback
    missing = [r for r in range(1, rounds + 1) if r not in plan]
    if missing:
        raise ConfigError(f"plan {spec!r} leaves rounds {_spans(missing)} without a protection")
    return plan


def available(name: str) -> bool:
    """Whether protection ``name`` can be used here: its module and optional dependencies import and its factory
    is implemented (a factory refusing default options still counts: that is a configuration matter)."""
    target = registry._BUILTIN.get(name)  # noqa: SLF001 - read-only use of the registry's own table
    if target is None:
        return name in registry.names()
    module_name, attribute = target.split(":")
    try:
        if importlib.util.find_spec(module_name) is None:
            return False
        factory = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(factory, type):
            factory()
    except (ImportError, AttributeError, NotImplementedError):
        return False
    except Exception:  # noqa: BLE001 - bad default options: implemented, just needs configuring
        return True
    return True


def resolve_plan(spec: PlanSpec, rounds: int, threat: ThreatModel | Mapping[str, Any] | str | None = None, *,
                 clients: int | None = None, options: Mapping[str, Mapping[str, Any]] | None = None,
                 costs: CostTable | None = None,
                 is_available: Callable[[str], bool] | None = None,
                 model_size: int | None = None) -> list[PlannedRound]:
    """One checked protection per round, or :class:`PlanRefused`.

    ``threat`` is a ThreatModel, a ``[threat]`` mapping (an extra ``clients`` key there is the round's client
    count, for the FedAvg loop's convenience) or the compact string; None means no adversary declared (trusted
    server, no DP target). ``clients`` (clients per round) enables the numeric SecAgg and HE checks; ``options``
    maps a protection name to its protocol options (e.g. ``{"secagg": {"threshold": 7}}``). ``auto`` ranks by
    ``costs`` (default :func:`~privfed.threat.costs.load_costs`) among protections that pass ``is_available``
    (default :func:`available`). ``model_size`` (parameters) sharpens secagg+dp's planned epsilon (its rounding
    slack grows with it; default :data:`~privfed.threat.budget.DEFAULT_MODEL_SIZE`).
    """
    _check_rounds(rounds)
    if isinstance(threat, Mapping) and "clients" in threat:
        threat = dict(threat)
        clients = clients if clients is not None else int(threat.pop("clients"))
    model = ThreatModel.coerce(threat)
    options = options or {}
    if callable(spec):
        wanted = {r: spec(r) for r in range(1, rounds + 1)}
        for r, name in wanted.items():
            if not isinstance(name, str) or not name:
                raise ConfigError(f"plan callable returned {name!r} for round {r}; it must return a protection name")
    else:
        wanted = parse_spec(spec, rounds)
    known = set(catalogue.names())
    for r, name in wanted.items():
        if name != AUTO and name not in known:
            if name in registry.names():
                raise PlanRefused(f"round {r}: protection {name!r} has no entry in the threat catalogue, so privfed "
                                  f"cannot say what it guarantees; use one of {', '.join(sorted(known))}")
            raise ConfigError(f"round {r}: unknown protection {name!r}; choose from {AUTO}, {', '.join(known)}")
    table = costs if costs is not None else load_costs()
    check_available = is_available or available

    def context(name: str) -> catalogue.RoundContext:
        return catalogue.RoundContext(clients, options.get(name, {}))

    # the round's context (threat, clients, options) is the same in every round, so each protection is judged once
    # and the verdict reused: a plan of many rounds costs what a plan of its distinct protections costs
    @functools.cache
    def meeting() -> tuple[str, ...]:
        good = [n for n in catalogue.names(include_baselines=False)
                if not catalogue.unmet_requirements(n, model, context(n))]
        return tuple(sorted(good, key=lambda n: (table.score(n), n)))

    @functools.cache
    def verdict(name: str) -> tuple[str | None, tuple[str, ...], str]:
        """(chosen protection or None, unmet requirements, reason) for ``name`` (or auto)."""
        if name == AUTO:
            candidates = [n for n in meeting() if _auto_may_pick(catalogue.get(n), model) and check_available(n)]
            if not candidates:
                return None, (_auto_failure(model, context),), ""
            chosen = candidates[0]
            return chosen, (), (f"auto: cheapest of {len(candidates)} meeting the threat model "
                                f"(~{table.score(chosen):.3g} s/round at the reference size); "
                                + catalogue.explain(chosen, model, context(chosen)))
        unmet = tuple(catalogue.unmet_requirements(name, model, context(name)))
        return (None, unmet, "") if unmet else (name, (), catalogue.explain(name, model, context(name)))

    planned: list[PlannedRound] = []
    failures: list[tuple[int, str, tuple[str, ...], tuple[str, ...]]] = []
    for r in range(1, rounds + 1):
        chosen, unmet, reason = verdict(wanted[r])
        if chosen is None:
            failures.append((r, wanted[r], unmet, meeting()))
        else:
            planned.append(PlannedRound(r, chosen, reason))
    if failures:
        raise PlanRefused(_refusal(failures, model))
    for name in dict.fromkeys(p.protection for p in planned):  # options invalid for the protocol itself
        problem = _invalid_options(name, options.get(name, {}))
        if problem:
            raise PlanRefused(f"plan refused under the threat model ({model.describe()}):\n- protection {name!r}: "
                              f"its options are invalid: {problem}.")
    if model.wants_dp:
        try:
            budget = check_budget([(p.round, p.protection) for p in planned], model, clients, options, model_size)
        except ConfigError as exc:
            raise PlanRefused(f"plan refused under the threat model ({model.describe()}):\n- {exc}.") from None
        if not budget.meets and budget.configured:
            first = budget.rounds[0] if budget.rounds else 1
            raise PlanRefused(f"plan refused under the threat model ({model.describe()}):\n- round {first} (and "
                              f"every DP round after it): {budget.detail}.")
        dp_rounds = set(budget.rounds)
        planned = [PlannedRound(p.round, p.protection, f"{p.reason}; {budget.detail}")
                   if p.round in dp_rounds else p for p in planned]
    return planned


def plan_to_json(planned: Iterable[PlannedRound], threat: ThreatModel | None = None) -> dict[str, Any]:
    """``{"rounds": [{"round": 1, "protection": "...", "reason": "..."}, ...]}`` (plus the threat model if given)."""
    out: dict[str, Any] = {"rounds": [{"round": p.round, "protection": p.protection, "reason": p.reason}
                                      for p in planned]}
    if threat is not None:
        out["threat"] = threat.as_dict()
    return out


def _invalid_options(name: str, opts: Mapping[str, Any]) -> str | None:
    """The protocol's own construction-time validation of ``opts`` (None when valid or not installed here)."""
    try:
        registry.create(name, {"max_weight": 1.0, "clip": 1.0, **dict(opts)})
    except ConfigError as exc:
        return str(exc)
    except Exception:  # noqa: BLE001 - an optional dependency missing here: the run will say so
        return None
    return None


def _auto_may_pick(p: catalogue.Protection, model: ThreatModel) -> bool:
    """``auto`` adds no DP noise unless a target asks for it (noise costs accuracy, which no bench figure shows),
    and picks client-side noise (local DP, DP-SGD) only when the user declared that it is acceptable."""
    if p.has_dp and not model.wants_dp:
        return False
    if p.dp in ("local", "dp-sgd"):
        return model.update_privacy == "local-dp" or (p.dp == "dp-sgd" and model.dp_unit == "record")
    return True


def _auto_failure(model: ThreatModel, context: Callable[[str], catalogue.RoundContext]) -> str:
    if model.server == MALICIOUS:
        return ("auto does not pick a protection against a malicious server: name one with active checks, e.g. "
                "--plan secagg -o secagg.active=true (also paillier, ckks)")
    reasons = []
    for name in catalogue.names(include_baselines=False):
        unmet = catalogue.unmet_requirements(name, model, context(name))
        reasons.append(f"{name}: {unmet[0]}" if unmet else f"{name}: not installed here")
    return "no available protection meets the threat model (" + "; ".join(reasons) + ")"


def _refusal(failures: list[tuple[int, str, tuple[str, ...], tuple[str, ...]]], model: ThreatModel) -> str:
    """Group consecutive rounds that fail the same way; every group names its first round as 'round N'."""
    groups: list[list[Any]] = []
    for r, name, unmet, good in failures:
        if groups and groups[-1][1:] == [name, unmet, good] and groups[-1][0][-1] == r - 1:
            groups[-1][0].append(r)
        else:
            groups.append([[r], name, unmet, good])
    lines = [f"plan refused under the threat model ({model.describe()}):"]
    for rounds_, name, unmet, good in groups:
        rest = rounds_[1:]
        where = f"round {rounds_[0]}"
        if rest:
            where += f" (and round{'s' if len(rest) > 1 else ''} {_spans(rest)})"
        what = "auto" if name == AUTO else f"protection {name!r}"
        lines.append(f"- {where}: {what} does not meet it: " + "; ".join(unmet) + ".")
        if name != AUTO:
            lines.append(f"  protections that would meet it in round {rounds_[0]}: "
                         + (", ".join(good) if good else "none in privfed"))
    return "\n".join(lines)


def _spans(values: list[int]) -> str:
    out: list[str] = []
    start = prev = values[0]
    for v in values[1:] + [None]:  # type: ignore[list-item]
        if v is not None and v == prev + 1:
            prev = v
            continue
        out.append(str(start) if start == prev else f"{start}-{prev}")
        if v is not None:
            start = prev = v
    return ", ".join(out)


#: a plan is resolved round by round (each round is re-checked at run time), so it is bounded; no federated run comes
#: near a million rounds, and a larger figure is almost surely a typo that would otherwise run for hours
MAX_PLAN_ROUNDS = 1_000_000


def _check_rounds(rounds: int) -> None:
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ConfigError(f"rounds must be a whole number >= 1, got {rounds!r}")
    if rounds > MAX_PLAN_ROUNDS:
        raise ConfigError(f"rounds = {rounds:,} is beyond the {MAX_PLAN_ROUNDS:,} rounds a plan can cover")
