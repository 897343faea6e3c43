"""SecAgg / SecAgg+ behaviour: exact sums, dropouts at every phase, threshold aborts, client-side checks, bad
messages, the sparse graph, the distributed-DP hook and configuration validation (shared/checklists/secagg.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from protocols import registry
from protocols.base import AFTER_UPLOAD, BEFORE_UPLOAD
from protocols.errors import (ConfigError, DecryptionError, HeadroomError, MessageError, PrivfedError,
                              ProtocolAbort, StaleMessageError)
from protocols.secagg import SecAggProtocol
from protocols.secagg.messages import (KEYS, MASK_REQUEST, REVEAL, SHARE_REQUEST, SHARES, UNMASK_REQUEST,
                                       masked_spec)
from protocols.wire import Message, decode, encode
from privfed.runtime.local import run_round

from test_secagg_support import (SERVERS, CapturingSecAgg, Driver, capture_encodings, exact_mean, ring_sum,
                                 rewrite, server_request, updates)

MAXW = 10.0


def make(**options) -> CapturingSecAgg:
    return CapturingSecAgg(**{"max_weight": MAXW, "clip": 1.0, **options})


def run(protocol, ups, drops=None, tamper=None, overrides=None):
    SERVERS.clear()
    encodings: dict[int, np.ndarray] = {}
    wrap = capture_encodings(encodings)
    client_overrides = {c: wrap for c in ups}
    for c, extra in (overrides or {}).items():
        client_overrides[c] = (lambda m, e=extra: e(wrap(m)))
    report = run_round(protocol, 1, ups, drops=drops, tamper=tamper, client_overrides=client_overrides)
    return report, encodings


def check_exact(report, encodings, ups, protocol):
    """The decoded ring sum is exactly the sum of the survivors' encodings; the mean is within the bound."""
    result = report.result
    assert result is not None, report.aborted
    server = SERVERS[-1]
    bits = protocol.ring_bits
    expected = ring_sum(encodings, result.survivors, bits)
    assert np.array_equal(server.decoded_ring_sum.astype(np.uint64), expected)
    error = np.abs(result.mean - exact_mean(ups, result.survivors)).max()
    assert error <= result.error_bound
    return result


# -- correctness ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bits", [32, 16, 64, 40])
def test_exact_integer_sum_without_dropouts(bits):
    protocol = make(ring_bits=bits)
    ups = updates(6, 200, seed=bits)
    report, enc = run(protocol, ups)
    result = check_exact(report, enc, ups, protocol)
    assert result.survivors == tuple(range(6))
    assert result.info["ring_bits"] == bits and result.learned_by == "server"
    weight_error = result.info["sum_error_bound"] * MAXW
    assert abs(result.total_weight - sum(u.weight for u in ups.values())) <= weight_error


def test_exactly_representable_inputs_decode_exactly():
    """Dyadic inputs and weights: stochastic rounding has nothing to round, so the mean is exact."""
    protocol = make(max_weight=4.0)
    from protocols.base import ClientUpdate
    ups = {c: ClientUpdate((np.arange(64, dtype=np.float32) - 32) / 64 * (c + 1) / 4, float([1, 2, 4][c % 3]))
           for c in range(5)}
    report, _ = run(protocol, ups)
    assert np.array_equal(report.result.mean, exact_mean(ups, report.result.survivors))


def test_real_gru_parameter_vectors_within_bound():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    gru = torch.nn.GRU(8, 16, batch_first=True)
    head = torch.nn.Linear(16, 4)
    flat = torch.cat([p.detach().flatten() for p in (*gru.parameters(), *head.parameters())]).numpy()
    from protocols.base import ClientUpdate
    rng = np.random.default_rng(1)
    ups = {c: ClientUpdate((flat + rng.normal(0, 0.01, flat.size)).astype(np.float32), float(10 + c))
           for c in range(5)}
    protocol = make(max_weight=20.0, clip=1.0)
    report, enc = run(protocol, ups)
    plain = run_round(registry.create("plaintext", {"max_weight": 20.0, "clip": 1.0}), 1, ups).result
    check_exact(report, enc, ups, protocol)
    assert np.abs(report.result.mean - plain.mean).max() <= report.result.error_bound + 1e-6


# -- dropouts ------------------------------------------------------------------------------------------------------

PHASES = SecAggProtocol.phases


