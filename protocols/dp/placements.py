"""DP placements as wrappers around an inner aggregation protocol: central, local, DP-SGD, distributed (SecAgg, CKKS).

Threat model, per placement (all user-level DP protects one client's whole contribution under add/remove-one
adjacency; epsilon is for the released model, composed over rounds in :mod:`protocols.dp.ledger`):

* ``dp`` (central DP-FedAvg, McMahan et al. 2018): clients clip their update to L2 norm ``clip_norm``; the
  **trusted server** sees every clipped update in the clear and adds Gaussian noise (std z*S, CSPRNG) to the sum. It
  hides each user's contribution from everyone who sees the released model, **not from the server**.
* ``local-dp``: each client clips and noises its own update (Gaussian, or Laplace for pure epsilon with an L1 clip)
  before sending; nobody, the server included, sees an un-noised update. Each client is protected without trusting
  anyone, at the cost of noise that does not shrink with the number of clients.
* ``dp-sgd``: record-level DP inside each client (Opacus DP-SGD, per-sample clipping + noise); aggregation is
  plaintext. It protects one training record of a client against whoever sees that client's update or the model;
  it does not protect a user's whole data set, and the server sees each (already DP) update.
* ``secagg+dp`` (distributed DP, Kairouz et al. 2021): each client clips, then adds discrete Gaussian noise with std
  z*S/sqrt(m) before secure-aggregation masking; the server learns only the noised sum. It hides each user from an
  honest-but-curious server (under SecAgg's assumptions) and from model users. The noise is that of the clients who
  survive: with dropouts it is smaller and the ledger accounts for the survivors only.
* ``ckks+dp``: as ``secagg+dp`` with continuous Gaussian noise added by each client before CKKS encryption (integer
  noise buys nothing there: CKKS is approximate arithmetic); the key holders learn only the noised sum.

Assumptions common to all: the noise comes from :class:`~protocols.csprng.CSPRNG` (never the experiment seed); the
declared ``sample_rate`` is the real Poisson client-sampling rate (1.0, no amplification, unless declared); clients
run the clipping and noising code honestly (a malicious client can always skip its own noise); users are clients
(one user's data on one client). Weights are equalised (every client counts 1, user-level), and the mean divides by
a fixed denominator (``expected_clients``, default the number of invited clients) so the released model does not
depend on the exact count, or, with ``denominator="noised-count"``, by a count noised with the same multiplier
(accounted as the composition of both Gaussians; central DP without adaptive clipping only — every other placement
refuses it, since dividing by an exact count would release the participant count unaccounted).

Every placement's privacy cost is computed by :mod:`protocols.dp.events` (one function per placement, per observer:
the server with its colluders, and the users of the released model); a round's result carries it as
``info["dp_events"]``. The plan check and target mode call the same functions before the run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping, MutableMapping, Sequence

import numpy as np

from ..base import (AggregateResult, AggregationProtocol, ClientStateMachine, ClientUpdate, Outgoing,
                    ServerStateMachine)
from ..csprng import CSPRNG
from ..errors import ConfigError
from .accounting import ACCOUNTANTS
from .adaptive import AdaptiveClip, split_noise
from .events import ROUNDING_FAILURE, DiscreteNoise, RoundFacts, central_events, distributed_events, dpsgd_events, \
    local_events
from .mechanisms import (DiscreteGaussianNoise, check_delta, check_positive, check_rate, clip_l1, clip_l2,
                         clip_per_layer, gaussian_noise, laplace_noise)

__all__ = ["DPOptions", "DPProtocol", "CentralDP", "LocalDP", "DPSGD", "DistributedDP",
           "central_dp", "local_dp", "dp_sgd", "secagg_dp", "ckks_dp"]

#: a float32 cast may lengthen a clipped vector by a relative ~1e-7; clip a hair inside S so the bound stays true
_CLIP_SAFETY = 1.0 - 1e-6
DENOMINATORS = ("fixed", "noised-count")


@dataclass(frozen=True)
class DPOptions:
    """Validated DP parameters shared by every placement."""

    noise_multiplier: float = 1.0
    clip_norm: float = 1.0
    per_layer: tuple[int, ...] | None = None
    expected_clients: int | None = None
    denominator: str = "fixed"
    sample_rate: float = 1.0
    delta: float = 1e-5
    accountant: str = "pld"
    mechanism: str = "gaussian"
    #: adaptive clipping (central DP only): see protocols.dp.adaptive
    adaptive: bool = False
    target_quantile: float = 0.5
    clip_learning_rate: float = 0.2
    clip_count_std: float | None = None
    #: declared number of clients colluding with the server (their noise shares are known to it): the server-side
    #: epsilon of distributed DP counts only the honest survivors' noise
    colluders: int = 0
    #: distributed DP: abort the round (no release) when fewer clients' noise survives than the plan's epsilon
    #: assumed (set by the plan from the declared dropout); None: release whatever survives, accounted as it is
    min_noise_survivors: int | None = None
    #: DP-SGD's planned schedule (the worst client's steps per round and record sampling rate), for the plan check;
    #: the FedAvg loop derives it from the data, and the runtime accounts each client's own report
    local_steps: int | None = None
    record_sample_rate: float | None = None

    def __post_init__(self) -> None:
        check_positive("noise_multiplier", self.noise_multiplier, allow_zero=False)
        check_positive("clip_norm", self.clip_norm)
        check_rate("sample_rate", self.sample_rate)
        check_delta(self.delta)
        if self.per_layer is not None:
            sizes = tuple(self.per_layer)
            if not sizes or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sizes):
                raise ConfigError(f"per_layer must be a list of positive layer sizes, got {self.per_layer!r}")
            object.__setattr__(self, "per_layer", sizes)
        if self.expected_clients is not None and (isinstance(self.expected_clients, bool) or
                                                  not isinstance(self.expected_clients, int) or
                                                  self.expected_clients < 1):
            raise ConfigError(f"expected_clients must be an integer >= 1, got {self.expected_clients!r}")
        if self.denominator not in DENOMINATORS:
            raise ConfigError(f"denominator must be one of {DENOMINATORS}, got {self.denominator!r}")
        if self.sample_rate < 1.0 and self.denominator == "fixed" and self.expected_clients is None:
            # under Poisson sampling the number invited depends on who is in the population: not a fixed denominator
            raise ConfigError("expected_clients (q x population) is required with sample_rate < 1 and the fixed "
                              "denominator")
        if self.record_sample_rate is not None:
            check_rate("record_sample_rate", self.record_sample_rate)
        if self.local_steps is not None and (isinstance(self.local_steps, bool) or not isinstance(self.local_steps, int)
                                             or self.local_steps < 1):
            raise ConfigError(f"local_steps must be a whole number >= 1, got {self.local_steps!r}")
        for name in ("colluders", "min_noise_survivors"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ConfigError(f"{name} must be a whole number >= 0, got {value!r}")
        if self.accountant not in ACCOUNTANTS:
            raise ConfigError(f"accountant must be one of {ACCOUNTANTS}, got {self.accountant!r}")
        if self.mechanism not in ("gaussian", "laplace"):
            raise ConfigError(f"mechanism must be 'gaussian' or 'laplace', got {self.mechanism!r}")
        if not isinstance(self.adaptive, bool):
            raise ConfigError(f"adaptive must be true or false, got {self.adaptive!r}")
        if self.adaptive:
            if self.per_layer is not None:
                raise ConfigError("adaptive clipping tracks one flat clip norm: drop per_layer or adaptive")
            AdaptiveClip(self.clip_norm, self.target_quantile, self.clip_learning_rate,
                          self.clip_count_std if self.clip_count_std is not None else 1.0)
            if self.denominator == "noised-count":
                raise ConfigError("denominator='noised-count' is implemented for central DP without adaptive clipping "
                                  "only: use the fixed denominator with adaptive clipping")

    def clip(self, vector: np.ndarray) -> np.ndarray:
        """The client-side clip: flat L2, per-layer L2, or L1 for the Laplace mechanism (float32, just inside S)."""
        bound = self.clip_norm * _CLIP_SAFETY
        if self.mechanism == "laplace":
            out = clip_l1(vector, bound)[0]
        elif self.per_layer is not None:
            out = clip_per_layer(vector, self.per_layer, bound)[0]
        else:
            out = clip_l2(vector, bound)[0]
        return out.astype(np.float32)

    def public(self) -> dict[str, Any]:
        return {"noise_multiplier": self.noise_multiplier, "clip_norm": self.clip_norm,
                "per_layer": list(self.per_layer) if self.per_layer else None,
                "expected_clients": self.expected_clients, "denominator": self.denominator,
                "sample_rate": self.sample_rate, "delta": self.delta, "accountant": self.accountant,
                "mechanism": self.mechanism, "adaptive": self.adaptive, "colluders": self.colluders,
                "min_noise_survivors": self.min_noise_survivors}


_DP_KEYS = {f for f in DPOptions.__dataclass_fields__}


def _split(options: Mapping[str, Any]) -> tuple[DPOptions, dict[str, Any]]:
    dp = {k: v for k, v in options.items() if k in _DP_KEYS}
    if isinstance(dp.get("per_layer"), list):
        dp["per_layer"] = tuple(dp["per_layer"])
    return DPOptions(**dp), {k: v for k, v in options.items() if k not in _DP_KEYS}


_CLASSES: dict[tuple[type, type], type] = {}


class DPProtocol(AggregationProtocol):
    """A DP placement wrapped around ``inner``: phases, upload phase and messages are the inner protocol's.

    ``name``/``phases``/``upload_phase`` are class attributes in :mod:`protocols.base` (the runtime resolves drop
    points on the class), so :meth:`wrap` generates one subclass per (placement, inner protocol class).
    """

    name: ClassVar[str]
    placement: ClassVar[str]
    level: ClassVar[str] = "user"

    def __init__(self, inner: AggregationProtocol, options: DPOptions, max_weight: float = 1.0,
                 clip: float = 1.0) -> None:
        self.inner, self.options = inner, options
        self.max_weight = check_positive("max_weight", max_weight)
        self.clip = check_positive("clip", clip)

    @classmethod
    def wrap(cls, name: str, inner: AggregationProtocol, options: DPOptions, **standard: Any) -> "DPProtocol":
        """An instance of the subclass named ``name`` whose phases are ``inner``'s (generated once, then cached)."""
        inner_cls = type(inner)
        key = (cls, inner_cls, name)
        if key not in _CLASSES:
            _CLASSES[key] = type(f"{cls.__name__}Over{inner_cls.__name__}", (cls,), {
                "name": name, "phases": inner_cls.phases, "upload_phase": inner_cls.upload_phase,
                "__module__": __name__})
        return _CLASSES[key](inner, options, **standard)

    # -- clients: clip (and, for local DP, noise) the input, equalise the weight, then speak the inner protocol
    def prepare(self, update: ClientUpdate) -> ClientUpdate:
        return ClientUpdate(self.options.clip(update.vector), 1.0)

    def client(self, client_id: int, round_id: int, update: ClientUpdate,
               state: MutableMapping[str, Any]) -> ClientStateMachine:
        return self.inner.client(client_id, round_id, self.prepare(update), state)

    def server(self, round_id: int, client_ids: Sequence[int], dim: int) -> ServerStateMachine:
        invited = len(tuple(client_ids))
        return _DPServer(self.inner.server(round_id, client_ids, dim), lambda r: self.finish(r, invited))

    def finish(self, result: AggregateResult, invited: int) -> AggregateResult:  # pragma: no cover - abstract
        raise NotImplementedError

    def denominator(self, invited: int) -> int:
        return self.options.expected_clients or invited

    def describe(self) -> Mapping[str, Any]:
        return {"protocol": self.name, "placement": self.placement, "level": self.level,
                "inner": dict(self.inner.describe()), **self.options.public()}

    def _rescale(self, result: AggregateResult, noise: np.ndarray | None, noise_std: float, invited: int,
                 info: Mapping[str, Any], count_noise_std: float = 0.0) -> AggregateResult:
        """sum = mean * total (weights are 1, inner max_weight 1); add ``noise``; divide by the denominator."""
        total = float(result.total_weight)
        summed = np.asarray(result.mean, dtype=np.float64) * total
        if noise is not None:
            summed = summed + noise
        if self.options.denominator == "fixed":
            denominator = float(self.denominator(invited))
        else:
            count = total
            if count_noise_std > 0:
                count += float(CSPRNG.from_os().normal(1, count_noise_std)[0])
            denominator = max(count, 1.0)
        out_info = {**dict(result.info), **info, "dp_noise_std": noise_std / denominator,
                    "dp_denominator": denominator, "dp_placement": self.placement}
        return AggregateResult(summed / denominator, total, result.survivors, result.learned_by,
                               result.error_bound * total / denominator, out_info)


