"""The compiled kernels (protocols.jit) give bit for bit the numpy reference's words: the quantizer's ring elements
and the mask fold's sums.

The reference is the blocked numpy kernel of :mod:`protocols.encoding` (itself checked against the textbook formula
in test_fast_paths.py); here both run on the same keystream and must agree on every word, for float32 and float64
inputs, 32- and 64-bit words, both weighting paths (one fused factor, and factor then post-scale for tiny weights),
clipped values, signed zeros, subnormals and values exactly on the quantization grid. So the uniformity and
unbiasedness tests of the reference carry over unchanged.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import protocols.encoding as encoding
from protocols import jit
from protocols.csprng import CSPRNG
from protocols.encoding import FixedPoint
from protocols.errors import MessageError
from protocols.secagg import masking

pytest.importorskip("numba")  # the project's "all" extra installs it; without it the reference runs everywhere

SPECIAL = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0 ** -30, -(2.0 ** -30), 5e-324, -5e-324, 1.5, -1.5, 3.0, -3.0,
           1e30, -1e30, 0.1, 1 / 3]


def _both(fp: FixedPoint, x: np.ndarray, weight: float, dtype: type, block: int) -> tuple[np.ndarray, np.ndarray]:
    """(compiled, reference) encodings of ``[w' clip(x), w']`` from the same keystream, in blocks of ``block``."""
    key = os.urandom(32)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(encoding, "_QUANTIZE_BLOCK", block)
        patch.setattr(jit, "MIN_ELEMENTS", 0)  # the kernel at every size
        compiled = fp.quantize_weighted_ring(x, weight, 10.0, CSPRNG.from_key(key), dtype, input_clip=2.0)
        patch.setattr(encoding, "quantize_kernel", lambda x, out: None)  # the numpy reference
        reference = fp.quantize_weighted_ring(x, weight, 10.0, CSPRNG.from_key(key), dtype, input_clip=2.0)
    return compiled, reference


@settings(max_examples=80, deadline=None)
@given(values=st.lists(st.one_of(st.floats(-4, 4, allow_nan=False), st.sampled_from(SPECIAL)), max_size=400),
       float_type=st.sampled_from([np.float32, np.float64]), bits=st.sampled_from([20, 32, 48, 64]),
       weight=st.one_of(st.floats(1e-300, 10.0), st.sampled_from([10.0, 1.0, 1e-250, 3e-300])),
       block=st.sampled_from([1, 7, 64, 1 << 16]))
def test_compiled_quantizer_equals_the_numpy_reference(values, float_type, bits, weight, block) -> None:
    with np.errstate(over="ignore"):  # 1e30 overflows float32 to inf: filtered below
        x = np.array(values, dtype=np.float64).astype(float_type)
    x = x[np.isfinite(x)]
    fp = FixedPoint.for_bits(bits, max_clients=3, clip=1.5)
    compiled, reference = _both(fp, x, weight, np.uint32 if bits <= 32 else np.uint64, block)
    assert compiled.dtype == reference.dtype
    assert np.array_equal(compiled, reference)


def test_the_kernel_is_used_at_model_size_and_matches() -> None:
    fp = FixedPoint.for_bits(32, max_clients=10, clip=1.0)
    x = np.random.default_rng(0).standard_normal(3 * jit.MIN_ELEMENTS).astype(np.float32)
    assert jit.enabled()
    assert jit.quantize_kernel(x, np.empty(x.size, np.int32)) is not None  # the equality tests are not vacuous
    assert jit.quantize_kernel(x[:100], np.empty(100, np.int32)) is None  # small inputs keep the reference
    assert jit.quantize_kernel(x.astype(np.float16), np.empty(x.size, np.int32)) is None
    assert jit.quantize_kernel(x[::2], np.empty(x.size // 2 + 1, np.int32)) is None  # strided: the reference
    key = os.urandom(32)
    compiled = fp.quantize_weighted_ring(x, 3.0, 10.0, CSPRNG.from_key(key), np.uint32)
    saved = encoding.quantize_kernel
    encoding.quantize_kernel = lambda x, out: None
    try:
        reference = fp.quantize_weighted_ring(x, 3.0, 10.0, CSPRNG.from_key(key), np.uint32)
    finally:
        encoding.quantize_kernel = saved
    assert np.array_equal(compiled, reference)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_the_kernel_refuses_non_finite_entries(bad: float) -> None:
    fp = FixedPoint.for_bits(32, max_clients=10, clip=1.0)
    x = np.zeros(4 * jit.MIN_ELEMENTS, dtype=np.float32)
    x[-3] = bad
    with pytest.raises(MessageError, match="NaN or infinite"):
        fp.quantize_weighted_ring(x, 1.0, 1.0, CSPRNG.from_os(), np.uint32)


def test_privfed_jit_0_turns_the_kernels_off(monkeypatch) -> None:
    monkeypatch.setattr(jit, "_STATE", {})
    monkeypatch.setenv("PRIVFED_JIT", "0")
    x = np.zeros(2 * jit.MIN_ELEMENTS)
    assert not jit.enabled()
    assert jit.quantize_kernel(x, np.empty(x.size, np.int64)) is None
    assert jit.fold_kernel(np.zeros(x.size, np.uint32)) is None


def test_warm_up_compiles_every_word_type_before_any_timed_call() -> None:
    assert jit.warm_up()
    kernel = jit._STATE["quantize"]
    compiled = {(sig[0].dtype, sig[5].dtype) for sig in kernel.signatures}
    assert {(np.dtype(f).name, np.dtype(w).name) for f in (np.float32, np.float64) for w in (np.int32, np.int64)} \
        <= {(str(f), str(w)) for f, w in compiled}
    assert {"uint32", "uint64"} <= {str(sig[0].dtype) for sig in jit._STATE["fold"].signatures}


@settings(max_examples=25, deadline=None)
@given(n=st.integers(jit.MIN_ELEMENTS, 3 * jit.MIN_ELEMENTS), bits=st.sampled_from([20, 32, 33, 48, 64]),
       adds=st.integers(0, 4), subs=st.integers(0, 4), workers=st.integers(1, 2),
       block=st.sampled_from([1 << 16, 1 << 17, 1 << 19]))
def test_compiled_mask_fold_equals_the_numpy_additions(n, bits, adds, subs, workers, block) -> None:
    """Two keystreams per compiled pass give exactly the words of one numpy addition or subtraction per stream,
    for odd and even key counts, both word types, rings narrower than the word, several blocks and ranges."""
    keys = [os.urandom(32) for _ in range(adds + subs)]
    start = np.frombuffer(os.urandom(n * masking.ring_dtype(bits).itemsize), dtype=masking.ring_dtype(bits))
    folded = masking.apply_masks(start.copy(), keys[:adds], keys[adds:], bits, workers=workers, block_bytes=block)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(masking, "fold_kernel", lambda block: None)
        reference = masking.apply_masks(start.copy(), keys[:adds], keys[adds:], bits, workers=workers,
                                        block_bytes=block)
    assert np.array_equal(folded, reference)


def test_the_mask_fold_is_used_at_model_size() -> None:
    calls = []
    kernel = jit.fold_kernel(np.zeros(jit.MIN_ELEMENTS, dtype=np.uint32))
    assert kernel is not None
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(masking, "fold_kernel", lambda block: (calls.append(block.size), kernel)[1])
        masking.apply_masks(np.zeros(1 << 18, dtype=np.uint32), [os.urandom(32)] * 3, [], 32)
    assert calls  # asked for (and given) the compiled fold
    assert jit.fold_kernel(np.zeros(jit.MIN_ELEMENTS - 1, dtype=np.uint32)) is None  # small blocks: numpy
    assert jit.fold_kernel(np.zeros(jit.MIN_ELEMENTS, dtype=np.int32)) is None  # ring words are unsigned