@pytest.mark.parametrize("point", [BEFORE_UPLOAD, AFTER_UPLOAD, *PHASES])
def test_random_dropouts_at_every_phase(point):
    n, t = 8, 5
    protocol = make(threshold=t)
    ups = updates(n, 100, seed=3)
    rng = np.random.default_rng(len(point))
    for d in range(0, n - t + 1):
        dropped = [int(c) for c in rng.choice(n, d, replace=False)]
        report, enc = run(protocol, ups, drops={c: point for c in dropped})
        result = check_exact(report, enc, ups, protocol)
        if protocol.resolve_drop_phase(point) == "unmask":
            assert result.survivors == tuple(range(n))  # they uploaded: their inputs are in the sum
            assert result.info["unmask_responders"] == n - d
        else:
            assert set(result.survivors) == set(range(n)) - set(dropped)


@pytest.mark.parametrize("point", [BEFORE_UPLOAD, AFTER_UPLOAD, *PHASES])
def test_one_dropout_too_many_aborts_at_every_phase(point):
    n, t = 7, 4
    protocol = make(threshold=t)
    report, _ = run(protocol, updates(n, 50), drops={c: point for c in range(n - t + 1)})
    assert report.result is None and "threshold" in report.aborted


def test_adversarial_dropouts_mixed_phases():
    """The worst case: n - t clients gone, spread over every phase, chosen as the smallest ids (which carry the
    '+' sign of most pairwise masks)."""
    n, t = 9, 5
    protocol = make(threshold=t)
    ups = updates(n, 80, seed=5)
    drops = {0: "advertise-keys", 1: "share-keys", 2: "masked-input", 3: "unmask"}
    report, enc = run(protocol, ups, drops=drops)
    result = check_exact(report, enc, ups, protocol)
    assert result.survivors == (3, 4, 5, 6, 7, 8)
    assert result.info["dropped_at"] == {"advertise-keys": [0], "share-keys": [1], "masked-input": [2],
                                         "unmask": [3]}


def test_unmask_with_exactly_t_answers_and_t_minus_1_aborts():
    n, t = 6, 4
    protocol = make(threshold=t)
    ups = updates(n, 40)
    ok, enc = run(protocol, ups, drops={0: "unmask", 1: "unmask"})
    check_exact(ok, enc, ups, protocol)
    bad, _ = run(protocol, ups, drops={0: "unmask", 1: "unmask", 2: "unmask"})
    assert bad.result is None and "threshold" in bad.aborted


# -- client-side checks --------------------------------------------------------------------------------------------

def _at_unmask(n=6, t=4, skip=None):
    protocol = make(threshold=t)
    drv = Driver(protocol, updates(n, 30))
    drv.run_to("unmask", skip_by_phase=skip)
    return drv


def _unmask_request(alive, dropped):
    return server_request("unmask-request", 1, {"alive": np.asarray(alive, dtype=np.int64),
                                                "dropped": np.asarray(dropped, dtype=np.int64)})


@pytest.mark.parametrize("alive,dropped,reason", [
    ([0, 1, 2, 3, 4], [4, 5], "both alive and dropped"),
    ([1, 2, 3, 4, 5], [0], "listed as dropped"),
    ([0, 1, 1, 2, 3, 4], [5], "listed twice"),
    ([0, 1, 2, 3], [4, 4, 5], "listed twice"),
    ([0, 1, 2], [3, 4, 5], "refusing to reveal"),
    ([0, 1, 2, 3], [4], "do not match"),
    ([0, 1, 2, 3, 4, 5, 9], [], "do not match"),
])
def test_client_refuses_inconsistent_unmask_requests(alive, dropped, reason):
    drv = _at_unmask()
    with pytest.raises(ProtocolAbort, match=reason):
        drv.clients[0].handle(_unmask_request(alive, dropped))


def test_client_answers_unmask_once_and_never_both_shares_of_a_peer():
    drv = _at_unmask()
    client = drv.clients[0]
    reply = client.handle(_unmask_request([0, 1, 2, 3, 4], [5]))
    msg = decode(reply, REVEAL, protocol="secagg", round_id=1, sender=0)
    assert set(map(int, msg["b_ids"])).isdisjoint(map(int, msg["s_ids"]))
    with pytest.raises(PrivfedError):  # a second request (e.g. claiming 4 dropped after all) is refused
        client.handle(_unmask_request([0, 1, 2, 3, 5], [4]))