class _DPServer(ServerStateMachine):
    """The inner protocol's server, with the DP placement's last step applied to its result."""

    def __init__(self, inner: ServerStateMachine, finish: Callable[[AggregateResult], AggregateResult]) -> None:
        self.inner, self.finish = inner, finish

    def start(self) -> Outgoing:
        return self.inner.start()

    def receive(self, sender: int, payload: bytes) -> None:
        self.inner.receive(sender, payload)

    def advance(self) -> Outgoing | AggregateResult:
        step = self.inner.advance()
        return self.finish(step) if isinstance(step, AggregateResult) else step


class CentralDP(DPProtocol):
    """Trusted server adds N(0, (z S)^2) to the sum of clipped, equally weighted updates."""

    placement: ClassVar[str] = "central"

    def __init__(self, inner: AggregationProtocol, options: DPOptions, max_weight: float = 1.0,
                 clip: float = 1.0) -> None:
        super().__init__(inner, options, max_weight, clip)
        self.adaptive: AdaptiveClip | None = None
        if options.adaptive:
            sigma_b = options.clip_count_std
            if sigma_b is None:  # Andrew et al. suggest m / 20; never so small that the bits eat the budget
                sigma_b = max((options.expected_clients or 0) / 20.0, options.noise_multiplier)
            self.adaptive = AdaptiveClip(options.clip_norm, options.target_quantile, options.clip_learning_rate,
                                         sigma_b)
            self.update_multiplier = split_noise(options.noise_multiplier, sigma_b)

    def prepare(self, update: ClientUpdate) -> ClientUpdate:
        if self.adaptive is None:
            return super().prepare(update)
        bound = self.adaptive.clip_norm
        clipped, norm = clip_l2(update.vector, bound * _CLIP_SAFETY)
        bit = 0.5 if norm <= bound else -0.5  # centred indicator, sensitivity 1/2
        return ClientUpdate(np.append(clipped, bit).astype(np.float32), 1.0)

    def server(self, round_id: int, client_ids: Sequence[int], dim: int) -> ServerStateMachine:
        extra = 1 if self.adaptive is not None else 0
        invited = len(tuple(client_ids))
        return _DPServer(self.inner.server(round_id, client_ids, dim + extra), lambda r: self.finish(r, invited))

    def finish(self, result: AggregateResult, invited: int) -> AggregateResult:
        z, s = self.options.noise_multiplier, self.options.clip_norm
        rng = CSPRNG.from_os()
        if self.adaptive is not None:
            import dataclasses

            used = self.adaptive.clip_norm
            bits = float(result.mean[-1]) * float(result.total_weight)
            bits += float(rng.normal(1, self.adaptive.clip_count_std)[0])
            result = dataclasses.replace(result, mean=np.asarray(result.mean[:-1]))
            std = self.update_multiplier * used
            noise = gaussian_noise(result.mean.size, std, rng)
            following = self.adaptive.update(bits, float(self.denominator(invited)))
            events = central_events(z, self.options.sample_rate)  # update and bit noise compose to multiplier z
            info = {"dp_events": events.to_json(), "clip_norm_used": used, "clip_norm_next": following,
                    "dp_note": f"adaptive clipping: update multiplier {self.update_multiplier:.4g}, bit std "
                               f"{self.adaptive.clip_count_std:.4g}"}
            return self._rescale(result, noise, std, invited, info)
        noise = gaussian_noise(result.mean.size, z * s, rng)
        noised_count = self.options.denominator == "noised-count"
        events = central_events(z, self.options.sample_rate, noised_count)
        # with a noised count the count (sensitivity 1) gets multiplier z too
        return self._rescale(result, noise, z * s, invited, {"dp_events": events.to_json()},
                             count_noise_std=z if noised_count else 0.0)


