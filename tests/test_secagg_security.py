"""What the server sees under SecAgg: uniform masked inputs, exact mask cancellation, collusion below and at the
threshold, freshness across rounds, domain-separated keys, exact ring masks, headroom and unbiased rounding.

Statistical tests use OS randomness (as the protocol does), with p-value cut-offs of 1e-6: a false alarm is a
one-in-a-million event per assertion.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from protocols import shamir
from protocols.base import ClientUpdate
from protocols.csprng import CSPRNG
from protocols.encoding import FixedPoint
from protocols.errors import HeadroomError
from protocols.secagg import SecAggProtocol, keys, masking
from protocols.secagg.messages import KEYS, REVEAL, masked_spec
from protocols.wire import decode

from test_secagg_support import Driver, updates

P_MIN = 1e-6


def _y(drv: Driver, cid: int, dim: int, bits: int = 32) -> np.ndarray:
    return decode(drv.replies["masked-input"][cid], masked_spec(dim, bits), protocol="secagg",
                  round_id=drv.round_id)["y"]


def _keep(store: dict, cid: int, ring: np.ndarray) -> np.ndarray:
    store[cid] = ring.copy()  # the client masks the returned array in place
    return ring


def _uniform_ok(values: np.ndarray, bits: int = 32) -> None:
    values = values.astype(np.uint64)
    ks = stats.kstest(values.astype(np.float64) / float(1 << bits), "uniform")
    assert ks.pvalue > P_MIN
    for shift in (0, bits - 8):  # low byte and top byte: chi-square over 256 cells
        counts = np.bincount(((values >> np.uint64(shift)) & np.uint64(255)).astype(np.int64), minlength=256)
        assert stats.chisquare(counts).pvalue > P_MIN


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_masked_input_is_uniform_whatever_the_input(value):
    dim = 60_000
    ups = {c: ClientUpdate(np.full(dim, value, dtype=np.float32), 10.0) for c in range(3)}
    drv = Driver(SecAggProtocol(max_weight=10.0, clip=1.0, threshold=2), ups)
    while not hasattr(drv.outgoing, "mean"):
        drv.step()
    _uniform_ok(_y(drv, 0, dim))


def test_masks_of_honest_pairs_cancel_exactly():
    """sum_u (y_u - encode(x_u) - PRG(b_u)) == 0 in Z_R: the pairwise masks alone add up to zero."""
    dim, n = 500, 5
    drv = Driver(SecAggProtocol(max_weight=10.0, threshold=3), updates(n, dim))
    encodings = {}
    for c, m in drv.clients.items():
        original = m._encode
        m._encode = lambda plan, out, o=original, c=c: _keep(encodings, c, o(plan, out))
    while not hasattr(drv.outgoing, "mean"):
        drv.step()
    total = np.zeros(dim + 1, dtype=np.uint32)
    for c, m in drv.clients.items():
        total += _y(drv, c, dim)
        total -= encodings[c].astype(np.uint32)
        masking.sub_mask(total, keys.self_mask_key(m._seed, drv.server.salt, 1, c), 32)
    assert not total.any()


def test_server_with_t_minus_1_colluders_cannot_unmask_an_honest_input_but_t_can():
    n, t, dim, victim = 5, 3, 20_000, 0
    ups = updates(n, dim, seed=11)
    drv = Driver(SecAggProtocol(max_weight=10.0, threshold=t), ups)
    drv.run_to("masked-input")
    colluders = [1, 2]
    private = {c: drv.clients[c]._s_key for c in (*colluders, 3)}  # the colluders know their own keys
    enc = {}
    for c, m in drv.clients.items():
        original = m._encode
        m._encode = lambda plan, out, o=original, c=c: _keep(enc, c, o(plan, out))
    drv.step()
    held = {c: dict(drv.clients[c]._held) for c in (*colluders, 3)}  # every share the colluders hold
    result = drv.step()
    assert result.survivors == tuple(range(n))
    salt, server = drv.server.salt, drv.server
    s_pk = {c: decode(drv.replies["advertise-keys"][c], KEYS, protocol="secagg", round_id=1)["s_pk"]
            for c in range(n)}
    # the server legitimately learns the victim's self-mask seed b from the survivors' reveals
    b_shares = []
    for c, reply in drv.replies["unmask"].items():
        msg = decode(reply, REVEAL, protocol="secagg", round_id=1)
        b_shares.append(shamir.Share.from_bytes(msg["b_shares"][list(map(int, msg["b_ids"])).index(victim)]))
    seed = shamir.reconstruct_secret(b_shares, 32)
    y = _y(drv, victim, dim)
    partial = y.copy()
    masking.sub_mask(partial, keys.self_mask_key(seed, salt, 1, victim), 32)
    # t - 1 colluders: the victim's masking key stays out of reach ...
    with pytest.raises(shamir.InsufficientSharesError):
        shamir.reconstruct([held[c][victim][1] for c in colluders])
    # ... and removing every mask they CAN compute leaves a uniform vector, not the input
    for c in colluders:
        key = keys.mask_key(keys.agree(private[c], s_pk[victim]), salt, 1, victim, c)
        (masking.sub_mask if victim < c else masking.add_mask)(partial, key, 32)
    assert not np.array_equal(partial, enc[victim].astype(np.uint32))
    _uniform_ok(partial[:-1])
    # t colluders: reconstruct the victim's masking key and recover its input exactly
    s_key = keys.private_from_bytes(shamir.reconstruct_secret([held[c][victim][1] for c in (*colluders, 3)], 32))
    assert keys.public_bytes(s_key) == s_pk[victim]
    full = y.copy()
    masking.sub_mask(full, keys.self_mask_key(seed, salt, 1, victim), 32)
    for v in range(1, n):
        key = keys.mask_key(keys.agree(s_key, s_pk[v]), salt, 1, victim, v)
        (masking.sub_mask if victim < v else masking.add_mask)(full, key, 32)
    assert np.array_equal(full, enc[victim].astype(np.uint32))
    assert server.plan.threshold == t


def test_same_clients_and_inputs_get_fresh_masks_in_every_round():
    dim = 2000
    ups = updates(3, dim)
    protocol = SecAggProtocol(max_weight=10.0, threshold=2)
    ys = []
    for round_id in (1, 2, 2):  # two rounds, and the same round id twice (a new session)
        drv = Driver(protocol, ups, round_id=round_id)
        while not hasattr(drv.outgoing, "mean"):
            drv.step()
        ys.append(_y(drv, 0, dim))
        keys_seen = drv.replies["advertise-keys"][0]
    assert not np.array_equal(ys[0], ys[1]) and not np.array_equal(ys[1], ys[2])
    assert np.mean(ys[0] == ys[1]) < 0.01
    del keys_seen


def test_key_derivation_is_domain_separated():
    secret = b"\x07" * 32
    salt1, salt2 = keys.round_salt(1, b"a" * 16), keys.round_salt(2, b"a" * 16)
    salt3 = keys.round_salt(1, b"b" * 16)
    derived = {
        keys.share_key(secret, salt1, 1, 3, 4), keys.share_key(secret, salt1, 1, 4, 3),
        keys.mask_key(secret, salt1, 1, 3, 4), keys.mask_key(secret, salt2, 2, 3, 4),
        keys.mask_key(secret, salt3, 1, 3, 4), keys.self_mask_key(secret, salt1, 1, 3),
        keys.commit_self_mask(secret, salt1, 1, 3), keys.mask_key(secret, salt1, 1, 3, 5),
    }
    assert len(derived) == 8
    assert keys.mask_key(secret, salt1, 1, 3, 4) == keys.mask_key(secret, salt1, 1, 4, 3)  # symmetric
    assert len(salt1) == 32 and salt1 != salt2 != salt3


@pytest.mark.parametrize("bits", [8, 13, 16])
def test_masks_are_exactly_uniform_and_reach_r_minus_1(bits):
    words = masking.keystream_words(CSPRNG.from_os().bytes(32), 1 << 21, bits)
    values = masking.reduce(words.copy(), bits)
    assert int(values.max()) == (1 << bits) - 1 and int(values.min()) == 0
    counts = np.bincount(values.astype(np.int64), minlength=1 << bits)
    assert counts.size == 1 << bits
    assert stats.chisquare(counts).pvalue > P_MIN


def test_masks_64_bit_ring():
    words = masking.keystream_words(CSPRNG.from_os().bytes(32), 100_000, 64)
    assert words.dtype == np.uint64
    _uniform_ok(words, 64)


def test_all_max_and_all_min_inputs_decode_exactly_at_the_bound_and_one_more_raises():
    n, dim = 4, 16
    for value in (1.0, -1.0):
        ups = {c: ClientUpdate(np.full(dim, value, dtype=np.float32), 8.0) for c in range(n)}
        drv = Driver(SecAggProtocol(max_weight=8.0, clip=1.0, ring_bits=16, threshold=2), ups)
        while not hasattr(drv.outgoing, "mean"):
            drv.step()
        result = drv.outgoing
        assert np.array_equal(result.mean, np.full(dim, value)) and result.total_weight == n * 8.0
        fp = drv.server.plan.fixed_point
        with pytest.raises(HeadroomError):
            fp.from_ring(drv.server.decoded_ring_sum, n + 1)
    # the scale was the finest that fits: one notch finer overflows for these n clients
    fp = SecAggProtocol(ring_bits=16).plan(n).fixed_point
    with pytest.raises(HeadroomError):
        FixedPoint(fp.clip, fp.frac_bits + 1, 16, n)


def test_stochastic_rounding_on_the_client_path_is_unbiased():
    x, trials = 0.3 + 1e-7, 200_000
    fp = SecAggProtocol(ring_bits=16).plan(10).fixed_point
    q = fp.quantize(np.full(trials, x), CSPRNG.from_os())
    error = q / fp.scale - x
    assert abs(error.mean()) < 6 * 0.5 / fp.scale / np.sqrt(trials)
    assert set(np.unique(q)) <= {np.floor(x * fp.scale), np.floor(x * fp.scale) + 1}
