"""Secure aggregation with dropout recovery: SecAgg (Bonawitz et al., CCS 2017) and SecAgg+ (Bell et al., CCS 2020).

Threat model: an **honest-but-curious server** that follows the protocol but records everything it receives, and
that may collude with up to t - 1 clients of any honest client's neighbourhood (all n clients for the complete
graph). It learns the sum of the weighted, fixed-point inputs of the clients whose masked input it accepted
(``AggregateResult.survivors``) and the sum of their weights — and nothing else about any honest client's input:
each masked input is exactly uniform on Z_{2^ring_bits} given everything else (self mask from a 256-bit OS seed b_u,
pairwise masks from X25519 + HKDF keys, AES-256 counter mode expanded straight into the ring). Clients learn
nothing about each other's inputs. Secrecy is computational for masks (CDH on Curve25519, AES as a PRF, HKDF) and
information-theoretic for the Shamir sharing of b_u and of the masking private key. Public facts the server learns:
who dropped at which phase, the graph, the threshold. Assumptions and limits: the server relays public keys
faithfully (no signatures or PKI: a *malicious* server could substitute keys, equivocate about the survivor set, or
choose the SecAgg+ graph; the active-adversary consistency check of Bonawitz et al. is **not** implemented); a
client's inputs are protected only while fewer than t parties of its neighbourhood collude with the server;
the released sum itself is not differentially private unless ``client_noise`` adds distributed DP noise.

Phases (``phases``): ``advertise-keys`` (two fresh X25519 keys per client: c for share encryption, s for masking),
``share-keys`` (Shamir shares of b_u and of the s private key, AES-GCM-encrypted to each neighbour, plus a
commitment to b_u), ``masked-input`` (y_u = x_u + PRG(b_u) + sum_v +-PRG(s_uv) in Z_{2^ring_bits}; the upload),
``unmask`` (each survivor reveals b-shares of surviving neighbours and s-shares of neighbours that dropped before
upload — never both for one peer; the server reconstructs, checks each reconstruction against the advertised public
key or commitment, removes the masks and decodes). Dropouts are tolerated at every phase; the round aborts
(:class:`~protocols.errors.ProtocolAbort`) as soon as a needed neighbourhood has fewer than t survivors — checked by
the server and by each client independently. A client dropped before upload stays hidden: its late masked input is
rejected, and its self mask is never reconstructed.

Options: ``threshold`` (None: ceil(2n/3) for the complete graph, the automatic t for SecAgg+; a float in (0, 1]: a
fraction of n — of k for SecAgg+; an int: absolute; validated at :meth:`SecAggProtocol.server`: 1 < t <= n, and
t <= k for a sparse graph), ``ring_bits`` (8..64, default 32: uint32 on the wire), ``graph`` (``"complete"`` or
``"harary"``), ``neighbours`` (k; None chooses k = O(log n) from ``dropout_fraction`` and ``corruption_fraction``,
see :mod:`protocols.secagg.graph`), ``client_noise`` (distributed-DP hook, see :mod:`protocols.secagg.client`), and
the standard ``max_weight`` and ``clip``. ``active=True`` selects the active-adversary variant (signed
advertisements under a roster, the consistency-check round; see :mod:`protocols.secagg.active`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, MutableMapping, Sequence

from ..base import AggregationProtocol, ClientUpdate
from ..encoding import FixedPoint
from ..errors import ConfigError
from .graph import choose_neighbours
from .masking import MAX_BITS, MIN_BITS
from .messages import NAME, PHASES

__all__ = ["SecAggProtocol", "RoundPlan", "DEFAULT_CORRUPTION_FRACTION"]

GRAPHS = ("complete", "harary")
#: the share of corrupted clients SecAgg assumes unless told otherwise
DEFAULT_CORRUPTION_FRACTION = 0.1


@dataclass(frozen=True)
class RoundPlan:
    """The public parameters of one round, computed identically by the server and every client from n."""

    n: int
    graph: str
    k: int
    threshold: int
    fixed_point: FixedPoint


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class SecAggProtocol(AggregationProtocol):
    """SecAgg / SecAgg+ as one validated configuration (cheap: no keys are generated here)."""

    name: ClassVar[str] = NAME
    phases: ClassVar[tuple[str, ...]] = PHASES
    upload_phase: ClassVar[str] = "masked-input"

    max_weight: float = 1.0
    clip: float = 1.0
    threshold: float | int | None = None
    ring_bits: int = 32
    graph: str = "complete"
    neighbours: int | None = None
    dropout_fraction: float = 0.1
    corruption_fraction: float = DEFAULT_CORRUPTION_FRACTION
    client_noise: Any = None
    active: bool = False
    #: the fewest masked inputs the server unmasks a sum of (None: the threshold alone). The FedAvg loop sets it to
    #: collusion + 2 under a distrusted server, so a round that loses clients mid-way never yields a sum holding a
    #: single honest input beside the colluders' (which would be that input)
    min_survivors: int | None = None

    def __new__(cls, *args: Any, **kwargs: Any) -> "SecAggProtocol":
        # active=True selects the active-adversary variant (protocols.secagg.active): other phases, same options
        if cls is SecAggProtocol and kwargs.get("active") is True:
            from .active import ActiveSecAggProtocol
            cls = ActiveSecAggProtocol
        return object.__new__(cls)

    def __post_init__(self) -> None:
        if not isinstance(self.active, bool):
            raise ConfigError(f"active must be true or false, got {self.active!r}")
        for label, value in (("max_weight", self.max_weight), ("clip", self.clip)):
            if not (_is_number(value) and math.isfinite(value) and value > 0):
                raise ConfigError(f"{label} must be a positive finite number, got {value!r}")
        if not (isinstance(self.ring_bits, int) and not isinstance(self.ring_bits, bool)
                and MIN_BITS <= self.ring_bits <= MAX_BITS):
            raise ConfigError(f"ring_bits must be an integer in {MIN_BITS}..{MAX_BITS}, got {self.ring_bits!r}")
        if self.graph not in GRAPHS:
            raise ConfigError(f"graph must be one of {GRAPHS}, got {self.graph!r}")
        if self.neighbours is not None:
            if self.graph != "harary":
                raise ConfigError("neighbours applies to graph='harary' only")
            if not (isinstance(self.neighbours, int) and not isinstance(self.neighbours, bool)
                    and self.neighbours >= 2 and self.neighbours % 2 == 0):
                raise ConfigError(f"neighbours must be an even integer >= 2, got {self.neighbours!r}")
        for label, value in (("dropout_fraction", self.dropout_fraction),
                             ("corruption_fraction", self.corruption_fraction)):
            if not (_is_number(value) and 0.0 <= value < 1.0):
                raise ConfigError(f"{label} must be in [0, 1), got {value!r}")
        if self.dropout_fraction + self.corruption_fraction >= 1.0:
            raise ConfigError("dropout_fraction + corruption_fraction must be below 1")
        t = self.threshold
        if t is not None:
            if isinstance(t, bool) or not _is_number(t):
                raise ConfigError(f"threshold must be None, a fraction in (0, 1] or an integer >= 2, got {t!r}")
            if isinstance(t, float) and not 0.0 < t <= 1.0:
                raise ConfigError(f"a fractional threshold must be in (0, 1], got {t}")
            if isinstance(t, int) and t < 2:
                raise ConfigError(f"an absolute threshold must be >= 2, got {t}")
        m = self.min_survivors
        if m is not None and (isinstance(m, bool) or not isinstance(m, int) or m < 2):
            raise ConfigError(f"min_survivors must be None or an integer >= 2, got {m!r}")
        noise = self.client_noise
        if noise is not None:
            bound = getattr(noise, "real_bound", None)
            if not (_is_number(bound) and math.isfinite(bound) and bound >= 0):
                raise ConfigError("client_noise.real_bound must be a finite number >= 0")
            if not callable(getattr(noise, "sample", None)):
                raise ConfigError("client_noise must have a sample(dim, scale, rng) method")

    # -- round parameters -------------------------------------------------------------------------------------

    def plan(self, n: int) -> RoundPlan:
        """Graph, k, threshold and fixed point for a round of n clients (raises ConfigError / HeadroomError)."""
        if n < 2:
            raise ConfigError(f"secure aggregation needs at least 2 clients, got {n}")
        graph, k, auto_t = "complete", n - 1, None
        if self.graph == "harary":
            if self.neighbours is None:
                chosen = choose_neighbours(n, self.dropout_fraction, self.corruption_fraction)
                if chosen is not None:
                    graph, (k, auto_t) = "harary", chosen
            elif self.neighbours < n - 1:
                graph, k = "harary", self.neighbours
        pool = n if graph == "complete" else k
        t = self.threshold
        if t is None:
            t = auto_t if auto_t is not None else max(2, math.ceil(2 * pool / 3))
        elif isinstance(t, float):
            t = max(2, math.ceil(t * pool - 1e-9))
        if graph == "complete" and not 1 < t <= n:
            raise ConfigError(f"threshold must satisfy 1 < t <= n = {n}, got t = {t}")
        if graph == "harary" and not 1 < t <= k:
            raise ConfigError(f"with the sparse graph every client needs >= t neighbours: 1 < t <= k = {k}, "
                              f"got t = {t}")
        extra = float(self.client_noise.real_bound) if self.client_noise is not None else 0.0
        fixed_point = FixedPoint.for_bits(self.ring_bits, n, max(float(self.clip), 1.0), extra_per_client_real=extra)
        return RoundPlan(n, graph, k, int(t), fixed_point)

    # -- factories ----------------------------------------------------------------------------------------------

    def server(self, round_id: int, client_ids: Sequence[int], dim: int):  # -> SecAggServer
        from .server import SecAggServer

        if dim < 1:
            raise ConfigError("dim must be >= 1")
        ids = tuple(client_ids)
        if len(set(ids)) != len(ids):
            raise ConfigError("client ids must be distinct")
        if any(not isinstance(c, int) or isinstance(c, bool) or not 0 <= c < (1 << 32) - 1 for c in ids):
            raise ConfigError("client ids must be integers in 0 .. 2^32 - 2 (Shamir points are id + 1)")
        return SecAggServer(self, round_id, ids, dim, self.plan(len(ids)))

    def client(self, client_id: int, round_id: int, update: ClientUpdate,
               state: MutableMapping[str, Any]):  # -> SecAggClient
        from .client import SecAggClient

        return SecAggClient(self, client_id, round_id, update)

    def describe(self) -> Mapping[str, Any]:
        return {
            "protocol": NAME,
            "hides": "individual inputs and weights from the server and other clients (honest-but-curious server)",
            "learned_by": "server",
            "graph": self.graph,
            "neighbours": self.neighbours,
            "threshold": self.threshold,
            "ring_bits": self.ring_bits,
            "dropout_fraction": self.dropout_fraction,
            "corruption_fraction": self.corruption_fraction, "min_survivors": self.min_survivors,
            "client_noise": None if self.client_noise is None else float(self.client_noise.real_bound),
            "active_adversary_checks": False,
        }
