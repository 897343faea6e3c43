"""Helpers for the shared contract suite: build every registered protection, drive rounds phase by phase."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from protocols import registry
from protocols.base import AggregateResult, AggregationProtocol, ClientStateMachine, ClientUpdate, Outgoing
from protocols.errors import ConfigError
from privfed.threat.catalogue import malicious_server_protections

# Options that make each protection testable at a few clients. Only what differs from defaults.
CONTRACT_OPTIONS: dict[str, dict[str, Any]] = {
    # the per-value baseline is one phe ciphertext per float: short test-only keys keep the contract suite quick;
    # key length is not what this suite tests (tests/test_paillier.py covers the 2048-bit default)
    "paillier-per-value": {"key_bits": 1024, "insecure_test_keys": True},
}
# variants of a registered protection that the suite runs as protections of their own: name -> (protection, options)
CONTRACT_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    # threshold Paillier, 3 of 5 key holders; short test keys (dealing and proofs at 2048 bits are benchmarked, not
    # tested here); the harness re-creates client machines with empty state, so the dealer re-provisions them
    "paillier[threshold]": ("paillier", {"decryption": "threshold", "threshold": 3, "key_bits": 1024,
                                         "insecure_test_keys": True, "dealer_keeps_shares": True}),
}
MAX_WEIGHT = 10.0
CLIP = 1.0


#: protections that claim security against a malicious server pass the suite in active mode too ("NAME@active"):
#: the threat catalogue's own list, so a protection is covered as soon as the catalogue claims it
ACTIVE_VARIANTS = tuple(label for label, _, _ in malicious_server_protections())


def available_protections() -> list[str]:
    return [*registry.names(), *ACTIVE_VARIANTS, *CONTRACT_VARIANTS]


def make_protocol(name: str, **extra: Any) -> AggregationProtocol:
    """The protection with the contract options, or skip if it is not built / its dependency is missing."""
    label, _, mode = name.partition("@")
    name, variant = CONTRACT_VARIANTS.get(label, (label, {}))
    if mode == "active":
        # the fuzz rounds have 3 clients: active SecAgg then needs n_C = 0 (2t > n + n_C, with t = 2)
        extra = {"active": True, **({"corruption_fraction": 0.0} if name.startswith("secagg") else {}), **extra}
    options = {"max_weight": MAX_WEIGHT, "clip": CLIP, **CONTRACT_OPTIONS.get(name, {}), **variant, **extra}
    try:
        return registry.create(name, options)
    except ConfigError as exc:
        if "pip install" in str(exc):  # an optional third-party dependency is not installed: skip, never pass
            pytest.skip(f"{name} not available: {exc}")
        raise


def updates_for(n: int, dim: int, seed: int, *, equal_weights: bool = False, scale: float = 0.5,
                ) -> dict[int, ClientUpdate]:
    rng = np.random.default_rng(seed)  # test data only
    return {cid: ClientUpdate((rng.uniform(-scale, scale, dim)).astype(np.float32),
                              1.0 if equal_weights else float(rng.integers(1, int(MAX_WEIGHT) + 1)))
            for cid in range(n)}


def exact_mean(updates: dict[int, ClientUpdate], survivors: tuple[int, ...]) -> np.ndarray:
    w = np.array([updates[c].weight for c in survivors])
    x = np.stack([updates[c].vector.astype(np.float64) for c in survivors])
    return w @ x / w.sum()


def tolerance(result: AggregateResult) -> float:
    """Declared bound, plus 7 standard deviations of any declared DP noise, plus float32 input rounding."""
    return result.error_bound + 7.0 * float(result.info.get("dp_noise_std", 0.0)) + 1e-6


@dataclass
class PhaseState:
    """A round driven up to (not into) phase ``index``: the server waits for that phase's replies."""

    server: Any
    clients: dict[int, ClientStateMachine]
    outgoing: Outgoing
    replies: dict[int, bytes] = field(default_factory=dict)


def reply_bytes(reply: object) -> bytes:
    """The contract's reply types: bytes, or the read-only memoryview of an ArraySlot (never a writable buffer);
    returned as bytes for tests that mutate replies."""
    assert isinstance(reply, (bytes, memoryview)), f"a reply must be bytes or a memoryview, got {type(reply).__name__}"
    assert not isinstance(reply, memoryview) or (reply.readonly and reply.format == "B" and reply.c_contiguous)
    return bytes(reply)


def drive_to_phase(protocol: AggregationProtocol, updates: dict[int, ClientUpdate], index: int,
                   *, with_replies: bool = True) -> PhaseState | None:
    """Run a round honestly up to phase ``index``. Returns None if the round ends before that phase."""
    ids = tuple(sorted(updates))
    dim = next(iter(updates.values())).vector.size
    states: dict[int, dict] = {}
    server = protocol.server(1, ids, dim)
    outgoing = server.start()
    clients = {cid: protocol.client(cid, 1, updates[cid], states.setdefault(cid, {})) for cid in ids}
    for _ in range(index):
        for cid, payload in outgoing.messages.items():
            reply = clients[cid].handle(payload)
            if reply is not None:
                reply_bytes(reply)
                server.receive(cid, reply)
        step = server.advance()
        if isinstance(step, AggregateResult):
            return None
        outgoing = step
    state = PhaseState(server, clients, outgoing)
    if with_replies:
        for cid, payload in outgoing.messages.items():
            reply = clients[cid].handle(payload)
            if reply is not None:
                state.replies[cid] = reply_bytes(reply)
        # the clients' state moved on; rebuild them for client-side fuzzing on demand
    return state
