"""Plaintext FedAvg aggregation: the baseline.

Threat model: hides nothing. The server receives every client's update and weight in the clear and computes the
weighted mean exactly (float64 accumulation of float32 inputs). Use it to measure what protection costs, or when the
server is trusted and the released model needs no output privacy. Under any threat model that distrusts the server
the threat layer refuses it.

Phases: ``upload`` (server asks for the input; each client replies ``update`` with its float32 vector and weight).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, MutableMapping, Sequence

import numpy as np

from .base import (AggregateResult, AggregationProtocol, ClientStateMachine, ClientUpdate, Outgoing,
                   ServerStateMachine)
from .errors import ConfigError, MessageError, ProtocolAbort
from .wire import FieldSpec, Message, MessageSpec, decode, encode

__all__ = ["PlaintextProtocol"]

NAME = "plaintext"
REQUEST = MessageSpec("upload-request", {"dim": FieldSpec("int", min_value=1)})
UPDATE = MessageSpec("update", {
    "vector": FieldSpec("array", dtype="float32"),
    "weight": FieldSpec("float", min_value=0.0),
})


@dataclass(frozen=True)
class PlaintextProtocol(AggregationProtocol):
    """Exact weighted mean, in the clear."""

    name: ClassVar[str] = NAME
    phases: ClassVar[tuple[str, ...]] = ("upload",)
    upload_phase: ClassVar[str] = "upload"

    min_clients: int = 1
    #: standard options every protocol accepts (see protocols.base); plaintext needs neither bound
    max_weight: float = 1.0
    clip: float = 1.0

    def __post_init__(self) -> None:
        if self.min_clients < 1:
            raise ConfigError("min_clients must be >= 1")

    def server(self, round_id: int, client_ids: Sequence[int], dim: int) -> "PlaintextServer":
        if dim < 1:
            raise ConfigError("dim must be >= 1")
        return PlaintextServer(self, round_id, tuple(client_ids), dim)

    def client(self, client_id: int, round_id: int, update: ClientUpdate,
               state: MutableMapping[str, Any]) -> "PlaintextClient":
        return PlaintextClient(client_id, round_id, update)

    def describe(self) -> Mapping[str, Any]:
        return {"protocol": NAME, "hides": "nothing", "min_clients": self.min_clients}


class PlaintextServer(ServerStateMachine):
    def __init__(self, protocol: PlaintextProtocol, round_id: int, client_ids: tuple[int, ...], dim: int) -> None:
        self.protocol, self.round_id, self.client_ids, self.dim = protocol, round_id, client_ids, dim
        self._sum = np.zeros(dim, dtype=np.float64)
        self._weight = 0.0
        self._received: list[int] = []
        self._spec = UPDATE.with_lengths(vector=dim)

    def start(self) -> Outgoing:
        request = {cid: encode(Message(NAME, REQUEST.kind, self.round_id, -1, {"dim": self.dim}))
                   for cid in self.client_ids}
        return Outgoing("upload", request)

    def receive(self, sender: int, payload: bytes) -> None:
        if sender not in self.client_ids:
            raise MessageError(f"client {sender} is not in this round")
        if sender in self._received:
            raise MessageError(f"second update from client {sender} (replay)")
        message = decode(payload, self._spec, protocol=NAME, round_id=self.round_id, sender=sender)
        weight = message["weight"]
        if not weight > 0:
            raise MessageError("weight must be positive")
        self._sum += message["vector"].astype(np.float64) * weight
        self._weight += weight
        self._received.append(sender)

    def advance(self) -> AggregateResult:
        if len(self._received) < self.protocol.min_clients or self._weight <= 0:
            raise ProtocolAbort(f"{len(self._received)} updates received, {self.protocol.min_clients} needed")
        return AggregateResult(self._sum / self._weight, self._weight, tuple(sorted(self._received)),
                               info={"protocol": NAME})


class PlaintextClient(ClientStateMachine):
    def __init__(self, client_id: int, round_id: int, update: ClientUpdate) -> None:
        self.client_id, self.round_id, self.update = client_id, round_id, update

    def handle(self, payload: bytes) -> bytes:
        request = decode(payload, REQUEST, protocol=NAME, round_id=self.round_id, sender=-1)
        if request["dim"] != self.update.vector.size:
            raise MessageError(f"server asked for {request['dim']} values, this client has {self.update.vector.size}")
        return encode(Message(NAME, UPDATE.kind, self.round_id, self.client_id,
                              {"vector": self.update.vector, "weight": float(self.update.weight)}))
