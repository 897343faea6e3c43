"""Fixed-point encoding shared by every integer protocol (Paillier packing, SecAgg, distributed DP).

Threat model: encoding hides nothing. It is here so that integer protocols are *correct*: a value x is clipped to the
declared range [-clip, clip], scaled by 2^frac_bits and rounded stochastically (E[q] = x * scale to within 2^-32 of one
quantum: the rounding draws are 32-bit words of a CSPRNG). :class:`FixedPoint` checks at construction that the sum of
``max_clients`` encoded values (plus any declared per-client extra such as DP noise) fits in the signed range of the
modulus 2^total_bits, and **raises** :class:`~protocols.errors.HeadroomError` when it could overflow; decoding a sum of
more clients than declared raises too. Known limit: clipping changes values outside the declared range, by design; the
error bound reported covers rounding only, so inputs are expected inside the range.

Weighted FedAvg: a client sends ``[w' * x, w']`` with ``w' = w / max_weight`` (``max_weight`` is a public bound), so
the weights are protected together with the update and the decoder divides (:func:`weighted_vector`,
:func:`split_weighted`). The hot paths do the same without intermediate vectors:
:meth:`FixedPoint.quantize_weighted_ring` encodes ``[w' clip(x), w']`` straight from the float32 update into ring
words, and :meth:`FixedPoint.weighted_mean_from_ring` decodes the mean from a ring sum in one pass; both give bit for
bit what the step-by-step functions give (property tests).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .csprng import CSPRNG, FAST_NONCE
from .errors import ConfigError, HeadroomError, MessageError
from .jit import quantize_kernel
from .parallel import run_all, split, thread_scratch, usable_cores

_QUANTIZE_BLOCK = 1 << 16  # elements per quantizer block: buffers stay in L2 cache, and the numpy calls are long
# the compiled loop touches only the draws and the words: blocks this many times longer halve the calls that hand the
# GIL between the two threads (measured: ~2.5% of the 10 x 1M SecAgg round; block size never changes the output)
_COMPILED_BLOCKS = 2
# enough that two threads rarely wait on each other for the GIL (at 2^15 two threads ran no faster than one)
_PARALLEL_MIN_ELEMENTS = 1 << 18  # below this one thread is cheaper (measured: at 100k two ranges ran slower than one)
_TWO_POW_32 = float(1 << 32)
_TWO_POW_M800 = 2.0 ** -800  # w' at least this: x * w' for float32 x is 0 or a normal double

__all__ = [
    "FixedPoint",
    "weighted_vector",
    "normalized_weight",
    "split_weighted",
    "weighted_mean_error_bound",
    "check_finite",
]


def check_finite(vector: np.ndarray, what: str = "vector") -> None:
    """Raise MessageError if ``vector`` holds NaN or infinity (never aggregate silently wrong values)."""
    if not np.isfinite(vector).all():
        raise MessageError(f"{what} holds NaN or infinite entries")


@dataclass(frozen=True)
class FixedPoint:
    """Signed fixed point in Z_{2^total_bits}: q = stochastic_round(clip(x) * 2^frac_bits)."""

    clip: float
    frac_bits: int
    total_bits: int
    max_clients: int
    extra_per_client: int = 0  # largest |integer| a client may add on top of its encoded value (e.g. DP noise)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.clip) and self.clip > 0):
            raise ConfigError(f"clip must be a positive finite number, got {self.clip}")
        if not 2 <= self.total_bits <= 64:
            raise ConfigError(f"total_bits must be in 2..64, got {self.total_bits}")
        if not 0 <= self.frac_bits < self.total_bits:
            raise ConfigError(f"frac_bits must be in 0..total_bits-1, got {self.frac_bits}")
        if self.max_clients < 1:
            raise ConfigError(f"max_clients must be >= 1, got {self.max_clients}")
        if self.extra_per_client < 0:
            raise ConfigError("extra_per_client must be >= 0")
        needed = self.max_clients * self.max_abs_per_client
        if needed >= 1 << (self.total_bits - 1):
            raise HeadroomError(
                f"sum of {self.max_clients} clients can reach {needed}, which does not fit the signed range of "
                f"2^{self.total_bits} (limit {(1 << (self.total_bits - 1)) - 1}); lower frac_bits or clip, or "
                f"raise total_bits")

    @classmethod
    def for_bits(cls, total_bits: int, max_clients: int, clip: float, extra_per_client_real: float = 0.0,
                 ) -> "FixedPoint":
        """The finest scale (largest frac_bits) whose sum over ``max_clients`` fits ``total_bits``."""
        if not (math.isfinite(clip) and clip > 0):
            raise ConfigError(f"clip must be a positive finite number, got {clip}")
        if not (math.isfinite(extra_per_client_real) and extra_per_client_real >= 0):
            raise ConfigError(f"extra_per_client_real must be a finite number >= 0, got {extra_per_client_real}")
        for frac_bits in range(total_bits - 1, -1, -1):
            scaled = extra_per_client_real * 2.0 ** frac_bits
            if not math.isfinite(scaled):  # an astronomically wide noise share fits no finer scale
                continue
            extra = math.ceil(scaled)
            if max_clients * (math.ceil(clip * 2.0 ** frac_bits) + 1 + extra) < 1 << (total_bits - 1):
                return cls(clip, frac_bits, total_bits, max_clients, extra)
        raise HeadroomError(f"no scale fits {max_clients} clients with clip {clip}"
                            + (f" and a per-client noise bound of {extra_per_client_real:.3g}" if extra_per_client_real
                               else "") + f" in {total_bits} bits")

    @property
    def scale(self) -> float:
        return float(1 << self.frac_bits)

    @property
    def modulus(self) -> int:
        return 1 << self.total_bits

    @property
    def max_abs_per_client(self) -> int:
        """Largest |integer| one client contributes (encoded value after rounding up, plus the declared extra)."""
        return math.ceil(self.clip * self.scale) + 1 + self.extra_per_client

    def quantize(self, x: np.ndarray, rng: CSPRNG) -> np.ndarray:
        """Clip, scale and round stochastically (unbiased to within 2^-32 of a quantum) to int64. Non-finite input
        raises MessageError."""
        x = np.asarray(x, dtype=np.float64)
        out = np.empty(x.shape, dtype=np.int64)
        self._quantize_into(x.reshape(-1), None, self.clip, rng, out.reshape(-1))
        return out

    def quantize_ring(self, x: np.ndarray, rng: CSPRNG, dtype: np.dtype | type = np.uint64) -> np.ndarray:
        """:meth:`quantize` followed by :meth:`to_ring`, written straight into a flat unsigned ``dtype`` array of at
        least ``total_bits`` bits (the same random draws, the same ring elements, without int64 intermediates)."""
        dtype = self._ring_word(dtype)
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        out = np.empty(x.size, dtype=dtype)
        self._quantize_into(x, None, self.clip, rng, out)
        return self._reduce(out)

    def quantize_weighted_ring(self, x: np.ndarray, weight: float, max_weight: float, rng: CSPRNG,
                               dtype: np.dtype | type = np.uint64, input_clip: float | None = None,
                               out: np.ndarray | None = None) -> np.ndarray:
        """The ring encoding of the weighted vector ``[w' clip(x), w']`` in one pass, without its float64 copy.

        Bit for bit ``quantize_ring(weighted_vector(np.clip(x, -b, b), weight, max_weight), rng, dtype)`` with
        ``b = x.dtype.type(input_clip)`` (the input clipped in its own precision; no clip when ``input_clip`` is
        None): the same ring elements from the same random draws. The weight and the vector are validated as
        :func:`weighted_vector` validates them; a non-finite entry raises MessageError. With ``out`` (a writable
        contiguous 1-d array of x.size + 1 words of ``dtype``, such as a message's :class:`~protocols.wire.ArraySlot`)
        the encoding is written there and ``out`` returned."""
        dtype = self._ring_word(dtype)
        w = normalized_weight(weight, max_weight)
        x = _flat_float(x)
        bound = self.clip
        if input_clip is not None:
            if not (math.isfinite(input_clip) and input_clip > 0):
                raise ConfigError(f"input_clip must be a positive finite number, got {input_clip}")
            # clip(x, +-b) * w' == clip(x * w', +-(b * w')) exactly: rounding x * w' is monotone in x for w' > 0
            bound = min(float(x.dtype.type(input_clip)) * w, self.clip)
        if out is None:
            out = np.empty(x.size + 1, dtype=dtype)
        elif (out.dtype != dtype or out.shape != (x.size + 1,) or not out.flags.c_contiguous
              or not out.flags.writeable):
            raise ConfigError(f"out must be a writable contiguous ({x.size + 1},) {dtype} array, got "
                              f"{out.dtype} {out.shape}")
        self._quantize_into(x, w, bound, rng, out)
        return self._reduce(out)

    def _ring_word(self, dtype: np.dtype | type) -> np.dtype:
        dtype = np.dtype(dtype)
        if dtype.kind != "u" or dtype.itemsize * 8 < self.total_bits:
            raise ConfigError(f"ring dtype must be unsigned with >= {self.total_bits} bits, got {dtype}")
        return dtype

    def _reduce(self, out: np.ndarray) -> np.ndarray:
        if self.total_bits < out.dtype.itemsize * 8:
            out &= out.dtype.type(self.modulus - 1)
        return out

    def _quantize_into(self, x: np.ndarray, weight: float | None, bound: float, rng: CSPRNG,
                       out: np.ndarray) -> None:
        """Blocked kernel of the quantizers: per cache-sized block, q = floor(y) + [u < y - floor(y)] with
        y = clip(x, +-bound) * scale and u = (next 32 keystream bits) / 2^32, compared as u * 2^32 < frac * 2^32
        (both exact in float64), so each element consumes 4 keystream bytes in order (``rng.uint32``) and rounds
        up with probability ceil(frac * 2^32) / 2^32, in [frac, frac + 2^-32): the bias is below 2^-32 of a
        quantum, 2^-(32 + frac_bits) in value, far under the rounding error itself. Signed results
        are cast into ``out``'s dtype (two's complement wrap for unsigned words). With a ``weight`` w', element i
        encodes clip(x_i * w', +-bound) and ``out`` has one more word, the weight slot w' (clipped at the range),
        drawn after the last element. Inputs of at least ``_PARALLEL_MIN_ELEMENTS`` are cut into one range per core:
        the first range draws from ``rng``, every other from its own CSPRNG keyed with 32 fresh bytes of ``rng``
        (independent uniforms, the same law)."""
        scale = self.scale
        if weight is None:
            steps = (scale, bound * scale, 1.0)
        elif x.dtype.itemsize <= 4 and weight >= _TWO_POW_M800:
            # |x * w'| is 0 or >= 2^-149 * 2^-800 (normal), so x * (w' 2^f) rounds to x * w' rounded, times 2^f
            steps = (weight * scale, bound * scale, 1.0)
        else:  # a float64 product may be subnormal, where scaling after rounding differs: keep both steps
            steps = (weight, bound, scale)
        tail = None if weight is None else (np.array([weight]), (scale, self.clip * scale, 1.0))
        workers = 1 if out.size < _PARALLEL_MIN_ELEMENTS else usable_cores()
        ranges = split(out.size, workers, align=1024)  # balanced ranges; blocks need no alignment
        rngs = [rng] + [CSPRNG.from_key(rng.bytes(32), FAST_NONCE) for _ in ranges[1:]]
        jobs = [(x[lo:min(hi, x.size)], steps, r, out[lo:hi], tail if hi > x.size else None)
                for (lo, hi), r in zip(ranges, rngs)]
        run_all(_quantize_range, jobs)

    def to_ring(self, q: np.ndarray) -> np.ndarray:
        """Signed int64 -> two's complement in Z_{2^total_bits} as uint64."""
        out = q.astype(np.uint64)  # wraps modulo 2^64, i.e. two's complement
        if self.total_bits < 64:
            out &= np.uint64(self.modulus - 1)
        return out

    def from_ring(self, r: np.ndarray, n_summed: int) -> np.ndarray:
        """Ring elements (a sum of ``n_summed`` clients' values) -> signed int64, refusing more than declared."""
        return self._signed(r, n_summed).astype(np.int64)  # always a fresh array

    def weighted_mean_from_ring(self, r: np.ndarray, n_summed: int, max_weight: float,
                                ) -> tuple[np.ndarray, float, float]:
        """A ring sum of weighted vectors ``[w' x, w']`` -> (weighted mean, total weight in the caller's units, total
        normalised weight): ``split_weighted(dequantize(from_ring(r, n_summed)), max_weight)`` in one pass over
        the vector, with the same doubles (q / scale and q_w / scale are exact, so q / q_w rounds as their quotient
        does)."""
        signed = self._signed(r, n_summed)
        weight = float(signed[-1]) / self.scale
        _check_weight_sum(weight)
        values, divisor = signed[:-1], float(signed[-1])
        mean = np.empty(values.size, dtype=np.float64)
        workers = 1 if values.size < _PARALLEL_MIN_ELEMENTS else usable_cores()
        run_all(_divide_range, [(values[lo:hi], divisor, mean[lo:hi]) for lo, hi in split(values.size, workers)])
        return mean, weight * max_weight, weight

    def _signed(self, r: np.ndarray, n_summed: int) -> np.ndarray:
        """The signed integers of ring elements: a view for 8/16/32/64-bit rings in words of their width, else an
        int64 copy; refuses a sum of more clients than declared."""
        if n_summed > self.max_clients:
            raise HeadroomError(f"a sum of {n_summed} clients exceeds the declared max_clients {self.max_clients}")
        r = np.asarray(r)
        if r.dtype.kind == "u" and r.dtype.itemsize * 8 == self.total_bits:  # 8/16/32/64-bit words: a signed view
            return r.view(np.dtype(f"i{r.dtype.itemsize}"))
        r = r.astype(np.uint64)
        if self.total_bits < 64:
            r = r & np.uint64(self.modulus - 1)
            half = np.uint64(1 << (self.total_bits - 1))
            signed = r.astype(np.int64)
            return np.where(r >= half, signed - np.int64(half) - np.int64(half), signed)
        return r.view(np.int64)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        return np.asarray(q, dtype=np.float64) / self.scale

    def sum_error_bound(self, n: int) -> float:
        """Max absolute rounding error of a decoded sum of n values (each off by < 1/scale)."""
        return n / self.scale


def _quantize_range(x: np.ndarray, steps: tuple[float, float, float], rng: CSPRNG, out: np.ndarray,
                    tail: tuple[np.ndarray, tuple[float, float, float]] | None) -> None:
    """Quantize x into out[:x.size] with y = clip(x * factor, +-bound) * post (``steps``); then, with a ``tail``
    (values, steps), those values into the words after it, drawing on from the same keystream."""
    _quantize_block(x, steps, rng, out[:x.size])
    if tail is not None:
        _quantize_block(tail[0], tail[1], rng, out[x.size:])


def _quantize_block(x: np.ndarray, steps: tuple[float, float, float], rng: CSPRNG, out: np.ndarray) -> None:
    factor, bound, post = steps
    # |q| <= ceil(clip * scale) + 1 < 2^(total_bits - 1) (checked at construction) fits the signed word of out's
    # width, so the integral doubles convert exactly into that view (two's complement: the unsigned word wraps)
    signed = out.view(np.dtype(f"i{out.dtype.itemsize}"))
    kernel = quantize_kernel(x, signed)  # the same values in one compiled pass per block (protocols.jit)
    block = _QUANTIZE_BLOCK * (_COMPILED_BLOCKS if kernel is not None else 1)
    y, low, u, up = _scratch(min(block, x.size))  # low: floor(y); once copied out, the uniform draws as doubles
    factor64 = np.float64(factor)
    for lo in range(0, x.size, block):
        m = min(block, x.size - lo)
        yb, lb, ub, upb, qb = y[:m], low[:m], u[:m], up[:m], signed[lo:lo + m]
        xb = x[lo:lo + m]
        if kernel is not None:
            rng.fill(u, m)
            if not kernel(xb, factor, bound, post, ub, qb):
                raise MessageError("input holds NaN or infinite entries")
            continue
        np.isfinite(xb, out=upb)
        if not upb.all():
            raise MessageError("input holds NaN or infinite entries")
        np.copyto(yb, xb)  # float inputs widen exactly
        yb *= factor64  # the one rounding of x * factor, as float64 arithmetic rounds it
        np.minimum(yb, bound, out=yb)
        np.maximum(yb, -bound, out=yb)  # clip without np.clip's Python wrapper
        if post != 1.0:
            yb *= post
        np.floor(yb, out=lb)
        yb -= lb  # the fractional part in [0, 1), exact
        yb *= _TWO_POW_32  # exact: a power of two
        np.copyto(qb, lb, casting="unsafe")  # the integral doubles, exactly
        rng.fill(u, m)
        np.copyto(lb, ub)  # 32-bit draws as doubles, exactly
        np.less(lb, yb, out=upb)
        np.add(qb, upb, out=qb, casting="unsafe")


def _scratch(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """This thread's reused quantizer buffers of ``size`` elements (y, low, u with one AES block of slack for
    CSPRNG.fill, up), carved from one :func:`~protocols.parallel.thread_scratch` buffer: fresh buffers of this size
    cost a page fault per 4 KiB on every call (at 100k parameters a sixth of the quantizer's time). They hold only
    values of the calling party's own input and its rounding draws, overwritten block by block."""
    doubles, words = 8 * size, 4 * (size + 16 // 4)
    raw = thread_scratch("quantize", 2 * doubles + words + size)
    return (raw[:doubles].view(np.float64), raw[doubles:2 * doubles].view(np.float64),
            raw[2 * doubles:2 * doubles + words].view(np.uint32),
            raw[2 * doubles + words:2 * doubles + words + size].view(bool))


def _divide_range(values: np.ndarray, divisor: float, out: np.ndarray) -> None:
    np.divide(values, divisor, out=out, dtype=np.float64)  # integers widen to float64 inside the loop


def normalized_weight(weight: float, max_weight: float) -> float:
    """w' = weight / max_weight, validated: finite, 0 < weight <= max_weight (the one check of every encoder)."""
    if not (math.isfinite(weight) and weight > 0):
        raise MessageError(f"weight must be positive and finite, got {weight}")
    if not (math.isfinite(max_weight) and max_weight > 0):
        raise ConfigError(f"max_weight must be positive and finite, got {max_weight}")
    if weight > max_weight * (1 + 1e-12):
        raise ConfigError(f"weight {weight} exceeds the declared max_weight {max_weight}")
    return weight / max_weight


def _flat_float(vector: np.ndarray) -> np.ndarray:
    """A flat float view of an update (non-float input converted to float64)."""
    x = np.asarray(vector)
    if x.dtype.kind != "f":
        x = x.astype(np.float64)
    if x.ndim != 1:
        raise MessageError(f"update must be a flat vector, got shape {x.shape}")
    return x


def weighted_vector(vector: np.ndarray, weight: float, max_weight: float) -> np.ndarray:
    """``[w' * x, w']`` in float64 with ``w' = weight / max_weight`` (validated: finite, 0 < weight <= max_weight)."""
    w = normalized_weight(weight, max_weight)
    x = _flat_float(vector)
    check_finite(x, "update")
    out = np.empty(x.size + 1, dtype=np.float64)
    np.multiply(x, w, out=out[:-1], dtype=np.float64)  # float32 inputs widen exactly inside the loop
    out[-1] = w
    return out


def split_weighted(total: np.ndarray, max_weight: float) -> tuple[np.ndarray, float]:
    """From the sum of weighted vectors: (weighted mean, total weight in the caller's units)."""
    total = np.asarray(total, dtype=np.float64)
    weight = float(total[-1])
    _check_weight_sum(weight)
    return total[:-1] / weight, weight * max_weight


def _check_weight_sum(weight: float) -> None:
    if not weight > 0:
        raise MessageError("aggregate weight is not positive: nothing to average")


def weighted_mean_error_bound(sum_error: float, total_weight_normalized: float, clip: float) -> float:
    """Bound on |mean - exact mean| when every coordinate of the weighted sum (and the weight slot) is off by at
    most ``sum_error``: |e_S| + |mean| |e_W| over W - |e_W|, with |mean| <= clip."""
    denominator = total_weight_normalized - sum_error
    if denominator <= 0:
        return math.inf
    return sum_error * (1.0 + clip) / denominator
