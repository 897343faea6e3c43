"""Shamir t-of-n secret sharing over the prime field GF(p), p = 2^521 - 1, for 128- to 512-bit secrets.

Threat model: information-theoretic secrecy against any coalition of at most t - 1 share holders, whatever their
computing power: for every candidate secret there is exactly one polynomial of degree t - 1 through it and the
coalition's shares, so those shares are uniform and independent of the secret. Any t shares determine it.
Shamir sharing gives **no integrity**: a corrupted share interpolates to a different value. Callers that need
integrity check what they reconstruct (SecAgg compares a reconstructed private key with its advertised public key
and a self-mask seed with its commitment) or pass redundant shares with ``verify=True``. Polynomial coefficients
come from :mod:`secrets` (the operating system). Every share carries its threshold, and reconstructing from fewer
than ``t`` distinct shares raises :class:`InsufficientSharesError` — never a wrong value. ``repr`` of a share
never shows its value, so shares do not leak into logs or exception texts.

The field: p = 2^521 - 1 is a Mersenne prime, so every 512-bit secret (and every 128/256-bit key or seed) embeds
without reduction. A share is ``x`` (1 .. 2^32 - 1, the holder's public evaluation point), ``threshold`` and a
66-byte value; :meth:`Share.to_bytes` is the 72-byte wire form.
"""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from .errors import MessageError, ProtocolAbort

__all__ = [
    "PRIME",
    "SHARE_BYTES",
    "Share",
    "InsufficientSharesError",
    "InconsistentSharesError",
    "split",
    "split_with_coefficients",
    "reconstruct",
    "reconstruct_secret",
    "lagrange_coefficients_at_zero",
]

PRIME = (1 << 521) - 1
VALUE_BYTES = 66
SHARE_BYTES = 4 + 2 + VALUE_BYTES
MAX_SECRET_BYTES = 64
MAX_X = (1 << 32) - 1
MAX_THRESHOLD = (1 << 16) - 1


class InsufficientSharesError(ProtocolAbort):
    """Fewer distinct shares than the threshold: the secret is undetermined, so nothing is returned."""


class InconsistentSharesError(ProtocolAbort):
    """Shares disagree (different thresholds, or redundant shares off the polynomial): at least one is corrupt."""


@dataclass(frozen=True)
class Share:
    """One point (x, f(x)) of a degree-(threshold - 1) polynomial over GF(PRIME). ``repr`` hides the value."""

    x: int
    value: int = field(repr=False)
    threshold: int

    def __post_init__(self) -> None:
        if not (isinstance(self.x, int) and 1 <= self.x <= MAX_X):
            raise MessageError("share x-coordinate out of range")
        if not (isinstance(self.threshold, int) and 1 <= self.threshold <= MAX_THRESHOLD):
            raise MessageError("share threshold out of range")
        if not (isinstance(self.value, int) and 0 <= self.value < PRIME):
            raise MessageError("share value is not a field element")

    def to_bytes(self) -> bytes:
        return struct.pack("<IH", self.x, self.threshold) + self.value.to_bytes(VALUE_BYTES, "big")

    @classmethod
    def from_bytes(cls, data: bytes) -> "Share":
        if not isinstance(data, (bytes, bytearray)) or len(data) != SHARE_BYTES:
            raise MessageError(f"a share is {SHARE_BYTES} bytes")
        x, threshold = struct.unpack("<IH", bytes(data[:6]))
        return cls(x, int.from_bytes(bytes(data[6:]), "big"), threshold)


def _secret_to_int(secret: bytes) -> int:
    if not isinstance(secret, (bytes, bytearray)) or not 1 <= len(secret) <= MAX_SECRET_BYTES:
        raise MessageError(f"a secret is 1..{MAX_SECRET_BYTES} bytes")
    return int.from_bytes(bytes(secret), "big")


def _check_points(xs: Sequence[int], threshold: int, *, enough: bool = True) -> None:
    if not (isinstance(threshold, int) and 1 <= threshold <= MAX_THRESHOLD):
        raise MessageError("threshold out of range")
    if len(set(xs)) != len(xs):
        raise MessageError("evaluation points must be distinct")
    if enough and len(xs) < threshold:
        raise MessageError(f"{len(xs)} holders cannot meet threshold {threshold}")
    for x in xs:
        if not (isinstance(x, int) and 1 <= x <= MAX_X):
            raise MessageError("evaluation point out of range (x = 0 would be the secret)")