def test_client_aborts_when_too_few_peers_at_share_and_mask_phases():
    protocol = make(threshold=4)
    drv = Driver(protocol, updates(5, 10))
    share_request = drv.step()
    peers_msg = decode(share_request.messages[0], SHARE_REQUEST, protocol="secagg", round_id=1)
    few = encode(Message("secagg", "share-request", 1, -1, {"peers": peers_msg["peers"][:2],
                                                            "c_pks": peers_msg["c_pks"][:2],
                                                            "s_pks": peers_msg["s_pks"][:2]}))
    with pytest.raises(ProtocolAbort, match="threshold"):
        drv.clients[0].handle(few)
    drv2 = Driver(protocol, updates(5, 10))
    mask_request = drv2.run_to("masked-input")
    fewer = rewrite(mask_request.messages[1], MASK_REQUEST, 1,
                    senders=np.asarray([0, 2], dtype=np.int64),
                    ciphertexts=decode(mask_request.messages[1], MASK_REQUEST, protocol="secagg",
                                       round_id=1)["ciphertexts"][:2])
    with pytest.raises(ProtocolAbort, match="threshold"):
        drv2.clients[1].handle(fewer)


def test_duplicate_public_keys_in_share_request_abort():
    drv = Driver(make(threshold=3), updates(4, 10))
    share_request = drv.step()
    spec = SHARE_REQUEST
    msg = decode(share_request.messages[0], spec, protocol="secagg", round_id=1)
    c_pks = list(msg["c_pks"])
    c_pks[1] = c_pks[0]
    with pytest.raises(ProtocolAbort, match="duplicate"):
        drv.clients[0].handle(rewrite(share_request.messages[0], spec, 1, c_pks=c_pks))


# -- dropped clients stay hidden; late inputs -------------------------------------------------------------------

def test_late_masked_input_is_rejected_and_its_self_mask_never_revealed():
    protocol = make(threshold=4)
    ups = updates(6, 30)
    drv = Driver(protocol, ups)
    drv.run_to("masked-input")
    request_for_5 = drv.outgoing.messages[5]
    drv.step(skip={5})  # client 5 is declared dropped before upload
    late = drv.clients[5].handle(request_for_5)  # ... but computes its masked input anyway
    with pytest.raises(MessageError):
        drv.server.receive(5, late)
    for cid, payload in drv.outgoing.messages.items():
        msg = decode(payload, UNMASK_REQUEST, protocol="secagg", round_id=1)
        assert 5 not in set(map(int, msg["alive"])) and 5 in set(map(int, msg["dropped"]))
    result = drv.step()
    reveal_spec = REVEAL
    for cid, reply in drv.replies["unmask"].items():
        msg = decode(reply, reveal_spec, protocol="secagg", round_id=1)
        assert 5 not in set(map(int, msg["b_ids"]))  # nobody reveals client 5's self-mask share
    assert 5 not in result.survivors
    assert np.abs(result.mean - exact_mean(ups, result.survivors)).max() <= result.error_bound


# -- bad messages --------------------------------------------------------------------------------------------------

def test_duplicate_public_key_excludes_both_clients_and_round_finishes():
    protocol = make(threshold=3)
    ups = updates(6, 20)
    seen = {}

    def tamper(phase, cid, reply):
        if phase == "advertise-keys":
            seen[cid] = reply
            if cid == 4:  # client 4 replays client 1's keys under its own name
                msg = decode(seen[1], KEYS, protocol="secagg", round_id=1)
                return encode(Message("secagg", "keys", 1, 4, dict(msg.fields)))
        return reply
    report, enc = run(protocol, ups, tamper=tamper)
    assert 4 in report.rejected and "already advertised" in report.rejected[4]["reason"]
    result = check_exact(report, enc, ups, protocol)
    assert set(result.survivors) == {0, 2, 3, 5}


def test_wrong_length_masked_vector_is_rejected_and_sender_treated_as_dropped():
    protocol = make(threshold=3)
    ups = updates(5, 40)

    def tamper(phase, cid, reply):
        if phase == "masked-input" and cid == 2:
            msg = decode(reply, masked_spec(40, 32), protocol="secagg", round_id=1)
            return encode(Message("secagg", "masked", 1, 2, {"y": msg["y"][:-1]}))
        return reply
    report, enc = run(protocol, ups, tamper=tamper)
    assert 2 in report.rejected and "length" in report.rejected[2]["reason"]
    result = check_exact(report, enc, ups, protocol)
    assert 2 not in result.survivors and len(result.survivors) == 4


