"""Compiled inner loops (numba, optional) for kernels whose numpy form spends its time between ufuncs.

Threat model: none of its own. A kernel here computes, element for element, exactly the values of the numpy
reference it replaces (IEEE float64 arithmetic without fast-math, the same comparisons and integer conversions), so
using it changes no party's view, no output and no draw of randomness; tests check bit-for-bit agreement with the
reference on random inputs. It runs inside the calling party's process and releases the GIL like the ufuncs it
replaces.

Kernels: :func:`quantize_kernel` (stochastic rounding, for :mod:`protocols.encoding`) and :func:`fold_kernel` (two
mask keystreams added to or subtracted from a block in one pass, for :mod:`protocols.secagg.masking`).

Availability: numba is an optional dependency (the ``fast`` extra, included in ``all``). Without it, or with
``PRIVFED_JIT=0`` in the environment, every ``*_kernel`` function returns ``None`` and callers run the numpy
reference.
numba is imported on the first call that can use a kernel (small inputs never import it) and the compiled code is
cached on disk (numba's ``cache=True``: beside this module, or in the user's cache directory when that is read-only),
so a process pays the compilation (about half a second per input/output word type) once per machine.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["enabled", "quantize_kernel", "fold_kernel", "warm_up", "MIN_ELEMENTS"]

MIN_ELEMENTS = 1 << 14  # below this the numpy reference runs (no import, no compilation for small vectors)
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_WORDS = (np.dtype(np.int32), np.dtype(np.int64))
_RING_WORDS = (np.dtype(np.uint32), np.dtype(np.uint64))
_STATE: dict[str, Any] = {}


def enabled() -> bool:
    """Whether compiled kernels are in use: numba importable and ``PRIVFED_JIT`` not ``0``."""
    if "quantize" not in _STATE:
        kernels = _compile() if os.environ.get("PRIVFED_JIT", "1") != "0" else None
        _STATE.update(kernels or {"quantize": None, "fold": None})
    return _STATE["quantize"] is not None


def warm_up() -> bool:
    """Compile (or load from numba's on-disk cache) every kernel for every word type it serves, so that no timed
    or latency-bound call pays for it; returns :func:`enabled`. Harnesses call it before timing, and privfed's
    Flower launcher before forking ClientApps (a forked child inherits the compiled code)."""
    if not enabled():
        return False
    kernel = _STATE["quantize"]
    u = np.zeros(2, dtype=np.uint32)
    for float_type in _FLOATS:
        for word in _WORDS:
            kernel(np.zeros(1, dtype=float_type), 1.0, 1.0, 1.0, u, np.zeros(1, dtype=word))
    for word in _RING_WORDS:
        block = np.zeros(1, dtype=word)
        _STATE["fold"](block, block, block, word.type(1), word.type(0))
    return True


def quantize_kernel(x: np.ndarray, out: np.ndarray) -> Callable[..., bool] | None:
    """The compiled stochastic-rounding loop for float32/float64 ``x`` into contiguous int32/int64 ``out``, or
    ``None`` (numba missing, disabled, other word types, or fewer than :data:`MIN_ELEMENTS` elements).

    ``kernel(x, factor, bound, post, u, out) -> finite`` sets, for every i, with y = max(min(x_i * factor, bound),
    -bound) * post in float64: out_i = floor(y) + [u_i < (y - floor(y)) * 2^32]; it returns False when some x_i is
    NaN or infinite (``out`` is then unspecified and the caller raises)."""
    if x.size < MIN_ELEMENTS or x.dtype not in _FLOATS or out.dtype not in _WORDS:
        return None
    if not (x.flags.c_contiguous and out.flags.c_contiguous) or not enabled():
        return None
    return _STATE["quantize"]


def fold_kernel(block: np.ndarray) -> Callable[..., None] | None:
    """The compiled two-keystream fold for a contiguous uint32/uint64 ``block`` of at least :data:`MIN_ELEMENTS`
    words, or ``None`` (numba missing, disabled, other word types, smaller blocks).

    ``fold(block, a, b, sign_a, sign_b)`` sets, for every i, block_i = block_i + sign_a a_i + sign_b b_i modulo
    2^width, where each sign is a word of block's type: 1 adds, 2^width - 1 subtracts, 0 leaves that stream out.
    The same words the numpy reference's one ``np.add``/``np.subtract`` per stream give (unsigned arithmetic wraps
    identically), in one pass over the block instead of two."""
    if block.size < MIN_ELEMENTS or block.dtype not in _RING_WORDS or not block.flags.c_contiguous or not enabled():
        return None
    return _STATE["fold"]


def _compile() -> dict[str, Callable[..., Any]] | None:
    try:
        import numba
    except ImportError:
        return None

    @numba.njit(nogil=True, cache=True, error_model="numpy")
    def fold(block, a, b, sign_a, sign_b):  # pragma: no cover - compiled; checked against the reference
        for i in range(block.size):
            block[i] = block[i] + sign_a * a[i] + sign_b * b[i]

    @numba.njit(nogil=True, cache=True, fastmath=False, error_model="numpy")
    def quantize(x, factor, bound, post, u, out):  # pragma: no cover - compiled; checked against the reference
        finite = True
        two_pow_32 = 4294967296.0
        for i in range(x.size):
            v = np.float64(x[i])
            finite &= np.isfinite(v)
            y = max(min(v * factor, bound), -bound)
            if post != 1.0:
                y = y * post
            low = np.floor(y)
            out[i] = np.int64(low) + (np.float64(u[i]) < (y - low) * two_pow_32)
        return finite

    return {"quantize": quantize, "fold": fold}
