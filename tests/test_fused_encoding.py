"""The one-pass weighted encoder equals the two-step reference bit for bit, and the SecAgg client uses it.

:meth:`FixedPoint.quantize_weighted_ring` replaces ``np.clip`` + :func:`weighted_vector` + :meth:`quantize_ring`
on the client's hot path (no float64 copy of the update). Equality with the reference on the same keystream — for
inputs beyond the clip, clips that float32 cannot represent, subnormals, tiny weights, every ring width and forced
thread splits — means every property proven of the reference (unbiased rounding, exact headroom) carries over.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import protocols.encoding as encoding
from protocols.csprng import CSPRNG
from protocols.encoding import FixedPoint, split_weighted, weighted_vector
from protocols.errors import ConfigError, HeadroomError, MessageError

_EDGE = [0.0, -0.0, 1e-45, -1e-45, 1e-39, 0.1, -0.1, 0.99999994, 1.0, -1.0, 1.0000001, 3.0, -7.5, 1e30, -1e30]


def _reference(fp: FixedPoint, x: np.ndarray, weight: float, max_weight: float, key: bytes, dtype,
               input_clip: float | None) -> np.ndarray:
    clipped = x if input_clip is None else np.clip(x, -x.dtype.type(input_clip), x.dtype.type(input_clip))
    return fp.quantize_ring(weighted_vector(clipped, weight, max_weight), CSPRNG.from_key(key), dtype)


@settings(max_examples=120, deadline=None)
@given(values=st.lists(st.one_of(st.sampled_from(_EDGE), st.floats(-4, 4, allow_nan=False, width=32)),
                       min_size=0, max_size=400),
       float64=st.booleans(), bits=st.sampled_from([16, 32, 48, 64]),
       weight=st.one_of(st.sampled_from([1.0, 37.0, 100.0, 1e-300, 5e-324 * 2 ** 60]), st.floats(1e-6, 100.0)),
       input_clip=st.sampled_from([None, 1.0, 0.1, 0.5, 2.0, 1e-3]), workers=st.integers(1, 3),
       block=st.sampled_from([1, 7, 64, 1 << 15]))
def test_weighted_encoder_equals_clip_weight_quantize(values: list[float], float64: bool, bits: int, weight: float,
                                                      input_clip: float | None, workers: int, block: int) -> None:
    x = np.array(values, dtype=np.float64 if float64 else np.float32)
    if float64:  # float64 updates may hold subnormals too (the two-multiplication path)
        x = np.concatenate([x, [5e-324, -1e-310]])
    fp = FixedPoint.for_bits(bits, max_clients=3, clip=max(input_clip or 1.0, 1.0))
    dtype = np.uint32 if bits <= 32 else np.uint64
    key = os.urandom(32)
    saved = encoding._QUANTIZE_BLOCK, encoding._PARALLEL_MIN_ELEMENTS, encoding.usable_cores
    encoding._QUANTIZE_BLOCK, encoding._PARALLEL_MIN_ELEMENTS = block, 0
    encoding.usable_cores = lambda: workers
    try:
        got = fp.quantize_weighted_ring(x, weight, 100.0, CSPRNG.from_key(key), dtype, input_clip=input_clip)
        expected = _reference(fp, x, weight, 100.0, key, dtype, input_clip)
        into = np.full(x.size + 1, 0xA5A5A5A5A5A5A5A5 & np.iinfo(dtype).max, dtype=dtype)  # stale words
        fp.quantize_weighted_ring(x, weight, 100.0, CSPRNG.from_key(key), dtype, input_clip=input_clip, out=into)
    finally:
        encoding._QUANTIZE_BLOCK, encoding._PARALLEL_MIN_ELEMENTS, encoding.usable_cores = saved
    assert got.dtype == dtype and got.shape == (x.size + 1,)
    assert np.array_equal(got, expected)
    assert np.array_equal(into, expected)  # every word written: nothing of what the buffer held survives


@pytest.mark.parametrize("workers", [1, 2])
def test_weighted_encoder_overwrites_every_word_of_a_model_sized_buffer(monkeypatch, workers: int) -> None:
    """The SecAgg upload buffer is not zeroed (protocols.wire.ArraySlot): the encoder, compiled or not, split over
    threads or not, must write every word, so a buffer full of earlier bytes ends up exactly as a zeroed one."""
    monkeypatch.setattr(encoding, "usable_cores", lambda: workers)
    fp = FixedPoint.for_bits(32, max_clients=10, clip=1.0)
    x = np.random.default_rng(5).uniform(-2, 2, 300_001).astype(np.float32)  # above the threading threshold
    key = os.urandom(32)
    outs = []
    for fill in (0, 0xA5A5A5A5, 0xFFFFFFFF):
        out = np.full(x.size + 1, fill, dtype=np.uint32)
        fp.quantize_weighted_ring(x, 3.0, 10.0, CSPRNG.from_key(key), np.uint32, input_clip=1.0, out=out)
        outs.append(out)
    assert all(np.array_equal(outs[0], other) for other in outs[1:])


def test_weighted_encoder_validates_like_weighted_vector() -> None:
    fp = FixedPoint.for_bits(32, max_clients=3, clip=1.0)
    rng = CSPRNG.from_os()
    with pytest.raises(MessageError):
        fp.quantize_weighted_ring(np.array([0.0, np.nan], dtype=np.float32), 1.0, 10.0, rng, np.uint32)
    with pytest.raises(MessageError):
        fp.quantize_weighted_ring(np.array([np.inf], dtype=np.float32), 1.0, 10.0, rng, np.uint32, input_clip=1.0)
    with pytest.raises(MessageError):
        fp.quantize_weighted_ring(np.zeros((2, 2), dtype=np.float32), 1.0, 10.0, rng, np.uint32)
    for weight, max_weight, error in ((0.0, 10.0, MessageError), (11.0, 10.0, ConfigError),
                                      (float("nan"), 10.0, MessageError), (1.0, float("inf"), ConfigError)):
        with pytest.raises(error):
            fp.quantize_weighted_ring(np.zeros(3, dtype=np.float32), weight, max_weight, rng, np.uint32)
    with pytest.raises(ConfigError):
        fp.quantize_weighted_ring(np.zeros(3, dtype=np.float32), 1.0, 10.0, rng, np.uint32, input_clip=0.0)
    with pytest.raises(ConfigError):
        fp.quantize_weighted_ring(np.zeros(3, dtype=np.float32), 1.0, 10.0, rng, np.uint16)  # too narrow


def test_weighted_encoder_is_unbiased_across_thread_ranges(monkeypatch) -> None:
    monkeypatch.setattr(encoding, "usable_cores", lambda: 2)
    monkeypatch.setattr(encoding, "_QUANTIZE_BLOCK", 1 << 10)
    monkeypatch.setattr(encoding, "_PARALLEL_MIN_ELEMENTS", 1 << 12)
    fp = FixedPoint(clip=1.0, frac_bits=4, total_bits=32, max_clients=1)
    value = np.float32(0.61)  # w' x falls between two grid points of 1/16
    x = np.full(1 << 16, value, dtype=np.float32)
    ring = fp.quantize_weighted_ring(x, 1.0, 2.0, CSPRNG.from_os(), np.uint32)
    q = fp.from_ring(ring, 1)
    target = float(value) * 0.5 * 16
    assert set(np.unique(q[:-1])) <= {int(np.floor(target)), int(np.floor(target)) + 1}
    assert q[-1] == 8  # the weight slot 1/2 is on the grid
    half = x.size // 2
    for part in (q[:half], q[half:-1]):  # both ranges unbiased (6 sigma), and not replaying each other
        assert abs(part.mean() - target) < 6 * 0.5 / np.sqrt(part.size)
    assert not np.array_equal(q[:half], q[half:2 * half])


@settings(max_examples=150, deadline=None)
@given(bits=st.sampled_from([8, 16, 24, 32, 33, 48, 63, 64]), n=st.integers(1, 6), threads=st.integers(1, 3),
       data=st.data())
def test_one_pass_mean_equals_dequantize_then_split(bits: int, n: int, threads: int, data) -> None:
    saved = encoding._PARALLEL_MIN_ELEMENTS, encoding.usable_cores
    encoding._PARALLEL_MIN_ELEMENTS, encoding.usable_cores = 0, (lambda: threads)
    try:
        _check_one_pass_mean(bits, n, data)
    finally:
        encoding._PARALLEL_MIN_ELEMENTS, encoding.usable_cores = saved


def _check_one_pass_mean(bits: int, n: int, data) -> None:
    fp = FixedPoint.for_bits(bits, max_clients=6, clip=1.0)
    words = np.uint32 if bits <= 32 else np.uint64
    size = data.draw(st.integers(1, 50))
    values = data.draw(st.lists(st.integers(-n * fp.max_abs_per_client + 1, n * fp.max_abs_per_client - 1),
                                min_size=size, max_size=size))
    ring = fp.to_ring(np.array(values, dtype=np.int64)).astype(words)
    for wide in (False, True):  # words of the ring's width (a signed view) and wider words (the general path)
        r = ring.astype(np.uint64) if wide else ring
        if values[-1] > 0:
            mean, total, normalized = fp.weighted_mean_from_ring(r, n, 7.0)
            weighted = fp.dequantize(fp.from_ring(r, n))
            expected_mean, expected_total = split_weighted(weighted, 7.0)
            assert np.array_equal(mean, expected_mean) and mean.dtype == np.float64
            assert total == expected_total and normalized == weighted[-1]
        else:
            with pytest.raises(MessageError):
                fp.weighted_mean_from_ring(r, n, 7.0)
        with pytest.raises(HeadroomError):
            fp.weighted_mean_from_ring(r, 7, 7.0)