class LocalDP(DPProtocol):
    """Each client adds its own noise (Gaussian std z S, or Laplace scale z S over an L1 clip) before sending."""

    placement: ClassVar[str] = "local"
    level: ClassVar[str] = "local"

    def prepare(self, update: ClientUpdate) -> ClientUpdate:
        clipped = self.options.clip(update.vector).astype(np.float64)
        scale = self.options.noise_multiplier * self.options.clip_norm
        rng = CSPRNG.from_os()
        if self.options.mechanism == "laplace":
            noised = clipped + laplace_noise(clipped.size, scale, rng)
        else:
            noised = clipped + gaussian_noise(clipped.size, scale, rng)
        return ClientUpdate(noised.astype(np.float32), 1.0)

    def finish(self, result: AggregateResult, invited: int) -> AggregateResult:
        n = len(result.survivors)
        # noise already in the inputs: the mean of n survivors carries std z S sqrt(n) / n (Laplace: sqrt(2) z S ...)
        per_client = self.options.noise_multiplier * self.options.clip_norm
        if self.options.mechanism == "laplace":
            per_client *= math.sqrt(2.0)
        events = local_events(self.options.noise_multiplier, self.options.mechanism)
        return self._rescale(result, None, per_client * math.sqrt(n), invited, {"dp_events": events.to_json()})

    def denominator(self, invited: int) -> int:
        return self.options.expected_clients or invited


