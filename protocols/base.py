"""The aggregation-protocol contract: a server state machine and one client state machine per client, speaking bytes.

An aggregation protocol computes sum_k w_k x_k and sum_k w_k over flat float vectors x_k from clients that may drop
out, and delivers the weighted mean to the party entitled to it (``AggregateResult.learned_by``).

* :class:`AggregationProtocol` is a frozen, validated parameter set and a factory; one instance serves a whole run
  (it may keep long-lived, per-run key material, documented by each protocol).
* :class:`ServerStateMachine` — ``start()`` returns the first :class:`Outgoing` (a phase name and one request per
  client); ``receive(sender, payload)`` takes one reply (raise :class:`~protocols.errors.MessageError` to reject it:
  the runtime then treats that client as dropped and records why); ``advance()`` closes the phase and returns the
  next :class:`Outgoing` or the :class:`AggregateResult`, or raises :class:`~protocols.errors.ProtocolAbort`.
  A client that did not reply in a phase dropped at that phase.
* :class:`ClientStateMachine` — ``handle(payload)`` returns the reply bytes (or ``None`` for no reply), raising a
  :class:`~protocols.errors.PrivfedError` to refuse (the runtime records it as that client's dropout). A reply is
  ``bytes`` or the read-only ``memoryview`` of a :class:`~protocols.wire.ArraySlot` (a large upload written in
  place); runtimes count, digest and deliver both alike and copy a view only where a transport needs ``bytes``.

Protocols own the cryptography; runtimes (``privfed.runtime``) own transport, clocks, byte counters and dropouts.
Per-client persistent state (keys that outlive a round, like a Flower node's context) lives in the ``state`` dict
the runtime hands to :meth:`AggregationProtocol.client`.

Threat model: the contract itself hides nothing; see each protocol module.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, MutableMapping, Sequence

import numpy as np

from .errors import ConfigError, MessageError

__all__ = [
    "ClientUpdate",
    "Outgoing",
    "AggregateResult",
    "ServerStateMachine",
    "ClientStateMachine",
    "AggregationProtocol",
    "BEFORE_UPLOAD",
    "AFTER_UPLOAD",
    "LEARNED_BY_SERVER",
    "LEARNED_BY_KEY_HOLDERS",
    "MIN_HONEST_IN_SUM",
    "min_sum_inputs",
]

BEFORE_UPLOAD = "before-upload"
AFTER_UPLOAD = "after-upload"
LEARNED_BY_SERVER = "server"
LEARNED_BY_KEY_HOLDERS = "key-holders"
#: every sum a distrusted server can learn holds at least this many honest inputs (one would be that input)
MIN_HONEST_IN_SUM = 2


def min_sum_inputs(colluders: int) -> int:
    """The fewest inputs a sum released to a server colluding with ``colluders`` clients may hold."""
    return int(colluders) + MIN_HONEST_IN_SUM


@dataclass(frozen=True)
class ClientUpdate:
    """One client's input to a round: a flat float32 vector and its FedAvg weight (e.g. its sample count)."""

    vector: np.ndarray
    weight: float

    def __post_init__(self) -> None:
        vector = np.asarray(self.vector)
        if vector.ndim != 1 or vector.dtype != np.float32:
            raise MessageError(f"update must be a flat float32 vector, got {vector.dtype} {vector.shape}")
        if not np.isfinite(vector).all():
            raise MessageError("update holds NaN or infinite entries")
        if not (isinstance(self.weight, (int, float)) and math.isfinite(self.weight) and self.weight > 0):
            raise MessageError(f"weight must be positive and finite, got {self.weight!r}")
        object.__setattr__(self, "vector", vector)


@dataclass(frozen=True)
class Outgoing:
    """Requests of one phase: ``messages[client_id]`` is the payload for that client."""

    phase: str
    messages: Mapping[int, bytes]


@dataclass(frozen=True)
class AggregateResult:
    """What a finished round produced.

    ``mean`` is the weighted mean (float64); ``total_weight`` the sum of survivors' weights (in the caller's units);
    ``survivors`` the clients whose input is in the sum; ``learned_by`` who learned it; ``error_bound`` the declared
    bound on |mean - exact weighted mean of the survivors' inputs| (0 for exact protocols, excluding DP noise, which
    is reported in ``info``). ``info`` holds protocol facts for the audit (never secrets).
    """

    mean: np.ndarray
    total_weight: float
    survivors: tuple[int, ...]
    learned_by: str = LEARNED_BY_SERVER
    error_bound: float = 0.0
    info: Mapping[str, Any] = field(default_factory=dict)


class ServerStateMachine(ABC):
    """Server side of one round."""

    @abstractmethod
    def start(self) -> Outgoing:
        """The first phase's requests."""

    @abstractmethod
    def receive(self, sender: int, payload: bytes) -> None:
        """Take one reply of the current phase; raise MessageError to reject it."""

    @abstractmethod
    def advance(self) -> Outgoing | AggregateResult:
        """Close the current phase: the next requests, or the result. Raise ProtocolAbort if it cannot finish."""


class ClientStateMachine(ABC):
    """Client side of one round."""

    @abstractmethod
    def handle(self, payload: bytes) -> bytes | memoryview | None:
        """Answer one request. Raise a PrivfedError to refuse (the client then counts as dropped)."""


class AggregationProtocol(ABC):
    """A named, validated protocol configuration and the factory of its state machines.

    Every protocol accepts two standard keyword options, which runtimes and the FedAvg loop always pass:
    ``max_weight`` (a public upper bound on one client's weight; clients send ``w / max_weight``) and ``clip``
    (the declared range [-clip, clip] of update entries; integer encodings clip to it and size headroom by it).
    """

    name: ClassVar[str]
    #: phase names in order; the runtime injects dropouts at any of them
    phases: ClassVar[tuple[str, ...]]
    #: the phase at which clients send their (protected) input; anchors ``before-upload`` / ``after-upload``
    upload_phase: ClassVar[str]
    #: how clients train locally: "standard" or "dp-sgd" (record-level DP inside the client)
    client_training: ClassVar[str] = "standard"

    @abstractmethod
    def server(self, round_id: int, client_ids: Sequence[int], dim: int) -> ServerStateMachine:
        """A server for one round over ``client_ids`` and vectors of ``dim`` floats. Validates sizes (may raise
        ConfigError / HeadroomError before any message is sent)."""

    @abstractmethod
    def client(self, client_id: int, round_id: int, update: ClientUpdate,
               state: MutableMapping[str, Any]) -> ClientStateMachine:
        """Client ``client_id``'s machine for one round, holding its input and its persistent ``state``."""

    def describe(self) -> Mapping[str, Any]:
        """Public parameters for reports (never secrets)."""
        return {"protocol": self.name}

    @classmethod
    def drop_points(cls) -> tuple[str, ...]:
        """Every phase name a dropout can be injected at, generic ones first."""
        return (BEFORE_UPLOAD, AFTER_UPLOAD, *cls.phases)

    @classmethod
    def resolve_drop_phase(cls, point: str) -> str:
        """Map a drop point to the protocol phase at which the client stops answering."""
        if point == BEFORE_UPLOAD:
            return cls.upload_phase
        if point == AFTER_UPLOAD:
            index = cls.phases.index(cls.upload_phase)
            return cls.phases[index + 1] if index + 1 < len(cls.phases) else "<after-round>"
        if point not in cls.phases:
            raise ConfigError(f"unknown drop point {point!r} for {cls.name}; choose from {cls.drop_points()}")
        return point