def test_replayed_and_other_round_messages_are_rejected():
    protocol = make(threshold=3)
    ups = updates(4, 10)
    first = Driver(protocol, ups, round_id=1)
    first.step()
    second = Driver(protocol, ups, round_id=2)
    with pytest.raises(StaleMessageError):
        second.server.receive(0, first.replies["advertise-keys"][0])
    with pytest.raises(StaleMessageError):
        second.clients[0].handle(first.outgoing.messages[0])
    # a replay within the round
    reply = first.clients[0].handle(first.outgoing.messages[0])
    first.server.receive(0, reply)
    with pytest.raises(MessageError, match="replay"):
        first.server.receive(0, reply)
    # a reply from a client that was never asked in this phase
    with pytest.raises(MessageError):
        first.server.receive(99, reply)


def test_shares_addressed_to_the_wrong_recipients_are_rejected():
    protocol = make(threshold=3)
    ups = updates(5, 10)

    def tamper(phase, cid, reply):
        if phase == "share-keys" and cid == 1:
            msg = decode(reply, SHARES, protocol="secagg", round_id=1)
            return rewrite(reply, SHARES, 1, recipients=msg["recipients"][::-1].copy())
        return reply
    report, enc = run(protocol, ups, tamper=tamper)
    assert 1 in report.rejected
    assert 1 not in check_exact(report, enc, ups, protocol).survivors


def test_misrouted_or_tampered_share_ciphertext_fails_authentication():
    protocol = make(threshold=3)
    drv = Driver(protocol, updates(5, 10))
    request = drv.run_to("masked-input")
    msg = decode(request.messages[0], MASK_REQUEST, protocol="secagg", round_id=1)
    cts = list(msg["ciphertexts"])
    swapped = rewrite(request.messages[0], MASK_REQUEST, 1, ciphertexts=[cts[1], cts[0], *cts[2:]])
    with pytest.raises(DecryptionError):
        drv.clients[0].handle(swapped)
    drv2 = Driver(protocol, updates(5, 10))
    request = drv2.run_to("masked-input")
    msg = decode(request.messages[3], MASK_REQUEST, protocol="secagg", round_id=1)
    cts = list(msg["ciphertexts"])
    cts[0] = cts[0][:20] + bytes([cts[0][20] ^ 1]) + cts[0][21:]
    with pytest.raises(DecryptionError) as info:
        drv2.clients[3].handle(rewrite(request.messages[3], MASK_REQUEST, 1, ciphertexts=cts))
    assert str(info.value) == "share ciphertext failed authentication"  # opaque


def test_refusing_client_becomes_a_dropout_and_the_round_finishes():
    """A client whose share ciphertext was tampered with refuses; the server recovers its masking key."""
    protocol = make(threshold=3)
    ups = updates(5, 30)

    def tamper(phase, cid, reply):
        if phase == "share-keys" and cid == 0:
            msg = decode(reply, SHARES, protocol="secagg", round_id=1)
            cts = list(msg["ciphertexts"])
            cts[0] = cts[0][:-1] + bytes([cts[0][-1] ^ 1])  # the share for client 1
            return rewrite(reply, SHARES, 1, ciphertexts=cts)
        return reply
    report, enc = run(protocol, ups, tamper=tamper)
    assert 1 in report.dropped and "authentication" in report.dropped[1]["reason"]
    assert check_exact(report, enc, ups, protocol).survivors == (0, 2, 3, 4)


# -- SecAgg+ -------------------------------------------------------------------------------------------------------

def test_sparse_graph_sum_exact_and_messages_stay_in_the_neighbourhood():
    protocol = make(graph="harary", neighbours=6, threshold=4)
    ups = updates(20, 50, seed=7)
    report, enc = run(protocol, ups, drops={3: "masked-input", 11: "share-keys", 17: "unmask"})
    result = check_exact(report, enc, ups, protocol)
    server = SERVERS[-1]
    graph = server.graph
    assert graph.kind == "harary" and result.info["graph"] == "harary" and result.info["neighbours"] == 6
    for node, nbrs in graph.neighbours.items():
        assert len(nbrs) == 6 and node not in nbrs
        assert all(node in graph.neighbours[v] for v in nbrs)  # symmetric
    assert set(result.survivors) == set(range(20)) - {3, 11}


