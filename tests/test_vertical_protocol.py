"""The vertical state machines without torch: rows stay aligned whatever order each party's data is in, the secure
sum is the exact sum of the parties' embeddings, and fuzzed replies reach the label party only as privfed errors."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from protocols import registry
from protocols.errors import PrivfedError, ProtocolAbort
from protocols.vertical import FeatureParty, LabelParty
from privfed.runtime.local import run_round


def _code(entity: str, salt: int) -> np.ndarray:
    """A per-entity embedding in [-1, 1] that identifies the entity (so a misaligned row shows)."""
    raw = hashlib.sha256(f"{salt}:{entity}".encode()).digest()[:2]
    return np.frombuffer(raw, dtype=np.uint8).astype(np.float32) / 255.0 * 2 - 1


class _ById:
    embedding_dim = 2

    def __init__(self, salt: int) -> None:
        self.salt, self.ids = salt, []

    def align(self, ids):
        self.ids = list(ids)

    def embed(self, rows, train):
        return np.stack([_code(self.ids[r], self.salt) for r in rows])

    def backward(self, gradient):
        pass


def _session(orders: list[list[str]], label_ids: list[str], combine: str = "concat"):
    parties = [FeatureParty(k, ids, _ById(k)) for k, ids in enumerate(orders)]
    label = LabelParty(label_ids, len(parties), combine, [2] * len(parties))
    for k, payload in label.psi_requests().items():
        label.receive_psi(k, parties[k].handle(payload))
    for k, payload in label.finish_psi().items():
        label.receive_aligned(k, parties[k].handle(payload))
    return label, parties


@settings(max_examples=15, deadline=None)
@given(st.randoms(use_true_random=False), st.integers(1, 3))
def test_embedded_rows_are_the_aligned_entities_whatever_the_data_order(rnd, n_parties: int) -> None:
    universe = [f"id-{i}" for i in range(30)]
    orders = []
    for _ in range(n_parties):
        held = [e for e in universe if rnd.random() < 0.8]
        rnd.shuffle(held)
        orders.append(held)
    label_ids = [e for e in universe if rnd.random() < 0.8]
    rnd.shuffle(label_ids)
    expected = sorted(set(label_ids).intersection(*map(set, orders)))
    if not expected:
        with pytest.raises(ProtocolAbort, match="never intersect"):
            _session(orders, label_ids)
        return
    label, parties = _session(orders, label_ids)
    assert label.aligned == expected and all(p.aligned_ids == expected for p in parties)
    rows = np.array(sorted(rnd.sample(range(len(expected)), min(5, len(expected)))))
    requests = label.forward_requests(1, rows, False)
    for k, party in enumerate(parties):
        got = label.receive_embedding(k, 1, rows.size, party.handle(requests[k]))
        assert np.array_equal(got, np.stack([_code(expected[r], k) for r in rows]))


def test_secure_sum_is_the_exact_sum_within_secaggs_bound() -> None:
    ids = [f"e{i}" for i in range(12)]
    label, parties = _session([ids, ids[::-1], ids[2:]], ids, combine="sum")
    rows = np.arange(6)
    for k, request in label.forward_requests(1, rows, True).items():
        assert parties[k].handle(request) is None  # no embedding in the clear under "sum"
    updates = {k: p.secure_sum_input(1) for k, p in enumerate(parties)}
    protocol = registry.create("secagg", {"clip": 1.0, "max_weight": 1.0, "threshold": 3})
    report = run_round(protocol, 1, updates)
    total = label.check_sum(report.aggregate * len(report.survivors), rows.size, report.survivors)
    exact = sum(np.stack([_code(label.aligned[r], k) for r in rows]) for k in range(3))
    assert np.abs(total - exact).max() <= 3 * report.result.error_bound + 1e-6
    # a SecAgg configured loosely (threshold 2) would sum the two others; the label party refuses that sum
    loose = registry.create("secagg", {"clip": 1.0, "max_weight": 1.0, "threshold": 2})
    dropped = run_round(loose, 2, updates, drops={1: "before-upload"})
    assert dropped.aggregate is not None and dropped.survivors == (0, 2)
    with pytest.raises(ProtocolAbort, match="not all 3"):
        label.check_sum(dropped.aggregate * len(dropped.survivors), rows.size, dropped.survivors)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzzed_replies_reach_the_label_party_only_as_privfed_errors(data: st.DataObject) -> None:
    ids = [f"e{i}" for i in range(8)]
    label, parties = _session([ids], ids)
    reply = bytearray(parties[0].handle(label.forward_requests(1, np.array([0, 1, 2]), True)[0]))
    for _ in range(data.draw(st.integers(1, 4))):
        reply[data.draw(st.integers(0, len(reply) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(reply)))
    try:
        got = label.receive_embedding(0, 1, 3, bytes(reply[:cut] if data.draw(st.booleans()) else reply))
    except PrivfedError:
        return
    assert got.shape == (3, 2) and np.isfinite(got).all() and np.abs(got).max() <= 1.0
