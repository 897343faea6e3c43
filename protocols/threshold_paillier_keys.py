"""Threshold Paillier (Shoup 2000, as generalised by Damgård–Jurik 2001 with s = 1): dealing, partial decryption,
proofs of correct partial decryption and Lagrange combination in the exponent.

Threat model: the key authority (dealer) is trusted **during dealing only**: it draws n = p q from safe primes
p = 2p' + 1, q = 2q' + 1 (m = p' q'), picks the decryption exponent d with d = 0 mod m and d = 1 mod n, shares it
with a Shamir polynomial of degree T - 1 over Z_{n m}, gives share s_i to key holder i and publishes n, a random
square v of Z*_{n^2} and the verification keys v_i = v^(Δ s_i) (Δ = L! for L key holders). It then forgets p, q, m,
d and the polynomial; each share stays with the authority only until it is delivered (:meth:`pop_share`), so after
delivery it keeps **no copy** of any secret (a real dealer must also erase its memory and its random source; that
is outside what Python can prove). Fewer than T key holders learn nothing about d (Shamir over Z_{n m}, statistical
hiding since the coefficients are uniform in Z_{n m}) and cannot decrypt; any T of them decrypt a ciphertext that
the server shows them. A partial decryption c_i = c^(2Δ s_i) carries a non-interactive proof (Fiat–Shamir, SHA-256)
that log_{C^4}(C_i^2) = log_v(v_i), for C a random linear combination (128-bit coefficients drawn from a hash of all
ciphertexts and partials) of the ciphertexts: a holder that sends a wrong partial for any ciphertext is caught except
with probability about 2^-128 and is dropped. Limits: the dealer is a single point of trust at setup (a dealer-free
distributed key generation is not implemented, see SECURITY.md); T colluding key holders (with the server, who holds
the ciphertexts) decrypt any individual update; the proofs show the partials are correct, not that the key holders
decrypt only the sum (they check the contributor count, as in the shared-key mode).

Randomness: primes, polynomial coefficients, v and proof nonces come from ``secrets`` (the OS).
"""

from __future__ import annotations

import hashlib
import math
import secrets
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterable, Mapping, Sequence

import gmpy2

from .errors import ConfigError, DecryptionError, MessageError
from .keyauthority import key_id_of

__all__ = ["ThresholdPublic", "KeyShare", "DealtKey", "safe_prime", "deal", "partial_decrypt", "prove",
           "verify", "combine", "lagrange_times_delta", "proof_bytes", "HASH_BITS", "STAT_BITS"]

HASH_BITS = 256      # Fiat–Shamir challenge length
STAT_BITS = 128      # statistical hiding of the proof's response; also the batch coefficients' length
_TAG = b"privfed/paillier-threshold/v1"


def safe_prime(bits: int) -> int:
    """A ``bits``-bit safe prime p = 2p' + 1 (p' prime): a random odd start from the OS, then the first candidate
    of a sieved window of 4096 (p' and p free of primes below 2^16) passing Fermat and 40 Miller–Rabin rounds
    for both p' and p (an incremental search, as OpenSSL's)."""
    if bits < 64:
        raise ConfigError("safe primes need at least 64 bits (the sieve would reject smaller primes themselves)")
    window = 4096
    while True:
        base = gmpy2.mpz(secrets.randbits(bits - 1)) | (1 << (bits - 2)) | 1
        composite = bytearray(window)
        for r in _sieve_primes():
            b, inv2 = int(base % r), (r + 1) // 2
            for start in ((-b * inv2) % r, ((-inv2 - b) * inv2) % r):  # p' = 0 mod r, or p = 2p' + 1 = 0 mod r
                composite[start::r] = b"\x01" * len(range(start, window, r))
        for k in range(window):
            if composite[k]:
                continue
            half = base + 2 * k
            p = 2 * half + 1
            if half.bit_length() != bits - 1 or gmpy2.powmod(2, p - 1, p) != 1:
                continue
            if gmpy2.is_prime(half, 40) and gmpy2.is_prime(p, 40):
                return int(p)


_SIEVE: list[int] = []


def _sieve_primes() -> list[int]:
    if not _SIEVE:
        _SIEVE.extend(r for r in range(3, 1 << 16, 2) if gmpy2.is_prime(r))
    return _SIEVE


