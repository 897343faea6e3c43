"""Threshold Paillier rounds: any T of the key holders decrypt; dropouts at decrypt; wrong, replayed or misaddressed
partial decryptions rejected and their senders dropped; fewer than T is a clean abort; release=key-holders."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("gmpy2")
pytest.importorskip("phe")

from protocols import registry  # noqa: E402
from protocols.base import ClientUpdate  # noqa: E402
from protocols.errors import ConfigError, MessageError, PrivfedError, ProtocolAbort  # noqa: E402
from protocols.he_round import RESULTS_SLOT  # noqa: E402
from protocols.threshold_paillier import ThresholdPaillierProtocol  # noqa: E402
from privfed.runtime.local import run_round  # noqa: E402

from contract.harness import exact_mean, updates_for  # noqa: E402

N, DIM, T = 6, 200, 4


def _protocol(**extra) -> ThresholdPaillierProtocol:
    options = {"decryption": "threshold", "threshold": T, "key_bits": 1024, "insecure_test_keys": True,
               "max_weight": 10.0, **extra}
    protocol = registry.create("paillier", options)
    assert isinstance(protocol, ThresholdPaillierProtocol)
    return protocol


@pytest.fixture(scope="module")
def updates():
    return updates_for(N, DIM, seed=11)


def _check(report, updates) -> None:
    assert report.aborted is None, report.aborted
    error = np.max(np.abs(report.aggregate - exact_mean(updates, report.result.survivors)))
    bound = report.result.error_bound
    assert error <= (bound if np.isfinite(bound) else 1e-5)  # key-holders release: the server holds no bound


def test_any_t_key_holders_decrypt_and_n_minus_t_may_drop(updates) -> None:
    protocol, states = _protocol(), {}
    report = run_round(protocol, 1, updates, client_states=states)
    _check(report, updates)
    assert report.result.info["decrypted_by"] == [0, 1, 2, 3] and report.result.info["threshold"] == T
    dropped = {0: "decrypt", 2: "decrypt"}
    report = run_round(protocol, 2, updates, client_states=states, drops=dropped)
    _check(report, updates)
    assert report.result.survivors == tuple(range(N))  # their uploads are in the sum; they only left at decrypt
    assert not set(dropped) & set(report.result.info["decrypted_by"])


def test_fewer_than_t_at_decrypt_is_a_clean_abort_naming_phase_count_threshold(updates) -> None:
    protocol, states = _protocol(), {}
    report = run_round(protocol, 1, updates, client_states=states, drops={0: "decrypt", 1: "decrypt", 2: "decrypt"})
    assert report.result is None
    assert report.aborted == "phase decrypt: 3 key holders remain, threshold 4"


def _flip_partial(reply: bytes) -> bytes:
    middle = len(reply) // 2  # inside the partials field (most of the message): still a well-formed message
    return reply[:middle] + bytes([reply[middle] ^ 0x01]) + reply[middle + 1:]


def test_a_wrong_partial_is_rejected_its_sender_dropped_and_the_mean_stays_right(updates) -> None:
    protocol, states = _protocol(), {}
    report = run_round(protocol, 1, updates, client_states=states,
                       tamper=lambda phase, cid, reply: _flip_partial(reply) if (phase, cid) == ("decrypt", 1)
                       else reply)
    _check(report, updates)
    assert report.rejected[1]["phase"] == "decrypt"
    assert "proof" in report.rejected[1]["reason"] or "unit" in report.rejected[1]["reason"]
    assert 1 not in report.result.info["decrypted_by"] and report.result.info["partials_rejected"] == [1]


def test_a_wrong_partial_below_threshold_aborts_never_a_wrong_mean(updates) -> None:
    protocol, states = _protocol(), {}
    report = run_round(protocol, 1, updates, client_states=states, drops={4: "decrypt", 5: "decrypt"},
                       tamper=lambda phase, cid, reply: _flip_partial(reply) if (phase, cid) == ("decrypt", 0)
                       else reply)
    assert report.result is None and report.aborted.startswith("phase decrypt: 3 key holders remain")


def test_partial_from_another_round_is_rejected(updates) -> None:
    protocol, states = _protocol(), {}
    old = run_round(protocol, 1, updates, client_states=states, record_server_view=True)
    stale = {cid: payload for phase, cid, payload in old.server_view if phase == "decrypt"}
    report = run_round(protocol, 2, updates, client_states=states,
                       tamper=lambda phase, cid, reply: stale[cid] if (phase, cid) == ("decrypt", 3) else reply)
    _check(report, updates)
    assert 3 in report.rejected and 3 not in report.result.info["decrypted_by"]


def test_partial_for_another_ciphertext_is_rejected(updates) -> None:
    """A holder's valid partial of round 1's sum, re-labelled for round 2, fails the proof bound to round 2's sum."""
    protocol, states = _protocol(), {}
    server = protocol.server(5, tuple(range(N)), DIM)
    outgoing = server.start()
    clients = {c: protocol.client(c, 5, updates[c], states.setdefault(c, {})) for c in range(N)}
    for _ in range(2):
        for cid, payload in outgoing.messages.items():
            server.receive(cid, clients[cid].handle(payload))
        outgoing = server.advance()
    assert outgoing.phase == "decrypt"
    other = updates_for(N, DIM, seed=12)
    server2 = protocol.server(5, tuple(range(N)), DIM)
    out2 = server2.start()
    clients2 = {c: protocol.client(c, 5, other[c], states[c]) for c in range(N)}
    for _ in range(2):
        for cid, payload in out2.messages.items():
            server2.receive(cid, clients2[cid].handle(payload))
        out2 = server2.advance()
    reply = clients[0].handle(outgoing.messages[0])  # holder 0's partial of the first sum
    with pytest.raises(MessageError, match="proof"):
        server2.receive(0, reply)