class DPSGD(DPProtocol):
    """Record-level DP-SGD inside clients (privfed.fl.dpsgd.train_dpsgd); plaintext, sample-weighted aggregation.

    The trainer reports each client's DP-SGD parameters with :meth:`report_training` (in-process: the FedAvg loop
    hands this instance to the trainer as ``options["protocol"]``). The round's event is the worst over the
    survivors (largest sampling rate and step count, smallest multiplier: an upper bound for every client). A
    survivor without a report makes the event ``none`` (epsilon infinite): never a silent figure.
    """

    placement: ClassVar[str] = "dp-sgd"
    level: ClassVar[str] = "record"
    client_training: ClassVar[str] = "dp-sgd"

    def __init__(self, inner: AggregationProtocol, options: DPOptions, max_weight: float = 1.0,
                 clip: float = 1.0) -> None:
        super().__init__(inner, options, max_weight, clip)
        self._reports: dict[tuple[int, int], dict[str, Any]] = {}

    def report_training(self, round_id: int, client_id: int, noise_multiplier: float, sample_rate: float,
                        steps: int) -> None:
        check_positive("noise_multiplier", noise_multiplier)
        check_rate("sample_rate", sample_rate)
        if steps < 1:
            raise ConfigError(f"steps must be >= 1, got {steps}")
        self._reports[(round_id, client_id)] = {"noise_multiplier": float(noise_multiplier),
                                                "sample_rate": float(sample_rate), "count": int(steps)}

    def prepare(self, update: ClientUpdate) -> ClientUpdate:
        return update  # record-level: the per-sample clipping and noise already happened in training

    def server(self, round_id: int, client_ids: Sequence[int], dim: int) -> ServerStateMachine:
        return _DPServer(self.inner.server(round_id, client_ids, dim), lambda r: self.finish_round(r, round_id))

    def round_events(self, round_id: int, survivors: Sequence[int]) -> dict[str, Any]:
        """The round's events (worst case over the surviving clients' reports; a missing report: no bound)."""
        return dpsgd_events([self._reports.get((round_id, c)) for c in survivors]).to_json()

    def finish(self, result: AggregateResult, invited: int) -> AggregateResult:
        raise NotImplementedError  # DP-SGD finishes per round: finish_round

    def finish_round(self, step: AggregateResult, round_id: int) -> AggregateResult:
        """Attach the round's record-level event (worst case over the surviving clients' reports)."""
        events = self.round_events(round_id, step.survivors)
        return AggregateResult(step.mean, step.total_weight, step.survivors, step.learned_by, step.error_bound,
                               {**dict(step.info), "dp_events": events, "dp_placement": "dp-sgd",
                                "dp_noise_std": 0.0})

    def describe(self) -> Mapping[str, Any]:
        return {**super().describe(), "client_training": "dp-sgd"}


