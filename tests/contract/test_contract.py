"""The shared contract suite: every registered protection must pass it.

Correctness against the exact weighted mean within the protocol's declared bound, dropouts before and after upload,
bad replies rejected with the project's error while the round completes, and a fuzz of every decoder with 10,000
random and mutated messages per protection in which only privfed's own errors may escape.
"""

from __future__ import annotations

import numpy as np
import pytest

from protocols.base import AFTER_UPLOAD, BEFORE_UPLOAD
from protocols.errors import PrivfedError
from privfed.runtime.local import run_round

from .harness import available_protections, drive_to_phase, exact_mean, make_protocol, tolerance, updates_for
from .mutations import mutants

ALL = available_protections()
N_CLIENTS = 5
DIM = 300


def _is_dp(name: str) -> bool:
    return "dp" in name


@pytest.mark.parametrize("name", ALL)
def test_mean_matches_exact_within_declared_bound(name: str) -> None:
    protocol = make_protocol(name)
    updates = updates_for(N_CLIENTS, DIM, seed=1, equal_weights=_is_dp(name), scale=0.01 if _is_dp(name) else 0.5)
    report = run_round(protocol, 1, updates)
    assert report.aborted is None, report.aborted
    result = report.result
    assert result.survivors == tuple(range(N_CLIENTS))
    error = np.max(np.abs(result.mean - exact_mean(updates, result.survivors)))
    assert error <= tolerance(result), f"{name}: error {error} above bound {tolerance(result)}"
    assert result.mean.shape == (DIM,)


@pytest.mark.parametrize("name", [n for n in ALL if not _is_dp(n)])
def test_weights_change_the_mean(name: str) -> None:
    """A protection that ignored weights would pass an equal-weight test; this one cannot."""
    protocol = make_protocol(name)
    updates = updates_for(N_CLIENTS, DIM, seed=2)
    result = run_round(protocol, 1, updates).result
    unweighted = np.mean([u.vector.astype(np.float64) for u in updates.values()], axis=0)
    assert np.max(np.abs(result.mean - exact_mean(updates, result.survivors))) <= tolerance(result)
    assert np.max(np.abs(unweighted - exact_mean(updates, result.survivors))) > 10 * tolerance(result)


@pytest.mark.parametrize("point", [BEFORE_UPLOAD, AFTER_UPLOAD])
@pytest.mark.parametrize("name", [n for n in ALL if not _is_dp(n)])
def test_dropout_gives_mean_of_survivors(name: str, point: str) -> None:
    protocol = make_protocol(name)
    updates = updates_for(N_CLIENTS, DIM, seed=3)
    report = run_round(protocol, 1, updates, drops={1: point})
    assert report.aborted is None, report.aborted
    result = report.result
    expected_survivors = tuple(c for c in range(N_CLIENTS) if not (point == BEFORE_UPLOAD and c == 1))
    if point == AFTER_UPLOAD and result.survivors != expected_survivors:
        # a protocol may also exclude a client that vanished after upload; it must then say so
        assert 1 not in result.survivors
    else:
        assert result.survivors == expected_survivors
    error = np.max(np.abs(result.mean - exact_mean(updates, result.survivors)))
    assert error <= tolerance(result)


@pytest.mark.parametrize("name", ALL)
def test_garbage_reply_is_rejected_and_round_completes(name: str) -> None:
    protocol = make_protocol(name)
    updates = updates_for(N_CLIENTS, DIM, seed=4, equal_weights=_is_dp(name), scale=0.01 if _is_dp(name) else 0.5)
    upload = protocol.upload_phase

    def tamper(phase: str, cid: int, reply: bytes) -> bytes:
        return b"\x00garbage" * 7 if (cid == 2 and phase == upload) else reply

    report = run_round(protocol, 1, updates, tamper=tamper)
    assert 2 in report.rejected and report.rejected[2]["phase"] == upload
    assert report.aborted is None, report.aborted
    assert 2 not in report.result.survivors
    error = np.max(np.abs(report.result.mean - exact_mean(updates, report.result.survivors)))
    assert error <= tolerance(report.result)


@pytest.mark.parametrize("name", ALL)
def test_reply_from_another_round_is_rejected(name: str) -> None:
    protocol = make_protocol(name)
    updates = updates_for(N_CLIENTS, 50, seed=5, equal_weights=True, scale=0.01)
    old = run_round(protocol, 7, updates, record_server_view=True)
    stale = {(phase, cid): payload for phase, cid, payload in old.server_view}
    upload = protocol.upload_phase

    def replay(phase: str, cid: int, reply: bytes) -> bytes:
        return stale.get((phase, cid), reply) if (cid == 0 and phase == upload) else reply

    report = run_round(protocol, 8, updates, tamper=replay)
    assert 0 in report.rejected
    assert report.result is None or 0 not in report.result.survivors


@pytest.mark.parametrize("name", ALL)
def test_non_finite_update_never_reaches_the_aggregate(name: str) -> None:
    from protocols.base import ClientUpdate

    with pytest.raises(PrivfedError):
        ClientUpdate(np.array([0.0, np.nan], dtype=np.float32), 1.0)
    with pytest.raises(PrivfedError):
        ClientUpdate(np.array([0.0, np.inf], dtype=np.float32), 1.0)


FUZZ_PER_PROTECTION = 10_000


@pytest.mark.parametrize("name", ALL)
def test_decoders_fuzzed_only_raise_privfed_errors(name: str) -> None:
    """10,000 random and mutated messages against the server's and the clients' decoders, phase by phase."""
    protocol = make_protocol(name)
    updates = updates_for(3, 16, seed=6, equal_weights=True, scale=0.01)
    n_phases = len(protocol.phases) + 2  # protocols may add phases; drive_to_phase stops when the round ends
    phases = [i for i in range(n_phases) if drive_to_phase(protocol, updates, i, with_replies=False) is not None]
    budget = FUZZ_PER_PROTECTION // (2 * len(phases))
    checked = 0
    for index in phases:
        # server side: mutate valid replies of this phase
        state = drive_to_phase(protocol, updates, index)
        seeds = list(state.replies.items())
        if seeds:
            for k, payload in enumerate(mutants([p for _, p in seeds], budget, seed=index)):
                sender = seeds[k % len(seeds)][0]
                try:
                    state.server.receive(sender, payload)
                    state = drive_to_phase(protocol, updates, index)  # accepted: fresh state for the next one
                except PrivfedError:
                    pass
                checked += 1
        # client side: mutate valid requests of this phase
        state = drive_to_phase(protocol, updates, index, with_replies=False)
        requests = list(state.outgoing.messages.items())
        for k, payload in enumerate(mutants([p for _, p in requests], budget, seed=100 + index)):
            cid = requests[k % len(requests)][0]
            try:
                state.clients[cid].handle(payload)
                state = drive_to_phase(protocol, updates, index, with_replies=False)
            except PrivfedError:
                pass
            checked += 1
    assert checked >= FUZZ_PER_PROTECTION - 2 * len(phases)
