"""What one round of each DP placement spends, per observer and per unit: the single home of privfed's privacy facts.

Threat model: this module hides nothing; it states what a round's releases reveal, and to whom. Every consumer — the
runtime placements (:mod:`protocols.dp.placements`), the plan check and target mode (``privfed.threat.budget``), the
ledger, ``privfed privacy``, the audit and ``compare`` — calls :func:`round_events` with the round's facts, so the
epsilon a plan promises and the epsilon a run spends come from the same code.

Observers (whom an epsilon holds against):

* ``server``: the aggregation server together with the declared colluding clients. It invites the clients, so it knows
  who took part: **no amplification by client sampling** is ever claimed against it. It sees what its protocol shows
  it (clear updates under central DP — no bound at all; each noised update under local DP; only the noised sum under
  distributed DP, whose noise is then that of the honest survivors: colluders know their own shares).
* ``model``: everyone who sees a released global model (model users). Poisson client sampling from the OS CSPRNG is
  secret from them, so its amplification applies; the noise is every survivor's.

Units: ``user`` (add/remove one client's whole data) and ``record`` (add/remove one training example). A user-level
round also bounds the record level: removing one record moves that user's clipped contribution by at most ``2 S``
(both versions lie in the ball of radius ``S``), a Gaussian of multiplier ``z / 2``; the record's user may or may not
be sampled, but we claim no amplification for this substitution (conservative). A record-level round (DP-SGD) gives no
user-level bound (``none``: infinite). A round without DP noise is ``none`` everywhere.

An event is a plain dict of public parameters (``mechanism`` gaussian|laplace|none, ``noise_multiplier``,
``sample_rate``, ``count``, ``delta_extra``, ``placement``, ``note``); :class:`RoundEvents` holds one per (observer,
unit). The ledger composes them per (observer, unit) with dp-accounting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

from ..errors import ConfigError

__all__ = ["OBSERVERS", "UNITS", "RoundFacts", "RoundEvents", "DiscreteNoise", "round_events", "no_dp_events",
           "central_events", "local_events", "dpsgd_events", "distributed_events", "distributed_multiplier",
           "ROUNDING_FAILURE"]

OBSERVERS = ("server", "model")
UNITS = ("user", "record")

#: probability that stochastic rounding lengthens a clipped vector beyond the Hoeffding bound (added to delta).
#: The ledger charges (1 + e^eps) * sum of these against delta (a total-variation coupling), so it must stay far
#: below delta / e^eps over a whole run: 1e-24 keeps that negligible up to eps ~ 36 over 100 rounds.
ROUNDING_FAILURE = 1e-24


def _whole(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name} must be a whole number >= {low}, got {value!r}")
    return value


@dataclass(frozen=True)
class RoundFacts:
    """The facts of one round that its privacy cost depends on.

    ``noise_clients`` (m) is the number of clients the distributed noise was split over (``expected_clients``, else
    those invited); ``survivors`` the clients whose input (and noise) is in the released sum; ``colluders`` the
    declared number of clients colluding with the server (all assumed to be among the survivors: worst case);
    ``client_rate`` the Poisson client-sampling rate hidden from model users (1.0: no sampling, no amplification).
    """

    noise_clients: int
    survivors: int
    colluders: int = 0
    client_rate: float = 1.0

    def __post_init__(self) -> None:
        _whole("noise_clients", self.noise_clients, 1)
        _whole("survivors", self.survivors, 0)
        _whole("colluders", self.colluders, 0)
        if not (isinstance(self.client_rate, (int, float)) and 0.0 < float(self.client_rate) <= 1.0):
            raise ConfigError(f"client_rate must be in (0, 1], got {self.client_rate!r}")


@dataclass(frozen=True)
class DiscreteNoise:
    """Distributed integer noise (secagg+dp): fixed-point ``scale``, vector length ``dim``, and the per-coordinate
    tail mass of the truncated discrete Gaussian sampler (added to delta)."""

    scale: float
    dim: int
    tail_mass: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ConfigError(f"scale must be a positive number, got {self.scale!r}")
        _whole("dim", self.dim, 1)
        if not (0.0 <= self.tail_mass < 1.0):
            raise ConfigError(f"tail_mass must be in [0, 1), got {self.tail_mass!r}")


def _event(mechanism: str, placement: str, z: float = math.inf, q: float = 1.0, count: int = 1,
           delta_extra: float = 0.0, note: str = "") -> dict[str, Any]:
    if mechanism == "none":
        return {"mechanism": "none", "placement": placement, "note": note}
    return {"mechanism": mechanism, "noise_multiplier": float(z), "sample_rate": float(q), "count": int(count),
            "delta_extra": float(delta_extra), "placement": placement, "note": note}


@dataclass(frozen=True)
class RoundEvents:
    """One event per (observer, unit) for one round."""

    placement: str
    events: Mapping[tuple[str, str], Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = [(o, u) for o in OBSERVERS for u in UNITS if (o, u) not in self.events]
        if missing:
            raise ConfigError(f"{self.placement}: round events lack {missing}")

    def get(self, observer: str, unit: str) -> Mapping[str, Any]:
        return self.events[(observer, unit)]

    def __iter__(self) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
        for (o, u), e in self.events.items():
            yield o, u, e

    def to_json(self) -> dict[str, dict[str, dict[str, Any]]]:
        return {o: {u: dict(self.events[(o, u)]) for u in UNITS} for o in OBSERVERS}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "RoundEvents":
        try:
            events = {(o, u): dict(data[o][u]) for o in OBSERVERS for u in UNITS}
        except (KeyError, TypeError):
            raise ConfigError("round events must map each observer to each unit") from None
        placements = {str(e.get("placement", "")) for e in events.values()}
        return cls(placements.pop() if len(placements) == 1 else "mixed", events)


def _build(placement: str, **pairs: Mapping[str, Any]) -> RoundEvents:
    return RoundEvents(placement, {tuple(k.split("_")): v for k, v in pairs.items()})  # type: ignore[misc]


def no_dp_events(placement: str, note: str = "released without DP noise") -> RoundEvents:
    """A round whose release carries no DP noise: epsilon is infinite for every observer and unit from then on."""
    none = _event("none", placement, note=note)
    return _build(placement, server_user=none, server_record=none, model_user=none, model_record=none)


def _record_from_user(event: Mapping[str, Any], note: str) -> dict[str, Any]:
    """The record-level event a user-level Gaussian/Laplace event implies: sensitivity doubles, no amplification."""
    if event["mechanism"] == "none":
        return dict(event)
    return _event(event["mechanism"], event["placement"], event["noise_multiplier"] / 2.0, 1.0, event["count"],
                  event.get("delta_extra", 0.0), note)


_RECORD_NOTE = "user-level round bounds the record level (sensitivity 2S, no amplification claimed)"


def central_events(noise_multiplier: float, client_rate: float, noised_count: bool = False) -> RoundEvents:
    """``dp``: the server sees every clipped update in the clear (no bound against it); model users see the sum noised
    with multiplier z (and, with a noised count, a count of multiplier z: composed, z / sqrt(2))."""
    z = noise_multiplier / math.sqrt(2.0) if noised_count else noise_multiplier
    note = "sum and count each noised with multiplier z" if noised_count else ""
    model_user = _event("gaussian", "central", z, client_rate, note=note)
    server = _event("none", "central", note="the server sees every update before it adds the noise")
    return _build("central", server_user=server, server_record=server, model_user=model_user,
                  model_record=_record_from_user(model_user, _RECORD_NOTE))


def local_events(noise_multiplier: float, mechanism: str = "gaussian") -> RoundEvents:
    """``local-dp``: each client's own release, seen by the server, which knows who took part (rate 1); the model
    is post-processing of what the server saw."""
    user = _event(mechanism, "local", noise_multiplier, 1.0, note="per client, each round it takes part")
    record = _record_from_user(user, _RECORD_NOTE)
    return _build("local", server_user=user, server_record=record, model_user=user, model_record=record)


def dpsgd_events(reports: Sequence[Mapping[str, Any] | None]) -> RoundEvents:
    """``dp-sgd``: record-level DP inside each client (the worst case over the clients' reports: smallest multiplier,
    largest record sampling rate and step count); no user-level bound. A missing report makes the bound infinite."""
    none_user = _event("none", "dp-sgd", note="record-level DP-SGD gives no user-level bound")
    if not reports or any(r is None for r in reports):
        missing = _event("none", "dp-sgd", note="a client did not report its DP-SGD parameters: no bound")
        return _build("dp-sgd", server_user=none_user, server_record=missing, model_user=none_user,
                      model_record=missing)
    record = _event("gaussian", "dp-sgd", min(float(r["noise_multiplier"]) for r in reports),  # type: ignore[index]
                    max(float(r["sample_rate"]) for r in reports), max(int(r["count"]) for r in reports),  # type: ignore[index]
                    note="worst case over the round's clients (records sampled inside each client)")
    return _build("dp-sgd", server_user=none_user, server_record=record, model_user=none_user, model_record=record)


def distributed_multiplier(noise_multiplier: float, clip_norm: float, noisy: int, m: int,
                           discrete: DiscreteNoise | None) -> tuple[float, float, str]:
    """(effective multiplier, delta_extra, note) of the sum of ``noisy`` clients' noise shares, each of std
    ``z S / sqrt(m)``; for integer noise the discrete-Gaussian sum bound of Kairouz, Liu and Steinke (2021)."""
    if noisy < 1:
        return 0.0, 0.0, "no noise in the sum"
    std = noise_multiplier * clip_norm / math.sqrt(m)
    if discrete is None:
        return math.sqrt(noisy) * std / clip_norm, 0.0, ""
    scale, dim = discrete.scale, discrete.dim
    beta = ROUNDING_FAILURE
    # stochastic rounding can lengthen the clipped vector: ||err||^2 <= d/4 + sqrt(d ln(1/beta) / 2) except with
    # probability beta (Hoeffding), beta into delta
    slack = math.sqrt(dim / 4 + math.sqrt(dim * math.log(1 / beta) / 2)) / scale
    sensitivity = clip_norm + slack
    sigma_q = std * scale
    # a sum of n discrete Gaussians is 1/2 eps^2-zCDP with eps^2 = Delta^2 / (n sigma^2) + tau d / 2,
    # tau = 10 sum_{k<n} exp(-2 pi^2 sigma^2 k / (k + 1))
    tau = 10 * sum(math.exp(-2 * math.pi ** 2 * sigma_q ** 2 * k / (k + 1)) for k in range(1, noisy))
    z_eff = 1 / math.sqrt(sensitivity ** 2 / (noisy * std ** 2) + tau * dim / 2)
    extra = beta + noisy * dim * discrete.tail_mass
    return z_eff, extra, (f"discrete Gaussian sum accounted as a Gaussian of multiplier {z_eff:.6g} (rounding slack "
                          f"{slack:.3g}, tau {tau:.3g}); truncation and rounding tails in delta_extra")


def distributed_events(noise_multiplier: float, clip_norm: float, facts: RoundFacts,
                       discrete: DiscreteNoise | None = None, delta_extra: float = 0.0) -> RoundEvents:
    """``secagg+dp`` / ``ckks+dp``: model users face every survivor's noise share, with client-sampling
    amplification; the server and its colluders face only the honest survivors' shares, without amplification.
    ``delta_extra`` adds a failure probability of the mechanism itself (e.g. a range check on the noised input)."""
    m, s, c = facts.noise_clients, facts.survivors, facts.colluders
    honest = max(s - c, 0)

    def one(noisy: int, rate: float, who: str) -> dict[str, Any]:
        z_eff, extra, note = distributed_multiplier(noise_multiplier, clip_norm, noisy, m, discrete)
        if z_eff <= 0:
            return _event("none", "distributed", note=f"no {who} noise in the sum")
        text = f"noise of {noisy} {who} survivors of {m} expected" + (f"; {note}" if note else "")
        return _event("gaussian", "distributed", z_eff, rate, 1, extra + delta_extra, text)

    model_user = one(s, facts.client_rate, "")
    server_user = one(honest, 1.0, f"honest (collusion={c})")
    return _build("distributed", server_user=server_user, server_record=_record_from_user(server_user, _RECORD_NOTE),
                  model_user=model_user, model_record=_record_from_user(model_user, _RECORD_NOTE))


def round_events(placement: str, options: Any, facts: RoundFacts, *, discrete: DiscreteNoise | None = None,
                 reports: Sequence[Mapping[str, Any] | None] | None = None, delta_extra: float = 0.0) -> RoundEvents:
    """The events of one round of ``placement`` (``none``, ``central``, ``local``, ``dp-sgd``, ``distributed``) with
    validated DP ``options`` (:class:`~protocols.dp.placements.DPOptions`) and the round's ``facts``."""
    if placement == "none":
        return no_dp_events("none")
    if placement == "central":
        return central_events(options.noise_multiplier, facts.client_rate, options.denominator == "noised-count")
    if placement == "local":
        return local_events(options.noise_multiplier, options.mechanism)
    if placement == "dp-sgd":
        return dpsgd_events(list(reports or ()))
    if placement == "distributed":
        return distributed_events(options.noise_multiplier, options.clip_norm, facts, discrete, delta_extra)
    raise ConfigError(f"unknown DP placement {placement!r}")