def split_with_coefficients(secret: int, coefficients: Sequence[int], xs: Sequence[int]) -> list[Share]:
    """Raw (hazardous) sharing with caller-chosen coefficients a_1..a_{t-1}: f(x) = secret + sum a_i x^i.

    Only for known-answer vectors and proofs in tests; :func:`split` draws the coefficients from the OS.
    """
    threshold = len(coefficients) + 1
    _check_points(xs, threshold, enough=False)
    if not 0 <= secret < PRIME or any(not 0 <= a < PRIME for a in coefficients):
        raise MessageError("secret and coefficients must be field elements")
    poly = [secret, *coefficients]
    shares = []
    for x in xs:
        acc = 0
        for a in reversed(poly):  # Horner
            acc = (acc * x + a) % PRIME
        shares.append(Share(x, acc, threshold))
    return shares


def split(secret: bytes, threshold: int, xs: Sequence[int]) -> list[Share]:
    """Share ``secret`` (1..64 bytes) among the holders at points ``xs`` so that any ``threshold`` recover it."""
    value = _secret_to_int(secret)
    _check_points(xs, threshold)
    coefficients = [secrets.randbelow(PRIME) for _ in range(threshold - 1)]
    return split_with_coefficients(value, coefficients, xs)


def lagrange_coefficients_at_zero(xs: Sequence[int]) -> list[int]:
    """lambda_i with f(0) = sum lambda_i f(x_i) for any polynomial of degree < len(xs).

    lambda_i = prod_{j != i} x_j / (x_j - x_i) = P / (x_i * prod_{j != i} (x_j - x_i)) with P = prod_j x_j. The
    denominators are exact integer products of small factors (reduced once), inverted together with Montgomery's
    trick: one modular inversion per call instead of one per point.
    """
    k = len(xs)
    if k == 0:
        return []
    total = 1
    for x in xs:
        total = total * x % PRIME
    dens = []
    for i, xi in enumerate(xs):
        d = xi
        for j, xj in enumerate(xs):
            if j != i:
                d *= xj - xi
        d %= PRIME
        if d == 0:
            raise MessageError("evaluation points must be distinct and non-zero")
        dens.append(d)
    prefix = [1] * (k + 1)
    for i, d in enumerate(dens):
        prefix[i + 1] = prefix[i] * d % PRIME
    inverse = pow(prefix[k], -1, PRIME)
    out = [0] * k
    for i in range(k - 1, -1, -1):
        out[i] = total * inverse % PRIME * prefix[i] % PRIME  # total / dens[i]
        inverse = inverse * dens[i] % PRIME
    return out


def _interpolate_at(points: Sequence[Share], x: int) -> int:
    total = 0
    for i, pi in enumerate(points):
        num, den = 1, 1
        for j, pj in enumerate(points):
            if j != i:
                num = num * (x - pj.x) % PRIME
                den = den * (pi.x - pj.x) % PRIME
        total = (total + pi.value * num * pow(den, -1, PRIME)) % PRIME
    return total


def reconstruct(shares: Iterable[Share], *, verify: bool = False) -> int:
    """The shared field element. Raises InsufficientSharesError with fewer than t distinct points and
    InconsistentSharesError when shares disagree (thresholds, duplicate points with different values, or — with
    ``verify`` — a redundant share off the polynomial)."""
    by_x: dict[int, Share] = {}
    thresholds = set()
    for share in shares:
        if not isinstance(share, Share):
            raise MessageError("not a Share")
        thresholds.add(share.threshold)
        seen = by_x.get(share.x)
        if seen is not None and seen.value != share.value:
            raise InconsistentSharesError("two different shares for the same point")
        by_x[share.x] = share
    if len(thresholds) > 1:
        raise InconsistentSharesError("shares of different thresholds")
    if not by_x:
        raise InsufficientSharesError("no shares")
    (threshold,) = thresholds
    if len(by_x) < threshold:
        raise InsufficientSharesError(f"{len(by_x)} shares, threshold {threshold}: the secret is undetermined")
    points = [by_x[x] for x in sorted(by_x)]
    basis, extra = points[:threshold], points[threshold:]
    lambdas = lagrange_coefficients_at_zero([p.x for p in basis])
    secret = sum(lam * p.value for lam, p in zip(lambdas, basis)) % PRIME
    if verify and extra:
        for p in extra:
            if _interpolate_at(basis, p.x) != p.value:
                raise InconsistentSharesError("a redundant share is off the polynomial: a share is corrupt")
    return secret


def reconstruct_secret(shares: Iterable[Share], length: int, *, verify: bool = False) -> bytes:
    """The shared ``length``-byte secret; a value that does not fit ``length`` bytes proves corruption and raises."""
    value = reconstruct(shares, verify=verify)
    if value >= 1 << (8 * length):
        raise InconsistentSharesError("reconstructed value does not fit the secret length: a share is corrupt")
    return value.to_bytes(length, "big")