def test_non_key_holder_contributes_but_is_never_asked_and_cannot_answer(updates) -> None:
    protocol, states = _protocol(), {}
    run_round(protocol, 1, updates, client_states=states)  # deals to clients 0..5
    more = {**updates, 7: ClientUpdate(np.full(DIM, 0.25, dtype=np.float32), 3.0)}
    report = run_round(protocol, 2, more, client_states=states)
    _check(report, more)
    assert 7 in report.result.survivors and 7 not in report.result.info["partials_valid"]
    assert report.result.info["key_holders"] == N


def test_a_client_decrypts_at_most_once_per_round(updates) -> None:
    protocol, states = _protocol(), {}
    server = protocol.server(1, tuple(range(N)), DIM)
    outgoing = server.start()
    clients = {c: protocol.client(c, 1, updates[c], states.setdefault(c, {})) for c in range(N)}
    for _ in range(2):
        for cid, payload in outgoing.messages.items():
            server.receive(cid, clients[cid].handle(payload))
        outgoing = server.advance()
    clients[0].handle(outgoing.messages[0])
    with pytest.raises(ProtocolAbort, match="at most once"):
        clients[0].handle(outgoing.messages[0])
    reply = clients[1].handle(outgoing.messages[1])
    server.receive(1, reply)
    with pytest.raises(MessageError):  # and the server takes one reply per holder
        server.receive(1, reply)


def test_release_to_key_holders_combines_among_them(updates) -> None:
    protocol, states = _protocol(release="key-holders"), {}
    report = run_round(protocol, 1, updates, client_states=states, drops={5: "combine"})
    _check(report, updates)
    assert np.isnan(report.result.mean).all() and report.result.learned_by != "server"
    assert RESULTS_SLOT in states[0] and 1 in states[0][RESULTS_SLOT]
    assert report.result.info["combined_by"] == [0, 1, 2, 3]  # the T holders whose partials were combined


def test_key_holders_recheck_the_forwarded_partials(updates) -> None:
    protocol, states = _protocol(release="key-holders"), {}

    def corrupt_combine(client):
        inner_handle = client.handle

        def handle(payload: bytes):
            if b"combine-request" in payload[:64]:
                payload = _flip_partial(payload)
            return inner_handle(payload)
        client.handle = handle
        return client

    report = run_round(protocol, 1, updates, client_states=states,
                       client_overrides={c: corrupt_combine for c in range(N)})
    assert report.result is None and "combine" in report.aborted
    assert all(RESULTS_SLOT not in states[c] for c in range(N))


def test_upload_bytes_are_those_of_shared_key_paillier(updates) -> None:
    shared = registry.create("paillier", {"key_bits": 1024, "insecure_test_keys": True, "max_weight": 10.0})
    threshold = _protocol()
    a, b = run_round(shared, 1, updates), run_round(threshold, 1, updates)
    assert a.summary()["upload_bytes_per_client"] < b.summary()["upload_bytes_per_client"]  # partials + proofs
    assert {c: a.upload_bytes[c]["upload"] for c in updates} == {c: b.upload_bytes[c]["upload"] for c in updates}
    assert b.result.info["slots_per_plaintext"] == a.result.info["slots_per_plaintext"]
    assert b.result.error_bound == pytest.approx(a.result.error_bound, rel=1e-4)  # bound uses the decoded weight