@dataclass(frozen=True)
class ThresholdPublic:
    """The public side of a dealt key: modulus, threshold, key holders (client ids, share index = position + 1),
    the verification base v, the verification keys, and h, a generator of J_n for fast public encryption
    randomness (:mod:`protocols.paillier_public_randomness`)."""

    n: int
    threshold: int
    holders: tuple[int, ...]
    v: int
    verification_keys: tuple[int, ...]
    h: int

    def __post_init__(self) -> None:
        if len(self.holders) != len(self.verification_keys) or len(set(self.holders)) != len(self.holders):
            raise ConfigError("one verification key per distinct key holder")
        if not 1 <= self.threshold <= len(self.holders):
            raise ConfigError(f"threshold {self.threshold} must be in 1..{len(self.holders)} key holders")

    @property
    def n_square(self) -> int:
        return self.n * self.n

    @property
    def delta(self) -> int:
        return math.factorial(len(self.holders))

    def index_of(self, client_id: int) -> int:
        """The Shamir index (1-based) of a key holder; MessageError for a client that holds no share."""
        try:
            return self.holders.index(client_id) + 1
        except ValueError:
            raise MessageError(f"client {client_id} holds no key share") from None

    def to_bytes(self) -> bytes:
        width = (self.n_square.bit_length() + 7) // 8
        parts = [_TAG, _int(self.n), _int(self.threshold), _int(len(self.holders)),
                 *(_int(h) for h in self.holders), _int(self.v, width),
                 *(_int(k, width) for k in self.verification_keys), _int(self.h, width)]
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, material: bytes) -> "ThresholdPublic":
        if not material.startswith(_TAG):
            raise ConfigError("not threshold Paillier public material")
        reader = _Reader(material[len(_TAG):])
        n, threshold, count = reader.int(), reader.int(), reader.int()
        holders = tuple(reader.int() for _ in range(count))
        v = reader.int()
        keys = tuple(reader.int() for _ in range(count))
        h = reader.int()
        reader.end()
        return cls(n, threshold, holders, v, keys, h)

    @property
    def key_id(self) -> bytes:
        return key_id_of(self.to_bytes())


@dataclass(frozen=True, repr=False)
class KeyShare:
    """One key holder's secret: its share s_i of d (and the public side it belongs to)."""

    public: ThresholdPublic
    client_id: int
    share: int

    def __repr__(self) -> str:  # never print the share
        return f"KeyShare(client={self.client_id}, key_id={self.public.key_id.hex()[:16]}...)"

    @property
    def index(self) -> int:
        return self.public.index_of(self.client_id)


@dataclass(frozen=True, repr=False)
class DealtKey:
    """What :func:`deal` returns: the public side and every holder's share (the caller delivers, then drops them)."""

    public: ThresholdPublic
    shares: Mapping[int, KeyShare]


def deal(p: int, q: int, holders: Sequence[int], threshold: int) -> DealtKey:
    """Share the decryption exponent of n = p q (p, q safe primes) among ``holders`` with threshold ``threshold``.

    Pure given its inputs except for the random polynomial and v (from the OS); the caller owns p and q."""
    holders = tuple(int(h) for h in holders)
    if not 1 <= threshold <= len(holders):
        raise ConfigError(f"threshold {threshold} must be in 1..{len(holders)} key holders")
    p_, q_ = (p - 1) // 2, (q - 1) // 2
    if p == q or not all(gmpy2.is_prime(x, 40) for x in (p, q, p_, q_)):
        raise ConfigError("threshold Paillier needs two distinct safe primes")
    n, m = p * q, p_ * q_
    nm = n * m
    d = m * int(gmpy2.invert(m, n)) % nm  # d = 0 mod m, d = 1 mod n
    coefficients = [d] + [secrets.randbelow(nm) for _ in range(threshold - 1)]
    n2 = n * n
    v = pow(_unit(n2), 2, n2)
    delta = math.factorial(len(holders))
    shares_raw = [_poly(coefficients, i + 1, nm) for i in range(len(holders))]
    keys = tuple(int(gmpy2.powmod(v, delta * s, n2)) for s in shares_raw)
    public = ThresholdPublic(n, threshold, holders, v, keys, _generator_of_jn(n, p_, q_))
    shares = {h: KeyShare(public, h, s) for h, s in zip(holders, shares_raw)}
    del coefficients, d, shares_raw
    return DealtKey(public, shares)