class DistributedDP(DPProtocol):
    """Clients add their share of the noise before the inner protocol hides their input.

    Each client adds noise of std ``z * S / sqrt(m)`` (``m`` = ``expected_clients``, default the number of clients
    the server invited to the round — in-process runtimes only; set it explicitly when clients run elsewhere), so
    when all ``m`` survive the total equals central DP's ``z * S``. The events (:func:`~protocols.dp.events.
    distributed_events`) use the clients whose noise is in the sum (``noise_survivors``): fewer survivors, less
    noise, a larger epsilon; against the server only the honest survivors' noise counts (``colluders``). With
    ``min_noise_survivors`` a round with fewer noise survivors aborts instead of spending more than the plan said.

    ``make_inner(std)`` builds the inner protocol for a per-client noise std: with ``inner_adds_noise`` (secagg+dp)
    the inner protocol adds integer noise after quantisation; otherwise (ckks+dp) the noise is added here and the
    inner protocol's input range is widened to ``range + NOISE_RANGE_SIGMAS * std`` so that the Gaussian share is
    never clipped (the tail beyond it is charged to delta).
    """

    placement: ClassVar[str] = "distributed"

    def __init__(self, inner: AggregationProtocol, options: DPOptions, max_weight: float = 1.0, clip: float = 1.0,
                 make_inner: Callable[[float], AggregationProtocol] | None = None,
                 inner_adds_noise: bool = True) -> None:
        super().__init__(inner, options, max_weight, clip)
        self._make_inner = make_inner
        self.inner_adds_noise = inner_adds_noise
        self._inners: dict[int, AggregationProtocol] = {}
        self._round_m: dict[int, int] = {}

    def per_client_std(self, m: int) -> float:
        return self.options.noise_multiplier * self.options.clip_norm / math.sqrt(m)

    def inner_for(self, m: int) -> AggregationProtocol:
        if self._make_inner is None:
            return self.inner
        if m not in self._inners:
            self._inners[m] = self._make_inner(self.per_client_std(m))
        return self._inners[m]

    def _m(self, round_id: int) -> int:
        m = self.options.expected_clients or self._round_m.get(round_id)
        if m is None:
            raise ConfigError("expected_clients must be set for distributed DP when the client does not share the "
                              "server's protocol instance (each client's share of the noise depends on it)")
        return m

    def server(self, round_id: int, client_ids: Sequence[int], dim: int) -> ServerStateMachine:
        ids = tuple(client_ids)
        m = self.options.expected_clients or len(ids)
        self._round_m[round_id] = m
        return _DPServer(self.inner_for(m).server(round_id, ids, dim), lambda r: self.finish(r, len(ids)))

    def client(self, client_id: int, round_id: int, update: ClientUpdate,
               state: MutableMapping[str, Any]) -> ClientStateMachine:
        m = self._m(round_id)
        return self.inner_for(m).client(client_id, round_id, self.noised(update, m), state)

    def noised(self, update: ClientUpdate, m: int) -> ClientUpdate:
        """Clip (and, unless the inner protocol adds integer noise after quantisation, add this client's Gaussian
        share)."""
        clipped = self.options.clip(update.vector)
        if self._make_inner is not None and self.inner_adds_noise:
            return ClientUpdate(clipped, 1.0)
        noise = gaussian_noise(clipped.size, self.per_client_std(m), CSPRNG.from_os())
        return ClientUpdate((clipped.astype(np.float64) + noise).astype(np.float32), 1.0)

    def finish(self, result: AggregateResult, invited: int) -> AggregateResult:
        from ..errors import ProtocolAbort

        m = self.denominator(invited)
        std = self.per_client_std(m)
        dim = int(result.mean.size)
        survivors = int(result.info.get("noise_survivors", len(result.survivors))) or len(result.survivors)
        floor = self.options.min_noise_survivors
        if floor is not None and survivors < floor:
            raise ProtocolAbort(f"only {survivors} clients' noise is in the sum and the plan's epsilon assumed at "
                                f"least {floor}: the round releases nothing rather than spend more than promised")
        discrete, extra = None, 0.0
        if self._make_inner is not None and self.inner_adds_noise:
            tail = DiscreteGaussianNoise(std).tail_mass
            discrete = DiscreteNoise(float(result.info["scale"]), dim, tail)
        elif self._make_inner is not None:
            extra = m * dim * gaussian_tail(NOISE_RANGE_SIGMAS)  # a share beyond the widened range is clipped
        facts = RoundFacts(m, survivors, self.options.colluders, self.options.sample_rate)
        events = distributed_events(self.options.noise_multiplier, self.options.clip_norm, facts, discrete, extra)
        return self._rescale(result, None, math.sqrt(survivors) * std, invited,
                             {"dp_events": events.to_json(), "dp_noise_survivors": survivors})


