"""Does a plan's DP noise meet the declared (epsilon, delta) target, for every observer the user distrusts?

Threat model: the epsilon a plan promises is computed from the same functions the running protocols call
(:func:`protocols.dp.events.round_events`), with the planned round facts: the round's clients n, the noise split
over m (``expected_clients``, else n), the survivors n - d (d the declared expected dropouts; the running protocol
aborts a round with fewer noise survivors rather than spend more), the declared colluders c, the declared
client-sampling rate, and for DP-SGD the planned schedule (``local_steps``, ``record_sample_rate``). Composition
uses the ledger's own :func:`protocols.dp.ledger.epsilon_of`, so the plan's figure and the run's ledger agree by
construction; the property suite makes them disagree if they can.

Observers: ``model`` (users of the released model) always; ``server`` (with its colluders) too when the declared
server is not trusted. Unit: the declared ``dp_unit``. A plan whose noise falls short is refused, naming the
observer and a noise multiplier that would meet the target; when no multiplier is configured the shortfall is
advice (the run's target mode calibrates the multiplier with :func:`calibrate`).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from protocols.errors import ConfigError
from privfed.threat import catalogue
from privfed.threat.model import ThreatModel

__all__ = ["BudgetCheck", "check_budget", "planned_events", "planned_epsilon", "observers_for", "calibrate",
           "noise_floor", "DEFAULT_MODEL_SIZE", "CALIBRATABLE"]

#: model size assumed for secagg+dp's rounding slack when none is given (the slack grows with it, so this bounds
#: every model up to this size; the FedAvg loop passes the real size)
DEFAULT_MODEL_SIZE = 10_000_000
#: protections whose noise multiplier target mode may calibrate
CALIBRATABLE = ("dp", "local-dp", "secagg+dp", "ckks+dp", "dp-sgd")


@dataclass(frozen=True)
class BudgetCheck:
    """The planned epsilon per observer (None when not computed), whether it meets the target, and why."""

    epsilon: Mapping[str, float] | None
    meets: bool
    detail: str
    rounds: tuple[int, ...] = ()
    #: every DP protection in the plan has an explicit noise_multiplier (else the check is advice, not a refusal)
    configured: bool = True
    #: per protection, the runtime options the promise relies on (e.g. min_noise_survivors, colluders)
    runtime_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def observers_for(threat: ThreatModel) -> tuple[str, ...]:
    """Whom the target must hold against: model users always, the server (and colluders) unless it is trusted."""
    return ("server", "model") if threat.distrusts_server else ("model",)


def _dp_options(opts: Mapping[str, Any]):
    from protocols.dp.placements import _split  # noqa: PLC2701 - the placements' own option split

    return _split({k: v for k, v in opts.items()})[0]


def planned_events(name: str, opts: Mapping[str, Any], threat: ThreatModel, clients: int | None,
                   model_size: int | None = None):
    """The :class:`~protocols.dp.events.RoundEvents` one planned round of ``name`` spends (see the module doc)."""
    from protocols.dp.events import DiscreteNoise, RoundFacts, no_dp_events, round_events
    from protocols.dp.mechanisms import DiscreteGaussianNoise

    entry = catalogue.get(name)
    if not entry.has_dp:
        return no_dp_events(name)
    dp = _dp_options(opts)
    if entry.dp == "dp-sgd":
        if dp.local_steps is None or dp.record_sample_rate is None:
            return round_events("dp-sgd", dp, RoundFacts(1, 1), reports=[None])
        report = {"noise_multiplier": dp.noise_multiplier, "sample_rate": dp.record_sample_rate,
                  "count": dp.local_steps}
        return round_events("dp-sgd", dp, RoundFacts(1, 1), reports=[report])
    if entry.dp != "distributed":
        return round_events(entry.dp, dp, RoundFacts(1, 1, 0, dp.sample_rate))
    n = clients if clients is not None else dp.expected_clients
    if n is None:
        raise ConfigError(f"{name}: the planned epsilon of distributed DP depends on the number of clients per "
                          f"round (give --clients, or {name}.expected_clients)")
    m = dp.expected_clients or n
    survivors = min(n - threat.expected_dropouts(n), m)
    if survivors < 1:
        raise ConfigError(f"{name}: no client would survive to add noise (n={n}, dropout={threat.dropout:g})")
    facts = RoundFacts(m, survivors, threat.collusion, dp.sample_rate)
    discrete, extra = None, 0.0
    std = dp.noise_multiplier * dp.clip_norm / math.sqrt(m)
    dim = int(model_size or DEFAULT_MODEL_SIZE)
    if entry.protocol == "secagg":
        from protocols import registry

        protocol = registry.create(name, {"max_weight": 1.0, "clip": float(opts.get("clip", 1.0)), **dict(opts)})
        scale = protocol.inner_for(m).plan(n).fixed_point.scale
        discrete = DiscreteNoise(float(scale), dim, DiscreteGaussianNoise(std).tail_mass)
    else:
        from protocols.dp.placements import NOISE_RANGE_SIGMAS, gaussian_tail

        extra = m * dim * gaussian_tail(NOISE_RANGE_SIGMAS)
    return round_events("distributed", dp, facts, discrete=discrete, delta_extra=extra)


def planned_epsilon(rounds: Sequence[tuple[int, str]], threat: ThreatModel, clients: int | None,
                    options: Mapping[str, Mapping[str, Any]], accountant: str = "pld",
                    model_size: int | None = None) -> dict[str, float]:
    """Epsilon per observer, at the declared unit and delta, of ``rounds`` ((round, protection) pairs)."""
    from protocols.dp.ledger import PrivacyLedger

    assert threat.delta is not None
    first: dict[str, int] = {}
    repeats: Counter = Counter()
    for r, name in rounds:
        first.setdefault(name, r)
        repeats[name] += 1
    ledger = PrivacyLedger()
    for name, r in first.items():  # the planned rounds of one protection are alike: recorded once, n times over
        ledger.record(r, planned_events(name, options.get(name, {}), threat, clients, model_size), repeats[name])
    return {o: ledger.epsilon(threat.delta, accountant, threat.dp_unit, o) for o in observers_for(threat)}


def runtime_options(name: str, opts: Mapping[str, Any], threat: ThreatModel, clients: int | None) -> dict[str, Any]:
    """Options the running protocol needs so that it never spends more than the plan promised."""
    if catalogue.get(name).dp != "distributed" or clients is None:
        return {}
    m = opts.get("expected_clients") or clients
    # expected_clients pins the noise split at the planned m: a round that invites more clients (Poisson sampling)
    # would otherwise give each a thinner share, and the survivor floor alone would not keep the planned noise
    return {"colluders": threat.collusion, "min_noise_survivors": min(clients - threat.expected_dropouts(clients),
                                                                      int(m)), "expected_clients": int(m)}


def calibrate(names: Sequence[str], rounds: Sequence[tuple[int, str]], threat: ThreatModel, clients: int | None,
              options: Mapping[str, Mapping[str, Any]], model_size: int | None = None) -> dict[str, float]:
    """Target mode: one noise multiplier z for the protections ``names`` (scaled alike) so that the plan's epsilon
    meets the target against every distrusted observer. Searched with RDP (never below PLD, so the PLD figure the
    plan and the ledger report is at most the target). Raises ConfigError naming the best epsilon reachable."""
    assert threat.epsilon is not None

    def eps(z: float) -> float:
        trial = {k: dict(v) for k, v in options.items()}
        for name in names:
            trial.setdefault(name, {})["noise_multiplier"] = z
        return max(planned_epsilon(rounds, threat, clients, trial, "rdp", model_size).values())

    from protocols.errors import HeadroomError

    low, high = 0.05, 1000.0
    while True:  # a wider noise share may not fit the protocol's ring (secagg+dp): search below what fits
        try:
            best = eps(high)
            break
        except HeadroomError as exc:
            if high / 2 < low:
                raise ConfigError(f"no noise multiplier in [{low:g}, 1000] fits {', '.join(names)}'s encoding: "
                                  f"{exc}") from None
            high /= 2
    if best > threat.epsilon:
        raise ConfigError(f"epsilon target {threat.epsilon:g} cannot be met by {', '.join(names)} over "
                          f"{len(rounds)} rounds even with noise multiplier {high:g}, the largest that fits (best "
                          f"reachable epsilon "
                          f"{best:.3g}): plan fewer rounds, more clients per round, or a larger epsilon")
    if eps(low) <= threat.epsilon:
        return low
    while high / low > 1.005:
        mid = math.sqrt(low * high)
        if eps(mid) > threat.epsilon:
            low = mid
        else:
            high = mid
    return high


def noise_floor(rounds: Sequence[tuple[int, str]], threat: ThreatModel, clients: int | None,
                options: Mapping[str, Mapping[str, Any]], names: Sequence[str]) -> float | None:
    """The multiplier :func:`calibrate` would give, or None when unreachable (for refusal hints)."""
    try:
        return calibrate(names, rounds, threat, clients, options)
    except ConfigError:
        return None


def _fmt(epsilon: Mapping[str, float]) -> str:
    return ", ".join(f"{e:.3g} against {'the server (+ colluders)' if o == 'server' else 'model users'}"
                     for o, e in epsilon.items())


def check_budget(rounds: Sequence[tuple[int, str]], threat: ThreatModel, clients: int | None,
                 options: Mapping[str, Mapping[str, Any]], model_size: int | None = None) -> BudgetCheck:
    """Epsilon of ``rounds`` ((round, protection) pairs) against ``threat``'s target, per distrusted observer."""
    if not threat.wants_dp:
        return BudgetCheck(None, True, "no DP target")
    assert threat.epsilon is not None and threat.delta is not None
    dp_rounds = [(r, n) for r, n in rounds if catalogue.get(n).has_dp]
    if not dp_rounds:
        return BudgetCheck(None, True, "no DP round")
    names = sorted({n for _, n in dp_rounds})
    configured = all("noise_multiplier" in options.get(n, {}) for n in names)
    try:
        epsilon = planned_epsilon(rounds, threat, clients, options, "rdp", model_size)
        accountant = "rdp"
        if max(epsilon.values()) > threat.epsilon:  # RDP over-estimates: confirm with PLD before refusing
            epsilon, accountant = planned_epsilon(rounds, threat, clients, options, "pld", model_size), "pld"
    except ImportError as exc:  # pragma: no cover - depends on the install
        return BudgetCheck(None, False, f"epsilon cannot be checked here ({exc})", configured=True)
    except ConfigError as exc:  # e.g. distributed DP with no client count: advice until the run knows it
        return BudgetCheck(None, False, str(exc), tuple(r for r, _ in dp_rounds), configured)
    planned = tuple(r for r, _ in dp_rounds)
    extras = {n: runtime_options(n, options.get(n, {}), threat, clients) for n in names}
    unit = f"{threat.dp_unit}-level"
    if max(epsilon.values()) <= threat.epsilon:
        return BudgetCheck(epsilon, True, f"planned noise gives {unit} epsilon <= {_fmt(epsilon)} ({accountant}) "
                                          f"<= {threat.epsilon:g} at delta={threat.delta:g} over {len(rounds)} "
                                          f"rounds", planned, configured, extras)
    worst = [o for o, e in epsilon.items() if e > threat.epsilon]
    tunable = [n for n in names if n in CALIBRATABLE]
    need = noise_floor(rounds, threat, clients, options, tunable) if tunable else None
    if math.isinf(max(epsilon.values())):
        why = "; ".join(sorted({_unbounded_reason(n, threat) for n in names} - {""})) or \
            "a round gives no bound for this observer"
        hint = why
    elif need is None:
        hint = "no noise multiplier up to 1000 meets it: raise epsilon or delta, or plan fewer DP rounds"
    else:
        hint = "meet it with " + ", ".join(f"{n}.noise_multiplier={need:.3g}" for n in tunable)
    text = (f"the planned noise gives {unit} epsilon {_fmt(epsilon)} ({accountant}) > target {threat.epsilon:g} at "
            f"delta={threat.delta:g} against {' and '.join(worst)} over {len(rounds)} rounds; {hint}")
    if not configured:
        return BudgetCheck(epsilon, False, "noise multiplier not configured: " + text, planned, False, extras)
    return BudgetCheck(epsilon, False, text, planned, True, extras)


def _unbounded_reason(name: str, threat: ThreatModel) -> str:
    entry = catalogue.get(name)
    if entry.dp == "dp-sgd" and threat.dp_unit == "user":
        return f"{name} is record-level DP: it gives no user-level bound"
    if entry.dp == "dp-sgd":
        return (f"{name}'s record-level epsilon depends on its schedule: give {name}.local_steps (steps per round of "
                f"the busiest client) and {name}.record_sample_rate (batch size / smallest client's records)")
    if entry.dp == "central" and threat.distrusts_server:
        return f"{name} adds the noise at the server, which sees every update: no bound against the server"
    if not entry.has_dp:
        return f"{name} adds no noise"
    return ""