def test_sparse_graph_aborts_when_a_neighbourhood_falls_below_t():
    protocol = make(graph="harary", neighbours=4, threshold=3)
    ups = updates(12, 10)
    SERVERS.clear()
    probe = Driver(protocol, ups)
    victim = 0
    nbrs = sorted(probe.server.graph.neighbours[victim])
    # the graph is random per round, so play the adversary inside one round: drop 2 of the victim's 4 neighbours
    # at masked-input (victim keeps 3 of 5 in its closed neighbourhood: fine) ...
    probe.run_to("masked-input")
    probe.step(skip=set(nbrs[:2]))
    # ... then a third neighbour does not answer unmask: the victim's self-mask now has < t share holders
    skip = {nbrs[2]}
    with pytest.raises(ProtocolAbort, match="threshold"):
        probe.step(skip=skip)


def test_auto_neighbours_is_logarithmic_and_threshold_inside_neighbourhood():
    protocol = SecAggProtocol(graph="harary")
    plans = {n: protocol.plan(n) for n in (10, 100, 1000)}
    assert plans[10].graph == "complete"  # too small for a sparse graph to meet the bounds
    assert plans[100].graph == "harary" and plans[1000].graph == "harary"
    assert plans[1000].k < 4 * math.log2(1000) * 2
    for plan in plans.values():
        assert 1 < plan.threshold <= plan.k + (plan.graph == "complete")


# -- distributed-DP hook -------------------------------------------------------------------------------------------

class FixedNoise:
    """A stand-in sampler: +-ceil(real_bound * scale) alternating (tests exactness of the hook, not DP)."""

    def __init__(self, real_bound: float, overshoot: int = 0) -> None:
        self.real_bound, self.overshoot = real_bound, overshoot

    def sample(self, dim, scale, rng):
        magnitude = math.ceil(self.real_bound * scale) + self.overshoot
        return np.where(np.arange(dim) % 2 == 0, magnitude, -magnitude).astype(np.int64)


def test_client_noise_added_to_weighted_coordinates_only_and_reported():
    from protocols.encoding import weighted_vector
    noise = FixedNoise(0.01)
    protocol = make(threshold=3, client_noise=noise)
    ups = updates(5, 21)
    report, enc = run(protocol, ups, drops={4: "masked-input"})
    result = report.result
    server = SERVERS[-1]
    fp = server.plan.fixed_point
    assert fp.extra_per_client == math.ceil(0.01 * fp.scale)
    assert result.info["noise_survivors"] == 4 and result.info["scale"] == fp.scale
    assert np.array_equal(server.decoded_ring_sum.astype(np.uint64), ring_sum(enc, result.survivors, 32))
    expected_noise = np.append(noise.sample(21, fp.scale, None), 0)  # nothing on the weight slot
    for c, ring in enc.items():
        signed = fp.from_ring(ring, 1)
        ideal = weighted_vector(ups[c].vector, ups[c].weight, MAXW) * fp.scale
        assert np.all(np.abs(signed - expected_noise - ideal) < 1)
    # decoded weight: noise-free up to rounding
    assert abs(result.total_weight - sum(ups[c].weight for c in result.survivors)) <= 4 / fp.scale * MAXW


def test_client_noise_beyond_its_bound_is_refused():
    protocol = make(threshold=3, client_noise=FixedNoise(0.01, overshoot=1))
    report, _ = run(protocol, updates(4, 10), drops={})
    assert report.result is None or len(report.result.survivors) < 4
    assert all("bound" in d["reason"] for d in report.dropped.values())


# -- configuration -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("options", [
    {"threshold": 1}, {"threshold": 0.0}, {"threshold": 1.5}, {"threshold": True}, {"threshold": "2"},
    {"ring_bits": 7}, {"ring_bits": 65}, {"ring_bits": 32.0}, {"graph": "star"}, {"neighbours": 5, "graph": "harary"},
    {"neighbours": 4}, {"dropout_fraction": 1.0}, {"dropout_fraction": 0.6, "corruption_fraction": 0.5},
    {"client_noise": object()}, {"clip": 0.0}, {"max_weight": float("inf")},
])
def test_bad_options_raise_config_error(options):
    with pytest.raises(ConfigError):
        SecAggProtocol(**options)


def test_threshold_validated_against_n_at_server():
    with pytest.raises(ConfigError, match="1 < t <= n"):
        SecAggProtocol(threshold=6).server(1, range(5), 10)
    with pytest.raises(ConfigError, match="neighbours"):
        SecAggProtocol(graph="harary", neighbours=4, threshold=5).server(1, range(20), 10)
    with pytest.raises(ConfigError):
        SecAggProtocol().server(1, [0], 10)
    with pytest.raises(ConfigError):
        SecAggProtocol().server(1, [0, -3, 4], 10)


