"""The in-process runtime: exact byte counts, separate clocks, dropouts at named points, rejections recorded."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from protocols import create
from protocols.base import ClientStateMachine, ClientUpdate
from protocols.errors import ConfigError, MessageError
from privfed.runtime.local import TranscriptKey, run_round


def _updates(n: int = 4, dim: int = 10) -> dict[int, ClientUpdate]:
    rng = np.random.default_rng(0)
    return {c: ClientUpdate(rng.normal(size=dim).astype(np.float32), float(c + 1)) for c in range(n)}


def test_byte_counts_are_the_real_message_sizes_and_transcript_digests_match() -> None:
    key = TranscriptKey()
    report = run_round(create("plaintext"), 3, _updates(), record_server_view=True, transcript_key=key)
    for phase, cid, payload in report.server_view:
        assert report.upload_bytes[cid][phase] == len(payload)
        entry = next(e for e in report.transcript if e.sender == str(cid) and e.phase == phase)
        # keyed with the run's key (privfed.runtime.transcript), never the plain hash
        assert entry.size == len(payload) and key.matches(payload, entry.hmac_sha256)
        assert entry.hmac_sha256 != hashlib.sha256(payload).hexdigest()
        assert entry.kind == "update"
    assert all(report.download_total(c) > 0 for c in range(4))
    assert set(report.client_seconds) == {0, 1, 2, 3} and report.server_seconds > 0
    assert report.total_seconds >= report.server_seconds


def test_drop_before_upload_excludes_client_and_counts_no_bytes() -> None:
    report = run_round(create("plaintext"), 1, _updates(), drops={2: "before-upload"})
    assert report.result.survivors == (0, 1, 3)
    assert report.dropped[2] == {"phase": "upload", "reason": "injected dropout"}
    assert report.upload_total(2) == 0 and report.download_total(2) == 0


def test_unknown_drop_point_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown drop point"):
        run_round(create("plaintext"), 1, _updates(), drops={0: "unmask"})


def test_tampered_reply_is_rejected_with_reason() -> None:
    report = run_round(create("plaintext"), 1, _updates(), tamper=lambda p, c, b: b[:-1] if c == 1 else b)
    assert report.rejected[1]["reason"] == "message truncated"
    assert report.result.survivors == (0, 2, 3)


def test_refusing_client_counts_as_dropped() -> None:
    class Refuses(ClientStateMachine):
        def handle(self, payload: bytes) -> bytes:
            raise MessageError("this client refuses")

    report = run_round(create("plaintext"), 1, _updates(), client_overrides={0: lambda m: Refuses()})
    assert "refuses" in report.dropped[0]["reason"]
    assert report.result.survivors == (1, 2, 3)


def test_abort_is_reported_not_raised() -> None:
    report = run_round(create("plaintext", {"min_clients": 4}), 1, _updates(), drops={0: "before-upload"})
    assert report.result is None and "3 updates received, 4 needed" in report.aborted


def test_mixed_lengths_are_refused() -> None:
    updates = _updates()
    updates[9] = ClientUpdate(np.zeros(3, dtype=np.float32), 1.0)
    with pytest.raises(MessageError):
        run_round(create("plaintext"), 1, updates)


def test_survivors_count_completed_clients_and_contributors_count_inputs() -> None:
    report = run_round(create("plaintext"), 1, _updates(), drops={1: "before-upload"})
    summary = report.summary()
    assert summary["survivors"] == 3 and summary["contributors"] == 3
    assert report.completed == (0, 2, 3) == report.survivors


def test_key_holder_release_gives_the_aggregate_to_the_clients_only() -> None:
    pytest.importorskip("tenseal")
    protocol = create("ckks", {"release": "key-holders", "max_weight": 10.0})
    updates = _updates(n=4, dim=50)
    report = run_round(protocol, 1, updates, client_states={})
    assert report.result.learned_by == "key-holders"
    assert np.isnan(report.result.mean).all()  # the server's result holds no mean
    weights = np.array([u.weight for u in updates.values()])
    exact = weights @ np.stack([u.vector.astype(np.float64) for u in updates.values()]) / weights.sum()
    assert np.max(np.abs(report.aggregate - exact)) < 1e-6
