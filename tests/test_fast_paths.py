"""The blocked, threaded fast paths produce exactly what the one-key-at-a-time reference produces.

SecAgg's :func:`masking.apply_masks` (cache blocks, one counter-offset AES-CTR context per thread range) against
:func:`masking.add_mask` / :func:`masking.sub_mask`; the blocked quantizer against the textbook formula on the same
keystream; :meth:`CSPRNG.fill` against :meth:`CSPRNG.bytes`. Equality is bit for bit, so every statistical property
proven of the reference (uniform masks, unbiased rounding) carries over.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.csprng import CSPRNG
from protocols.encoding import FixedPoint
from protocols.errors import ConfigError, MessageError
from protocols.secagg import masking


def _reference(acc: np.ndarray, add: list[bytes], sub: list[bytes], bits: int) -> np.ndarray:
    out = acc.copy()
    for key in add:
        masking.add_mask(out, key, bits)
    for key in sub:
        masking.sub_mask(out, key, bits)
    return masking.reduce(out, bits)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 5000), bits=st.sampled_from([8, 17, 32, 33, 64]), n_add=st.integers(0, 4),
       n_sub=st.integers(0, 4), workers=st.integers(1, 5), block=st.sampled_from([16, 48, 256, 4096, 1 << 16]))
def test_apply_masks_equals_one_key_at_a_time(n: int, bits: int, n_add: int, n_sub: int, workers: int,
                                              block: int) -> None:
    dtype = masking.ring_dtype(bits)
    acc = np.frombuffer(os.urandom(n * dtype.itemsize), dtype=dtype).copy()
    add = [os.urandom(32) for _ in range(n_add)]
    sub = [os.urandom(32) for _ in range(n_sub)]
    expected = _reference(acc, add, sub, bits)
    saved = masking._PARALLEL_MIN_BYTES
    masking._PARALLEL_MIN_BYTES = 0  # split into ``workers`` ranges even at these small sizes
    try:
        got = masking.apply_masks(acc, add, sub, bits, workers=workers, block_bytes=block)
    finally:
        masking._PARALLEL_MIN_BYTES = saved
    assert got is acc
    assert np.array_equal(acc, expected)


def test_apply_masks_threaded_at_model_size_matches_and_cancels() -> None:
    n, bits = 300_001, 32
    keys = [os.urandom(32) for _ in range(3)]
    acc = np.zeros(n, dtype=np.uint32)
    masking.apply_masks(acc, keys, [], bits, workers=2)  # above the threading threshold
    assert np.array_equal(acc, _reference(np.zeros(n, dtype=np.uint32), keys, [], bits))
    masking.apply_masks(acc, [], keys, bits, workers=3)  # different cut points, same keystream
    assert not acc.any()


def test_apply_masks_refuses_wrong_buffers() -> None:
    key = [os.urandom(32)]
    with pytest.raises(ConfigError):
        masking.apply_masks(np.zeros(10, dtype=np.uint64), key, [], 32)  # wrong word type for the ring
    with pytest.raises(ConfigError):
        masking.apply_masks(np.zeros(20, dtype=np.uint32)[::2], key, [], 32)  # not contiguous
    with pytest.raises(ConfigError):
        masking.apply_masks(np.zeros(10, dtype=np.uint32), key, [], 32, block_bytes=24)
    with pytest.raises(ConfigError):
        masking.apply_masks(np.zeros(10, dtype=np.uint32), key, [], 32, workers=0)


def _textbook_quantize(fp: FixedPoint, x: np.ndarray, rng: CSPRNG) -> np.ndarray:
    y = np.clip(x, -fp.clip, fp.clip) * fp.scale
    low = np.floor(y)
    return (low + (rng.uint32(y.size) < (y - low) * 2.0**32)).astype(np.int64)


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.floats(-3, 3, allow_nan=False), min_size=0, max_size=300),
       bits=st.sampled_from([16, 32, 48, 64]), block=st.sampled_from([1, 7, 64, 1 << 15]))
def test_blocked_quantizer_equals_the_textbook_formula(values: list[float], bits: int, block: int) -> None:
    import protocols.encoding as encoding
    fp = FixedPoint.for_bits(bits, max_clients=3, clip=1.5)
    x = np.array(values, dtype=np.float64)
    key = os.urandom(32)
    saved = encoding._QUANTIZE_BLOCK
    encoding._QUANTIZE_BLOCK = block
    try:
        q = fp.quantize(x, CSPRNG.from_key(key))
        ring = fp.quantize_ring(x, CSPRNG.from_key(key), np.uint32 if bits <= 32 else np.uint64)
    finally:
        encoding._QUANTIZE_BLOCK = saved
    expected = _textbook_quantize(fp, x, CSPRNG.from_key(key))
    assert np.array_equal(q, expected)
    assert np.array_equal(ring.astype(np.uint64), fp.to_ring(expected))


def test_quantizer_refuses_non_finite_and_narrow_words() -> None:
    fp = FixedPoint.for_bits(48, max_clients=3, clip=1.0)
    with pytest.raises(MessageError):
        fp.quantize(np.array([0.0, np.nan]), CSPRNG.from_os())
    with pytest.raises(ConfigError):
        fp.quantize_ring(np.zeros(3), CSPRNG.from_os(), np.uint32)  # 32-bit words cannot hold a 48-bit ring
    with pytest.raises(ConfigError):
        fp.quantize_ring(np.zeros(3), CSPRNG.from_os(), np.int64)


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(0, 100), min_size=1, max_size=5))
def test_csprng_fill_continues_the_same_stream_as_bytes(sizes: list[int]) -> None:
    key = os.urandom(32)
    a, b = CSPRNG.from_key(key), CSPRNG.from_key(key)
    for size in sizes:
        out = np.empty(size + 2, dtype=np.uint64)
        words = a.fill(out, size)
        assert words.tobytes() == b.bytes(8 * size)
    with pytest.raises(ConfigError):
        a.fill(np.empty(4, dtype=np.uint64))  # no room for the AES block of slack


def test_parallel_quantizer_ranges_round_unbiased_with_independent_randomness(monkeypatch) -> None:
    import protocols.encoding as encoding
    monkeypatch.setattr(encoding, "usable_cores", lambda: 2)
    monkeypatch.setattr(encoding, "_QUANTIZE_BLOCK", 1 << 10)
    monkeypatch.setattr(encoding, "_PARALLEL_MIN_ELEMENTS", 1 << 12)
    fp = FixedPoint(clip=1.0, frac_bits=4, total_bits=32, max_clients=1)
    value = 0.3 / 16 + 1 / 32 * 0.37  # between two grid points
    x = np.full(1 << 16, value)
    q = fp.quantize(x, CSPRNG.from_os())
    low = int(np.floor(value * 16))
    assert set(np.unique(q)) <= {low, low + 1}
    half = x.size // 2
    assert not np.array_equal(q[:half], q[half:])  # the second range does not replay the first's randomness
    for part in (q[:half], q[half:]):  # each range is unbiased on its own (6 sigma)
        assert abs(fp.dequantize(part).mean() - value) < 6 * (1 / 32) / np.sqrt(part.size)
    with pytest.raises(MessageError):
        fp.quantize(np.concatenate([x, [np.inf]]), CSPRNG.from_os())  # a bad entry in the last range still raises


@settings(max_examples=100, deadline=None)
@given(total=st.integers(0, 10_000), parts=st.integers(1, 9), align=st.sampled_from([1, 2, 4, 1024]))
def test_split_covers_the_range_with_aligned_cuts(total: int, parts: int, align: int) -> None:
    from protocols.parallel import split
    ranges = split(total, parts, align)
    assert len(ranges) <= parts
    assert [i for lo, hi in ranges for i in range(lo, hi)] == list(range(total))
    assert all(lo % align == 0 for lo, _ in ranges)


def test_run_all_keeps_order_and_reraises_after_every_slice() -> None:
    from protocols.parallel import resolve_workers, run_all
    done = []

    def job(i: int) -> int:
        done.append(i)
        if i == 1:
            raise MessageError("slice 1 is bad")
        return i * i

    assert run_all(lambda i: i * i, [(i,) for i in range(5)]) == [0, 1, 4, 9, 16]
    with pytest.raises(MessageError, match="slice 1"):
        run_all(job, [(i,) for i in range(4)])
    assert sorted(done) == [0, 1, 2, 3]
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ConfigError):
            resolve_workers(bad)
