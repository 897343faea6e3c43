"""Private set intersection (PSI) for entity alignment: Diffie-Hellman PSI on P-256 with RFC 9380 hash-to-curve.

Threat model: two *honest-but-curious* parties A and B hold sets of entity ids X and Y. Both learn X ∩ Y and the
other's set size |Y| (|X|), nothing else about the other's ids, under the decisional Diffie-Hellman assumption on
P-256 with the hash-to-curve modelled as a random oracle (Huberman, Franklin, Hogg 1999; Meadows 1986). The
construction: A sends {a·H(x)}; B returns {b·(a·H(x))} in A's order and {b·H(y)}; A returns {a·(b·H(y))} in B's
order; each party matches the doubly-masked values against the other list and so learns which of *its own* ids are
shared. Masked lists are sent sorted by value (a uniformly random order, as the values are pseudo-random).

Limits, stated plainly: a *malicious* party can put arbitrary ids in its set (input substitution, no PSI prevents
it) or lie in its re-masked list (the other side then learns a wrong intersection: privfed's vertical session
catches this with an alignment digest both sides must agree on before training, so it cannot train on misaligned
rows, but it cannot prove who cheated). Set sizes are revealed. The pure-Python field arithmetic of the hash-to-curve
is not constant-time: a co-located observer timing it could learn about a party's *own* ids. Scalars are fresh P-256
private keys from the OS generator via ``cryptography``, one per session, never reused; scalar multiplication is
``cryptography``'s ECDH (which validates every received point is on the curve).

Why not the ``openmined.psi`` package: its wheels pin ``protobuf==6.30.2`` exactly, which conflicts with Flower's
gRPC stack (``protobuf>=6.33.5``) in privfed's ``flower`` extra; the two cannot be installed together.

Hash-to-curve is RFC 9380's ``P256_XMD:SHA-256_SSWU_RO_`` suite (expand_message_xmd, simplified SWU, two field
elements added), checked against the RFC's known-answer vectors (``tests/vectors/h2c_p256_kat.json``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from cryptography.hazmat.primitives.asymmetric import ec

from .errors import ConfigError, MessageError

__all__ = ["DST", "ELEMENT_BYTES", "expand_message_xmd", "hash_to_field", "hash_to_curve", "PSIParty", "hashed_points",
           "MAX_SET_SIZE"]

#: this suite's domain separation tag (RFC 9380 section 3.1: application, version, suite)
DST = b"privfed-psi-v1-P256_XMD:SHA-256_SSWU_RO_"
ELEMENT_BYTES = 32  # one masked element: the x-coordinate of a P-256 point
MAX_SET_SIZE = 2_000_000

# P-256 (SEC 2 / FIPS 186-4) and the RFC 9380 section 8.2 SSWU constant Z = -10
_P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
_A = _P - 3
_B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
_Z = _P - 10
_L = 48  # ceil((ceil(log2(p)) + k) / 8) with k = 128
_CURVE = ec.SECP256R1()
_MINUS_B_OVER_A = (-_B * pow(_A, _P - 2, _P)) % _P
_B_OVER_ZA = _B * pow(_Z * _A % _P, _P - 2, _P) % _P


def expand_message_xmd(msg: bytes, dst: bytes, length: int) -> bytes:
    """RFC 9380 section 5.3.1 with SHA-256."""
    if len(dst) > 255 or length > 255 * 32 or length < 1:
        raise ConfigError("expand_message_xmd: DST longer than 255 bytes or bad output length")
    dst_prime = dst + bytes([len(dst)])
    b0 = hashlib.sha256(bytes(64) + msg + length.to_bytes(2, "big") + b"\x00" + dst_prime).digest()
    blocks = [hashlib.sha256(b0 + b"\x01" + dst_prime).digest()]
    for i in range(2, -(-length // 32) + 1):
        mixed = bytes(x ^ y for x, y in zip(b0, blocks[-1]))
        blocks.append(hashlib.sha256(mixed + bytes([i]) + dst_prime).digest())
    return b"".join(blocks)[:length]


def hash_to_field(msg: bytes, count: int = 2, dst: bytes = DST) -> list[int]:
    """RFC 9380 section 5.2: ``count`` elements of GF(p)."""
    raw = expand_message_xmd(msg, dst, count * _L)
    return [int.from_bytes(raw[i * _L:(i + 1) * _L], "big") % _P for i in range(count)]


def _sqrt(a: int) -> int:
    return pow(a, (_P + 1) // 4, _P)  # p = 3 mod 4


def _is_square(a: int) -> bool:
    return pow(a, (_P - 1) // 2, _P) in (0, 1)


def _map_to_curve_sswu(u: int) -> tuple[int, int]:
    """RFC 9380 section 6.6.2, the straightforward form (A != 0, B != 0 for P-256)."""
    tv = (_Z * _Z * pow(u, 4, _P) + _Z * u * u) % _P
    tv1 = pow(tv, _P - 2, _P)  # inv0: 0 maps to 0
    x1 = _MINUS_B_OVER_A * (1 + tv1) % _P if tv1 else _B_OVER_ZA
    gx1 = (pow(x1, 3, _P) + _A * x1 + _B) % _P
    if _is_square(gx1):
        x, y = x1, _sqrt(gx1)
    else:
        x = _Z * u * u % _P * x1 % _P
        y = _sqrt((pow(x, 3, _P) + _A * x + _B) % _P)
    if u % 2 != y % 2:
        y = _P - y
    return x, y


def _add(p1: tuple[int, int], p2: tuple[int, int]) -> tuple[int, int] | None:
    """Affine point addition (None is the identity)."""
    (x1, y1), (x2, y2) = p1, p2
    if x1 == x2:
        if (y1 + y2) % _P == 0:
            return None
        slope = (3 * x1 * x1 + _A) * pow(2 * y1, _P - 2, _P) % _P
    else:
        slope = (y2 - y1) * pow(x2 - x1, _P - 2, _P) % _P
    x3 = (slope * slope - x1 - x2) % _P
    return x3, (slope * (x1 - x3) - y1) % _P


def hash_to_curve(msg: bytes, dst: bytes = DST) -> tuple[int, int]:
    """RFC 9380 ``P256_XMD:SHA-256_SSWU_RO_``: affine (x, y). P-256 has cofactor 1 (no clearing needed)."""
    u0, u1 = hash_to_field(msg, 2, dst)
    point = _add(_map_to_curve_sswu(u0), _map_to_curve_sswu(u1))
    if point is None:  # probability ~2^-256
        raise ConfigError("hash_to_curve reached the identity")
    return point


def hashed_points(ids: Sequence[str]) -> list[bytes]:
    """SEC1-uncompressed hash-to-curve points of the ids (UTF-8)."""
    out = []
    for entity in ids:
        x, y = hash_to_curve(str(entity).encode("utf-8"))
        out.append(b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big"))
    return out


def _multiply(private_key: ec.EllipticCurvePrivateKey, encoded_point: bytes) -> bytes:
    """x-coordinate of k·P through cryptography's ECDH; P given SEC1-encoded (validated on the curve)."""
    try:
        public = ec.EllipticCurvePublicKey.from_encoded_point(_CURVE, encoded_point)
    except ValueError:
        raise MessageError("PSI element is not a point on P-256") from None
    return private_key.exchange(ec.ECDH(), public)


