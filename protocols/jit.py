"""Compiled inner loops (numba, optional) for kernels whose numpy form spends its time between ufuncs.

Threat model: none of its own. A kernel here computes, element for element, exactly the values of the numpy
reference it replaces (IEEE float64 arithmetic without fast-math, the same comparisons and integer conversions), so
using it changes no party's view, no output and no draw of randomness; tests check bit-for-bit agreement with the
reference on random inputs. It runs inside the calling party's process and releases the GIL like the ufuncs it
replaces.

Availability: numba is an optional dependency (the ``fast`` extra, included in ``all``). Without it, or with
``PRIVFED_JIT=0`` in the environment, :func:`quantize_kernel` returns ``None`` and callers run the numpy reference.
numba is imported on the first call that can use a kernel (small inputs never import it) and the compiled code is
cached on disk (numba's ``cache=True``: beside this module, or in the user's cache directory when that is read-only),
so a process pays the compilation (about half a second per input/output word type) once per machine.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["enabled", "quantize_kernel", "warm_up", "MIN_ELEMENTS"]

MIN_ELEMENTS = 1 << 14  # below this the numpy reference runs (no import, no compilation for small vectors)
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_WORDS = (np.dtype(np.int32), np.dtype(np.int64))
_STATE: dict[str, Any] = {}


def enabled() -> bool:
    """Whether compiled kernels are in use: numba importable and ``PRIVFED_JIT`` not ``0``."""
    if "quantize" not in _STATE:
        _STATE["quantize"] = _compile_quantize() if os.environ.get("PRIVFED_JIT", "1") != "0" else None
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


def _compile_quantize() -> Callable[..., bool] | None:
    try:
        import numba
    except ImportError:
        return None

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

    return quantize