@pytest.mark.parametrize("options", [
    {"threshold": 3},                                                    # threshold without threshold decryption
    {"decryption": "bogus"},
    {"decryption": "threshold", "randomness": "crt-pool"},              # clients hold no factors
    {"decryption": "threshold", "threshold": 1},
    {"decryption": "threshold", "threshold": 1.5},
    {"decryption": "threshold", "threshold": "four"},
])
def test_bad_options_are_refused(options) -> None:
    with pytest.raises(ConfigError):
        registry.create("paillier", {"key_bits": 1024, "insecure_test_keys": True, **options})


def test_threshold_larger_than_the_key_holders_is_refused_at_dealing(updates) -> None:
    protocol = _protocol(threshold=N + 1)
    with pytest.raises(PrivfedError, match="threshold"):
        protocol.server(1, tuple(range(N)), DIM)


def test_fractional_threshold_of_the_key_holders(updates) -> None:
    protocol = _protocol(threshold=0.5)
    report = run_round(protocol, 1, updates)
    _check(report, updates)
    assert report.result.info["threshold"] == 3


def test_a_supplied_authority_must_match_the_threshold_option() -> None:
    from protocols.threshold_paillier import ThresholdPaillierAuthority

    authority = ThresholdPaillierAuthority(1024, range(N), 3, insecure_test_keys=True)
    with pytest.raises(ConfigError, match="threshold"):
        _protocol(authority=authority)  # threshold option 4, authority dealt with 3
    assert _protocol(authority=authority, threshold=3).key_authority() is authority


def test_combine_requests_fuzzed_only_raise_privfed_errors_and_never_store_a_result(updates) -> None:
    """Mutated combine requests (release=key-holders) against fresh key holders: privfed errors only, and a key
    holder stores a mean only for an unmodified request."""
    from contract.mutations import mutants

    protocol = _protocol(release="key-holders", dealer_keeps_shares=True)
    ids = tuple(range(N))

    def to_combine():
        server = protocol.server(1, ids, DIM)
        outgoing = server.start()
        clients = {c: protocol.client(c, 1, updates[c], {}) for c in ids}
        while outgoing.phase != "combine":
            for cid, payload in outgoing.messages.items():
                server.receive(cid, clients[cid].handle(payload))
            outgoing = server.advance()
        return clients, outgoing

    clients, outgoing = to_combine()
    valid = outgoing.messages[0]
    clients[T - 1].handle(valid)  # a holder outside the fuzz keeps the honest result to compare with
    honest_mean, _ = clients[T - 1].state[RESULTS_SLOT][1]
    for k, payload in enumerate(mutants([valid], 300, seed=13)):
        holder = clients[k % (T - 1)]
        holder.combined = False  # re-arm: each mutant meets a key holder waiting for its combine request
        holder.state.pop(RESULTS_SLOT, None)
        try:
            holder.handle(payload)
        except PrivfedError:
            assert RESULTS_SLOT not in holder.state
        else:
            mean, _ = holder.state[RESULTS_SLOT][1]  # accepted (e.g. the unmodified request): never a wrong mean
            assert np.array_equal(mean, honest_mean)


def test_key_holders_option_deals_to_the_federation_so_sampled_rounds_decrypt() -> None:
    federation = updates_for(8, DIM, seed=21)
    protocol, states = _protocol(threshold=3, key_holders=8), {}
    first = {c: federation[c] for c in (0, 1, 2, 3)}
    later = {c: federation[c] for c in (4, 5, 6, 7)}  # none of them was invited in round 1
    _check(run_round(protocol, 1, first, client_states=states), first)
    report = run_round(protocol, 2, later, client_states=states)
    _check(report, later)
    assert report.result.info["key_holders"] == 8
    # without key_holders the first round's clients are the only key holders: a disjoint round cannot decrypt
    protocol, states = _protocol(threshold=3), {}
    run_round(protocol, 1, first, client_states=states)
    assert run_round(protocol, 2, later, client_states=states).aborted == \
        "phase decrypt: 0 key holders remain, threshold 3"
    with pytest.raises(ConfigError):
        _protocol(key_holders=1)