def _as_rows(elements: np.ndarray, what: str) -> list[bytes]:
    if not isinstance(elements, np.ndarray) or elements.dtype != np.uint8 or elements.ndim != 2 \
            or elements.shape[1] != ELEMENT_BYTES:
        raise MessageError(f"{what}: expected a uint8 array of shape (n, {ELEMENT_BYTES})")
    if elements.shape[0] > MAX_SET_SIZE:
        raise MessageError(f"{what}: {elements.shape[0]} elements exceed the limit of {MAX_SET_SIZE}")
    rows = [bytes(r) for r in elements]
    if len(set(rows)) != len(rows):
        raise MessageError(f"{what}: repeated elements (a set was expected)")
    return rows


def _to_array(rows: Sequence[bytes]) -> np.ndarray:
    return np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(len(rows), ELEMENT_BYTES).copy()


@dataclass
class PSIParty:
    """One side of DH-PSI over its own ids. Its scalar is fresh from the OS and never leaves the object."""

    ids: Sequence[str]
    #: the ids' hash-to-curve points, SEC1-uncompressed, when already computed (one party talking to several peers
    #: hashes once, with a fresh scalar per peer); computed here otherwise
    points: Sequence[bytes] | None = field(default=None, repr=False)
    _key: ec.EllipticCurvePrivateKey = field(init=False, repr=False)
    _order: list[str] = field(init=False, repr=False)
    _masked: list[bytes] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        ids = [str(i) for i in self.ids]
        if len(set(ids)) != len(ids):
            raise ConfigError("PSI input has repeated ids")
        if not 1 <= len(ids) <= MAX_SET_SIZE:
            raise ConfigError(f"PSI input must hold 1..{MAX_SET_SIZE} ids, got {len(ids)}")
        self._key = ec.generate_private_key(_CURVE)
        points = hashed_points(ids) if self.points is None else list(self.points)
        if len(points) != len(ids):
            raise ConfigError("one hashed point per id is needed")
        pairs = [(_multiply(self._key, point), entity) for point, entity in zip(points, ids)]
        self.points = None  # not kept: the masked values are what the object needs
        pairs.sort()  # sorted by masked value: a uniformly random order, unlinkable to the ids
        self._masked = [m for m, _ in pairs]
        self._order = [e for _, e in pairs]

    def masked_own(self) -> np.ndarray:
        """{k·H(id)} for this party's ids, as (n, 32) uint8 x-coordinates."""
        return _to_array(self._masked)

    def remask(self, theirs: np.ndarray) -> np.ndarray:
        """k·(their element) for each received element, in the order received."""
        rows = _as_rows(theirs, "masked set")
        return _to_array([_multiply(self._key, b"\x02" + row) for row in rows])

    def intersection(self, own_remasked: np.ndarray, their_remasked: np.ndarray) -> list[str]:
        """This party's ids that the other side also holds, sorted. ``own_remasked`` is the other side's
        :meth:`remask` of :meth:`masked_own` (same order); ``their_remasked`` this party's remask of theirs."""
        mine = _as_rows(own_remasked, "re-masked own set")
        if len(mine) != len(self._order):
            raise MessageError(f"re-masked own set has {len(mine)} elements, expected {len(self._order)}")
        theirs = set(_as_rows(their_remasked, "re-masked set"))
        return sorted(entity for entity, value in zip(self._order, mine) if value in theirs)
