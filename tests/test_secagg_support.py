"""Helpers shared by the SecAgg tests (no tests here): a capturing protocol, a phase-by-phase driver, data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from protocols.base import AggregateResult, ClientUpdate, Outgoing
from protocols.secagg import SecAggProtocol
from protocols.wire import Message, decode, encode

SERVERS: list[Any] = []


@dataclass(frozen=True)
class CapturingSecAgg(SecAggProtocol):
    """SecAgg that keeps a handle on each server it creates (tests read the decoded integer sum)."""

    def server(self, round_id, client_ids, dim):  # type: ignore[override]
        server = super().server(round_id, client_ids, dim)
        SERVERS.append(server)
        return server


def capture_encodings(store: dict[int, np.ndarray]):
    """A client_overrides factory recording each client's encoded (quantised, ring) input before masking."""
    def wrap(machine):
        original = machine._encode

        def recording(plan, out):
            ring = original(plan, out)
            store[machine.client_id] = ring.copy()
            return ring
        machine._encode = recording
        return machine
    return wrap


def updates(n: int, dim: int, seed: int = 0, *, scale: float = 0.9, max_weight: float = 10.0,
            ids: list[int] | None = None) -> dict[int, ClientUpdate]:
    rng = np.random.default_rng(seed)  # test data only
    ids = list(range(n)) if ids is None else ids
    return {cid: ClientUpdate(rng.uniform(-scale, scale, dim).astype(np.float32),
                              float(rng.integers(1, int(max_weight) + 1))) for cid in ids}


def exact_mean(ups: dict[int, ClientUpdate], survivors) -> np.ndarray:
    w = np.array([ups[c].weight for c in survivors], dtype=np.float64)
    return w @ np.stack([ups[c].vector.astype(np.float64) for c in survivors]) / w.sum()


def ring_sum(encodings: dict[int, np.ndarray], members, bits: int) -> np.ndarray:
    total = np.zeros_like(next(iter(encodings.values())), dtype=np.uint64)
    for c in members:
        total += encodings[c].astype(np.uint64)
    return total & np.uint64((1 << bits) - 1) if bits < 64 else total


class Driver:
    """Runs the state machines phase by phase without the runtime, so tests can rewrite server requests."""

    def __init__(self, protocol: SecAggProtocol, ups: dict[int, ClientUpdate], round_id: int = 1) -> None:
        self.protocol, self.ups, self.round_id = protocol, ups, round_id
        dim = next(iter(ups.values())).vector.size
        self.server = protocol.server(round_id, sorted(ups), dim)
        self.clients = {c: protocol.client(c, round_id, u, {}) for c, u in ups.items()}
        self.outgoing: Outgoing | AggregateResult = self.server.start()
        self.replies: dict[str, dict[int, bytes]] = {}

    def step(self, skip=(), deliver=True) -> Outgoing | AggregateResult:
        """Deliver the current requests (except to ``skip``), feed replies, advance."""
        out = self.outgoing
        assert isinstance(out, Outgoing)
        replies = {}
        for cid, payload in out.messages.items():
            if cid in skip:
                continue
            reply = self.clients[cid].handle(payload)
            replies[cid] = reply
            if deliver:
                self.server.receive(cid, reply)
        self.replies[out.phase] = replies
        self.outgoing = self.server.advance()
        return self.outgoing

    def run_to(self, phase: str, skip_by_phase=None) -> Outgoing:
        skip_by_phase = skip_by_phase or {}
        while isinstance(self.outgoing, Outgoing) and self.outgoing.phase != phase:
            self.step(skip=skip_by_phase.get(self.outgoing.phase, ()))
        assert isinstance(self.outgoing, Outgoing)
        return self.outgoing


def server_request(kind: str, round_id: int, fields: dict) -> bytes:
    return encode(Message("secagg", kind, round_id, -1, fields))


def rewrite(payload: bytes, spec, round_id: int, **changes) -> bytes:
    msg = decode(payload, spec, protocol="secagg", round_id=round_id)
    fields = dict(msg.fields)
    fields.update(changes)
    return encode(Message(msg.protocol, msg.kind, msg.round_id, msg.sender, fields))