#: ckks+dp widens the inner input range by this many per-client noise stds: P(|N(0,1)| > 12) ~ 3.6e-33
NOISE_RANGE_SIGMAS = 12.0


def gaussian_tail(sigmas: float) -> float:
    """P(|N(0, 1)| > sigmas)."""
    return math.erfc(sigmas / math.sqrt(2.0))


def _standard(options: dict[str, Any]) -> dict[str, Any]:
    return {"max_weight": options.pop("max_weight", 1.0), "clip": options.pop("clip", 1.0)}


def central_dp(**options: Any) -> CentralDP:
    """``dp``: plaintext aggregation + central Gaussian noise (user-level DP-FedAvg)."""
    from ..plaintext import PlaintextProtocol
    standard = _standard(options)
    dp, rest = _split(options)
    if dp.mechanism != "gaussian":
        raise ConfigError("mechanism: central DP uses the Gaussian mechanism")
    inner = PlaintextProtocol(max_weight=1.0, clip=standard["clip"], **rest)
    return CentralDP.wrap("dp", inner, dp, **standard)


def _no_adaptive(dp: DPOptions, name: str) -> None:
    if dp.adaptive:
        raise ConfigError(f"adaptive clipping is implemented for central DP ('dp') only, not {name!r}")
    if dp.denominator == "noised-count":
        raise ConfigError(f"denominator='noised-count' is implemented for central DP ('dp') only, not {name!r}: "
                          "dividing by the exact count would release the participant count unaccounted")


