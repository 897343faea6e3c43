"""Fixed-point encoding shared by every integer protocol (Paillier packing, SecAgg, distributed DP).

Threat model: encoding hides nothing. It is here so that integer protocols are *correct*: a value x is clipped to
the declared range [-clip, clip], scaled by 2^frac_bits and rounded stochastically (unbiased: E[q] = x * scale),
with the rounding bits drawn from a CSPRNG. :class:`FixedPoint` checks at construction that the sum of
``max_clients`` encoded values (plus any declared per-client extra such as DP noise) fits in the signed range of
the modulus 2^total_bits, and **raises** :class:`~protocols.errors.HeadroomError` when it could overflow; decoding a
sum of more clients than declared raises too. Known limit: clipping changes values outside the declared range, by
design; the error bound reported covers rounding only, so inputs are expected inside the range.

Weighted FedAvg: a client sends ``[w' * x, w']`` with ``w' = w / max_weight`` (``max_weight`` is a public bound), so
the weights are protected together with the update and the decoder divides (:func:`weighted_vector`,
:func:`split_weighted`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .csprng import CSPRNG
from .errors import ConfigError, HeadroomError, MessageError

__all__ = [
    "FixedPoint",
    "weighted_vector",
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
        """Clip, scale and round stochastically (unbiased) to int64. Non-finite input raises MessageError."""
        x = np.asarray(x, dtype=np.float64)
        check_finite(x, "input")
        y = np.clip(x, -self.clip, self.clip) * self.scale
        low = np.floor(y)
        q = low + (rng.uniform(y.size).reshape(y.shape) < (y - low))
        return q.astype(np.int64)

    def to_ring(self, q: np.ndarray) -> np.ndarray:
        """Signed int64 -> two's complement in Z_{2^total_bits} as uint64."""
        out = q.astype(np.uint64)  # wraps modulo 2^64, i.e. two's complement
        if self.total_bits < 64:
            out &= np.uint64(self.modulus - 1)
        return out

    def from_ring(self, r: np.ndarray, n_summed: int) -> np.ndarray:
        """Ring elements (a sum of ``n_summed`` clients' values) -> signed int64, refusing more than declared."""
        if n_summed > self.max_clients:
            raise HeadroomError(f"a sum of {n_summed} clients exceeds the declared max_clients {self.max_clients}")
        r = np.asarray(r).astype(np.uint64)
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


def weighted_vector(vector: np.ndarray, weight: float, max_weight: float) -> np.ndarray:
    """``[w' * x, w']`` in float64 with ``w' = weight / max_weight`` (validated: finite, 0 < weight <= max_weight)."""
    if not (math.isfinite(weight) and weight > 0):
        raise MessageError(f"weight must be positive and finite, got {weight}")
    if not (math.isfinite(max_weight) and max_weight > 0):
        raise ConfigError(f"max_weight must be positive and finite, got {max_weight}")
    if weight > max_weight * (1 + 1e-12):
        raise ConfigError(f"weight {weight} exceeds the declared max_weight {max_weight}")
    x = np.asarray(vector, dtype=np.float64)
    if x.ndim != 1:
        raise MessageError(f"update must be a flat vector, got shape {x.shape}")
    check_finite(x, "update")
    w = weight / max_weight
    out = np.empty(x.size + 1, dtype=np.float64)
    np.multiply(x, w, out=out[:-1])
    out[-1] = w
    return out


def split_weighted(total: np.ndarray, max_weight: float) -> tuple[np.ndarray, float]:
    """From the sum of weighted vectors: (weighted mean, total weight in the caller's units)."""
    total = np.asarray(total, dtype=np.float64)
    weight = float(total[-1])
    if not weight > 0:
        raise MessageError("aggregate weight is not positive: nothing to average")
    return total[:-1] / weight, weight * max_weight


def weighted_mean_error_bound(sum_error: float, total_weight_normalized: float, clip: float) -> float:
    """Bound on |mean - exact mean| when every coordinate of the weighted sum (and the weight slot) is off by at
    most ``sum_error``: |e_S| + |mean| |e_W| over W - |e_W|, with |mean| <= clip."""
    denominator = total_weight_normalized - sum_error
    if denominator <= 0:
        return math.inf
    return sum_error * (1.0 + clip) / denominator