def test_default_threshold_is_two_thirds_and_fraction_is_relative():
    assert SecAggProtocol().plan(10).threshold == 7
    assert SecAggProtocol(threshold=0.5).plan(10).threshold == 5
    assert SecAggProtocol(threshold=0.5, graph="harary", neighbours=8).plan(30).threshold == 4


def test_registry_and_unknown_option():
    protocol = registry.create("secagg", {"max_weight": 5.0, "clip": 2.0, "threshold": 0.6})
    assert isinstance(protocol, SecAggProtocol)
    with pytest.raises(ConfigError):
        registry.create("secagg", {"nonsense": 1})


def test_headroom_violation_raises_before_any_message():
    with pytest.raises(HeadroomError):
        SecAggProtocol(ring_bits=8, clip=1.0).server(1, range(100), 10)


def test_upload_within_1_1x_float32_at_100k():
    protocol = make()
    report = run_round(protocol, 1, updates(10, 100_000), transcript=False)
    per_client = report.summary()["upload_bytes_per_client"]
    assert per_client <= 1.1 * 4 * 100_000


# -- integrity of reconstruction -------------------------------------------------------------------------------------

def _corrupt_reveal(field_ids: str, field_shares: str):
    def tamper(phase, cid, reply):
        if phase == "unmask" and cid == 0:  # the lowest x: its share is always in the interpolation basis
            msg = decode(reply, REVEAL, protocol="secagg", round_id=1)
            shares = list(msg[field_shares])
            raw = bytearray(shares[-1])
            raw[-1] ^= 1
            shares[-1] = bytes(raw)
            return rewrite(reply, REVEAL, 1, **{field_shares: shares})
        return reply
    return tamper


def test_corrupted_self_mask_share_is_detected_never_a_wrong_sum():
    report, _ = run(make(threshold=3), updates(5, 20), tamper=_corrupt_reveal("b_ids", "b_shares"))
    assert report.result is None and "commitment" in report.aborted


def test_corrupted_masking_key_share_is_detected_never_a_wrong_sum():
    report, _ = run(make(threshold=3), updates(5, 20), drops={4: "masked-input"},
                    tamper=_corrupt_reveal("s_ids", "s_shares"))
    assert report.result is None and ("public key" in report.aborted or "corrupt" in report.aborted)


def test_sparse_and_huge_client_ids():
    """Shamir points are id + 1, so any id in 0 .. 2^32 - 2 works, contiguous or not."""
    ids = [3, 17, 1_000_000, 2 ** 32 - 3]
    protocol = make(threshold=3)
    ups = updates(4, 50, ids=ids)
    report, enc = run(protocol, ups, drops={17: "masked-input"})
    assert check_exact(report, enc, ups, protocol).survivors == (3, 1_000_000, 2 ** 32 - 3)


def test_describe_is_public_and_says_no_active_checks():
    info = SecAggProtocol(graph="harary").describe()
    assert info["protocol"] == "secagg" and info["active_adversary_checks"] is False
    assert "server" in info["hides"]


@pytest.mark.parametrize("bits", [32, 40])
def test_masked_upload_is_written_in_place_and_is_the_encoded_message(bits):
    """The masked vector is quantised and masked straight into the reply (a read-only view, no copy into the
    message), and that reply is exactly the message ``encode`` would have made of the same words."""
    protocol = make(ring_bits=bits)
    ups = updates(4, 300, seed=bits)
    replies: dict[int, object] = {}

    def keep(machine):
        handle = machine.handle

        def recording(payload):
            reply = handle(payload)
            if machine._stage == "unmask":  # the reply just made was the masked upload
                replies[machine.client_id] = reply
            return reply
        machine.handle = recording
        return machine
    report, encodings = run(protocol, ups, overrides={c: keep for c in ups})
    check_exact(report, encodings, ups, protocol)
    spec = masked_spec(300, bits)
    for cid, reply in replies.items():
        assert isinstance(reply, memoryview) and reply.readonly
        y = decode(reply, spec, protocol="secagg", round_id=1, sender=cid)["y"]
        assert bytes(reply) == encode(Message("secagg", spec.kind, 1, cid, {"y": np.array(y)}))
        assert not np.array_equal(y, encodings[cid])  # masked: not the encoding itself
    assert sorted(replies) == sorted(ups)