def local_dp(**options: Any) -> LocalDP:
    """``local-dp``: every client clips and noises its own update; plaintext aggregation."""
    from ..plaintext import PlaintextProtocol
    standard = _standard(options)
    dp, rest = _split(options)
    _no_adaptive(dp, "local-dp")
    inner = PlaintextProtocol(max_weight=1.0, clip=standard["clip"], **rest)
    return LocalDP.wrap("local-dp", inner, dp, **standard)


def dp_sgd(**options: Any) -> DPSGD:
    """``dp-sgd``: Opacus DP-SGD in each client (record-level); plaintext sample-weighted aggregation."""
    from ..plaintext import PlaintextProtocol
    standard = _standard(options)
    dp, rest = _split(options)
    _no_adaptive(dp, "dp-sgd")
    inner = PlaintextProtocol(max_weight=standard["max_weight"], clip=standard["clip"], **rest)
    return DPSGD.wrap("dp-sgd", inner, dp, **standard)


def _active_hooks(dp: DPOptions, rest: Mapping[str, Any]) -> dict[str, Any]:
    """secagg+dp with active=true: the honest clients themselves refuse a signed survivor set below the plan's noise
    floor, and count the declared colluders in the cohort check (protocols.secagg.active)."""
    if rest.get("active") is not True:
        return {}
    return {"colluders": dp.colluders, "min_noise_survivors": dp.min_noise_survivors or None}