def partial_decrypt(share: KeyShare, ciphertexts: Sequence[int]) -> list[int]:
    """c_j^(2Δ s_i) mod n^2 for every ciphertext."""
    pub = share.public
    exponent = 2 * pub.delta * share.share
    n2 = gmpy2.mpz(pub.n_square)
    return [int(gmpy2.powmod(c, exponent, n2)) for c in ciphertexts]


def proof_bytes(public: ThresholdPublic) -> int:
    """Length of a serialised proof: challenge e (HASH_BITS) then response z (fixed width)."""
    return HASH_BITS // 8 + _z_bytes(public)


def prove(share: KeyShare, ciphertexts: Sequence[int], partials: Sequence[int], context: bytes) -> bytes:
    """A non-interactive proof that every partial is c_j^(2Δ s_i) for this holder's verification key."""
    pub = share.public
    n2 = gmpy2.mpz(pub.n_square)
    g1, h1 = _batched(pub, ciphertexts, partials, share.index, context)
    x = pub.delta * share.share
    r = secrets.randbits(_z_bytes(pub) * 8 - HASH_BITS - 8)
    a, b = gmpy2.powmod(g1, r, n2), gmpy2.powmod(pub.v, r, n2)
    e = _challenge(pub, share.index, context, g1, h1, a, b)
    z = r + e * x
    return e.to_bytes(HASH_BITS // 8, "big") + int(z).to_bytes(_z_bytes(pub), "big")


def verify(public: ThresholdPublic, index: int, ciphertexts: Sequence[int], partials: Sequence[int],
           proof: bytes, context: bytes) -> None:
    """Raise MessageError unless ``proof`` shows holder ``index``'s partials are correct for ``ciphertexts``."""
    n2 = gmpy2.mpz(public.n_square)
    if len(partials) != len(ciphertexts) or len(proof) != proof_bytes(public):
        raise MessageError("partial decryption has the wrong length")
    for value in (*ciphertexts, *partials):
        if not 0 < value < n2 or gmpy2.gcd(value, public.n) != 1:
            raise MessageError("a partial decryption is not a unit of Z_{n^2}")
    e = int.from_bytes(proof[:HASH_BITS // 8], "big")
    z = int.from_bytes(proof[HASH_BITS // 8:], "big")
    g1, h1 = _batched(public, ciphertexts, partials, index, context)
    vk = public.verification_keys[index - 1]
    a = gmpy2.powmod(g1, z, n2) * gmpy2.powmod(h1, -e, n2) % n2
    b = gmpy2.powmod(public.v, z, n2) * gmpy2.powmod(vk, -e, n2) % n2
    if _challenge(public, index, context, g1, h1, a, b) != e:
        raise MessageError(f"key holder {public.holders[index - 1]}'s partial decryption fails its proof")


def lagrange_times_delta(indices: Iterable[int], delta: int) -> dict[int, int]:
    """Δ times the Lagrange coefficients at 0 for the 1-based ``indices`` (integers, as in Shoup's scheme)."""
    indices = sorted(set(indices))
    out = {}
    for j in indices:
        value = Fraction(delta)
        for k in indices:
            if k != j:
                value *= Fraction(k, k - j)
        if value.denominator != 1:
            raise ConfigError("Δ does not clear the Lagrange denominators")
        out[j] = int(value)
    return out


def combine(public: ThresholdPublic, partials: Mapping[int, Sequence[int]]) -> list[int]:
    """Plaintexts from the partials of at least T distinct holders (1-based index -> partials); opaque errors."""
    if len(partials) < public.threshold:
        raise DecryptionError("decryption failed")
    chosen = sorted(partials)[:public.threshold]
    lam = lagrange_times_delta(chosen, public.delta)
    n, n2 = gmpy2.mpz(public.n), gmpy2.mpz(public.n_square)
    scale = gmpy2.invert(4 * public.delta * public.delta, n)
    lengths = {len(partials[i]) for i in chosen}
    if len(lengths) != 1:
        raise DecryptionError("decryption failed")
    out = []
    for j in range(lengths.pop()):
        acc = gmpy2.mpz(1)
        for i in chosen:
            try:
                acc = acc * gmpy2.powmod(partials[i][j], 2 * lam[i], n2) % n2
            except ZeroDivisionError:
                raise DecryptionError("decryption failed") from None
        if acc % n != 1:
            raise DecryptionError("decryption failed")
        out.append(int((acc - 1) // n * scale % n))
    return out


# -- internals ---------------------------------------------------------------------------------------------------

def _z_bytes(public: ThresholdPublic) -> int:
    # z = r + e x with x = Δ s < Δ n^2 and r < 2^(|Δ n^2| + HASH_BITS + STAT_BITS): one spare byte for the carry
    return (int(public.delta * public.n_square).bit_length() + HASH_BITS + STAT_BITS) // 8 + 2


def _batched(pub: ThresholdPublic, ciphertexts: Sequence[int], partials: Sequence[int], index: int,
             context: bytes) -> tuple:
    """(C^4, C_i^2) for C = prod c_j^rho_j, C_i = prod c_ij^rho_j, rho_j 128-bit from a hash of everything."""
    n2 = gmpy2.mpz(pub.n_square)
    width = (pub.n_square.bit_length() + 7) // 8
    digest = hashlib.sha256(_TAG + b"/batch" + pub.key_id + context + index.to_bytes(4, "big"))
    for value in (*ciphertexts, *partials):
        digest.update(int(value).to_bytes(width, "big"))
    stream = hashlib.shake_256(digest.digest()).digest(len(ciphertexts) * STAT_BITS // 8)
    c_acc, p_acc = gmpy2.mpz(1), gmpy2.mpz(1)
    for j, (c, cp) in enumerate(zip(ciphertexts, partials)):
        rho = int.from_bytes(stream[j * STAT_BITS // 8:(j + 1) * STAT_BITS // 8], "big") | 1
        c_acc = c_acc * gmpy2.powmod(c, rho, n2) % n2
        p_acc = p_acc * gmpy2.powmod(cp, rho, n2) % n2
    return gmpy2.powmod(c_acc, 4, n2), gmpy2.powmod(p_acc, 2, n2)


def _challenge(pub: ThresholdPublic, index: int, context: bytes, *values) -> int:
    width = (pub.n_square.bit_length() + 7) // 8
    digest = hashlib.sha256(_TAG + b"/dleq" + pub.key_id + context + index.to_bytes(4, "big"))
    for value in (pub.v, pub.verification_keys[index - 1], *values):
        digest.update(int(value).to_bytes(width, "big"))
    return int.from_bytes(digest.digest(), "big")


def _generator_of_jn(n: int, p_: int, q_: int) -> int:
    """h = -y^2 mod n of order λ(n) = 2 p' q' (so <h> = J_n): checked with the factors of λ."""
    lam = 2 * p_ * q_
    while True:
        h = (-pow(_unit(n), 2, n)) % n
        if all(pow(h, lam // r, n) != 1 for r in (2, p_, q_)):
            return h


def _poly(coefficients: list[int], x: int, modulus: int) -> int:
    acc = 0
    for a in reversed(coefficients):
        acc = (acc * x + a) % modulus
    return acc


def _unit(modulus: int) -> int:
    while True:
        value = secrets.randbelow(modulus)
        if value and math.gcd(value, modulus) == 1:
            return value


def _int(value: int, width: int | None = None) -> bytes:
    width = width or max(1, (int(value).bit_length() + 7) // 8)
    return width.to_bytes(4, "big") + int(value).to_bytes(width, "big")


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def int(self) -> int:
        if self.pos + 4 > len(self.data):
            raise ConfigError("truncated threshold Paillier public material")
        width = int.from_bytes(self.data[self.pos:self.pos + 4], "big")
        end = self.pos + 4 + width
        if width == 0 or end > len(self.data):
            raise ConfigError("truncated threshold Paillier public material")
        value = int.from_bytes(self.data[self.pos + 4:end], "big")
        self.pos = end
        return value

    def end(self) -> None:
        if self.pos != len(self.data):
            raise ConfigError("trailing bytes in threshold Paillier public material")
