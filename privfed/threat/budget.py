"""Does a plan's DP noise meet the declared (epsilon, delta) target? Checked before any round runs.

Threat model: the epsilon the released model will have, composed over every planned DP round with the accountant
of :mod:`protocols.dp.accounting` — RDP first (fast, and never below PLD, so a pass is a pass), PLD before
refusing — from each round's configured ``noise_multiplier``, ``sample_rate`` and ``mechanism`` (the protections'
defaults when not configured). For distributed DP (``secagg+dp``, ``ckks+dp``) each client adds its share of the
noise, so the server and c colluders — who know the colluders' shares — face only the noise of the honest
survivors: the multiplier is scaled by sqrt((m - c - d) / m), with m the
clients the noise was split over (``expected_clients``, else the round's clients), c the declared collusion and d
the expected dropouts. A plan whose configured ``noise_multiplier`` falls short is refused with a multiplier that
meets the target (by RDP); when no multiplier is configured the check is advice in each round's reason (the
protections' default multiplier applies unless the run calibrates it). Record-level rounds (DP-SGD) are accounted
inside the clients, not here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from protocols.errors import ConfigError
from privfed.threat import catalogue
from privfed.threat.model import ThreatModel

__all__ = ["BudgetCheck", "check_budget"]


@dataclass(frozen=True)
class BudgetCheck:
    """The planned epsilon (None when it could not be computed), whether it meets the target, and why."""

    epsilon: float | None
    meets: bool
    detail: str
    rounds: tuple[int, ...] = ()
    #: every DP protection in the plan has an explicit noise_multiplier (else the check is advice, not a refusal)
    configured: bool = True


def _effective(name: str, opts: Mapping[str, Any], threat: ThreatModel, clients: int | None) -> tuple[float, float,
                                                                                                      str, str]:
    z = float(opts.get("noise_multiplier", 1.0))
    q = float(opts.get("sample_rate", 1.0))
    mechanism = str(opts.get("mechanism", "gaussian"))
    note = ""
    if catalogue.get(name).dp == "distributed":
        m = opts.get("expected_clients") or clients
        if m is None:
            return z, q, mechanism, "noise split over an unknown number of clients: colluders and dropouts ignored"
        honest = int(m) - threat.collusion - threat.expected_dropouts(int(m))
        if honest < 1:
            raise ConfigError(f"{name}: no honest client would be left to add noise (m={m}, collusion="
                              f"{threat.collusion}, dropout={threat.dropout:g})")
        if honest < int(m):
            z *= math.sqrt(honest / int(m))
            note = f"noise of {honest} of {m} clients (collusion and expected dropouts removed)"
    return z, q, mechanism, note


def _sufficient_multiplier(target: float, q: float, steps: int, delta: float) -> float | None:
    """A Gaussian multiplier whose RDP epsilon over ``steps`` is <= target (RDP bounds PLD, so it suffices)."""
    from protocols.dp.accounting import epsilon_for

    low, high = 0.3, 1000.0
    if epsilon_for(high, q, steps, delta, "rdp") > target:
        return None
    if epsilon_for(low, q, steps, delta, "rdp") <= target:
        return low
    for _ in range(40):
        mid = math.sqrt(low * high)
        if epsilon_for(mid, q, steps, delta, "rdp") > target:
            low = mid
        else:
            high = mid
        if high / low < 1.01:
            break
    return high


def check_budget(rounds: Sequence[tuple[int, str]], threat: ThreatModel, clients: int | None,
                 options: Mapping[str, Mapping[str, Any]]) -> BudgetCheck:
    """Epsilon of ``rounds`` ((round, protection) pairs, all with DP) against ``threat``'s target."""
    if not threat.wants_dp:
        return BudgetCheck(None, True, "no DP target")
    assert threat.epsilon is not None and threat.delta is not None
    try:
        from protocols.dp.accounting import epsilon_of_events, make_event
    except ImportError as exc:  # pragma: no cover - depends on the install
        return BudgetCheck(None, True, f"epsilon not checked here ({exc})")
    counts: dict[tuple[float, float, str], list[int]] = {}
    factors: dict[str, float] = {}
    notes: set[str] = set()
    skipped: list[int] = []
    for r, name in rounds:
        entry = catalogue.get(name)
        if not entry.has_dp or entry.dp_unit != "user":
            skipped.append(r)
            continue
        z, q, mechanism, note = _effective(name, options.get(name, {}), threat, clients)
        factors[name] = z / float(options.get(name, {}).get("noise_multiplier", 1.0))
        counts.setdefault((z, q, mechanism), []).append(r)
        if note:
            notes.add(note)
    if not counts:
        return BudgetCheck(None, True, "record-level rounds are accounted inside the clients")
    configured = all("noise_multiplier" in options.get(name, {}) for name in factors)
    accountant = "rdp"
    try:
        events = [(make_event(mechanism, z, q), len(rs)) for (z, q, mechanism), rs in counts.items()]
        epsilon = epsilon_of_events(events, threat.delta, "rdp")
        if epsilon > threat.epsilon and configured:  # RDP over-estimates: confirm with PLD (slower) before refusing
            epsilon, accountant = epsilon_of_events(events, threat.delta, "pld"), "pld"
    except ConfigError as exc:
        return BudgetCheck(None, True, f"epsilon not checked here ({exc})")
    planned = tuple(sorted(r for rs in counts.values() for r in rs))
    extra = f" ({'; '.join(sorted(notes))})" if notes else ""
    if epsilon <= threat.epsilon:
        return BudgetCheck(epsilon, True, f"planned noise gives epsilon <= {epsilon:.3g} ({accountant}) <= "
                                          f"{threat.epsilon:g} at delta={threat.delta:g} over {len(planned)} DP "
                                          f"rounds{extra}", planned, configured)
    q = max(q for (_, q, _) in counts)
    need = _sufficient_multiplier(threat.epsilon, q, len(planned), threat.delta)
    hint = ("no noise multiplier up to 1000 meets it: raise epsilon or delta, or plan fewer DP rounds"
            if need is None else "meet it with " + ", ".join(f"{name}.noise_multiplier={need / factor:.3g}"
                                                              for name, factor in sorted(factors.items())))
    if not configured:
        return BudgetCheck(epsilon, False, f"noise multiplier not configured: the default gives epsilon~{epsilon:.3g} "
                                           f"({accountant}) > {threat.epsilon:g} over {len(planned)} DP rounds{extra}; "
                                           f"{hint}", planned, False)
    return BudgetCheck(epsilon, False, f"the planned noise gives epsilon={epsilon:.3g} ({accountant}) > target "
                                       f"{threat.epsilon:g} at delta={threat.delta:g} over {len(planned)} DP "
                                       f"rounds{extra}; {hint}", planned, True)