def secagg_dp(**options: Any) -> DistributedDP:
    """``secagg+dp``: distributed discrete Gaussian noise added by each client before SecAgg masking."""
    import dataclasses

    from .. import registry
    standard = _standard(options)
    exact = bool(options.pop("exact_sampler", False))
    dp, rest = _split(options)
    _no_adaptive(dp, "secagg+dp")
    if dp.mechanism != "gaussian":
        raise ConfigError("mechanism: distributed DP uses the (discrete) Gaussian mechanism")
    if "client_noise" in rest:
        raise ConfigError("client_noise is set by secagg+dp itself")
    base = registry.create("secagg", {"max_weight": 1.0, "clip": standard["clip"], **rest, **_active_hooks(dp, rest)})

    def make_inner(std: float) -> AggregationProtocol:
        inner = dataclasses.replace(base, client_noise=DiscreteGaussianNoise(std, exact))
        if rest.get("active") is True:  # one roster and registrar for every noise level
            inner._cache["identities"] = base._cache["identities"]  # type: ignore[attr-defined]
        return inner

    protocol = DistributedDP.wrap("secagg+dp", base, dp, **standard)
    protocol._make_inner = make_inner
    return protocol


def ckks_dp(**options: Any) -> DistributedDP:
    """``ckks+dp``: each client adds its Gaussian share of the noise before CKKS encryption (never clipped: the
    inner input range is widened for it)."""
    from .. import registry
    standard = _standard(options)
    dp, rest = _split(options)
    _no_adaptive(dp, "ckks+dp")
    if dp.mechanism != "gaussian":
        raise ConfigError("mechanism: distributed DP uses the Gaussian mechanism")
    base_range = max(float(standard["clip"]), 1.0)
    if rest.get("active") is True and dp.min_noise_survivors:
        # active key holders decrypt only a sum they recompute from >= min_clients signed contributions: with the
        # plan's noise floor there, a malicious server cannot shrink the noise by dropping contributions
        rest["min_clients"] = max(int(rest.get("min_clients", 3)), dp.min_noise_survivors)
    inner = registry.create("ckks", {"max_weight": 1.0, "clip": standard["clip"], **rest})

    def make_inner(std: float) -> AggregationProtocol:
        made = registry.create("ckks", {"max_weight": 1.0, "clip": base_range + NOISE_RANGE_SIGMAS * std, **rest})
        if rest.get("active") is True:  # one roster and registrar for every noise level
            made._cache["identities"] = inner.identities()  # type: ignore[attr-defined]
        return made

    return DistributedDP.wrap("ckks+dp", inner, dp, make_inner=make_inner, inner_adds_noise=False, **standard)
