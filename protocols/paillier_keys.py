"""Paillier keys from phe, the key authority that deals them, and the client-side fast encryption.

Threat model: Paillier (IND-CPA under the decisional composite residuosity assumption) hides each ciphertext's
plaintext from anyone without the factorisation of n. The :class:`PaillierAuthority` generates the key pair with
phe (2048-bit n by default, 3072 offered, shorter keys refused unless an explicit test-only flag is set), gives the
server the modulus n only and gives every client the factors (p, q) (see :mod:`protocols.keyauthority` for the
shared-key limits: any one client colluding with the server decrypts everyone). Randomness comes from
``secrets``/CSPRNG only.

Encryption randomness (the ~90% of Paillier's cost): E(m) = (1 + m n) * r^n mod n^2. Because the clients hold
(p, q), :meth:`ClientKeys.nth_residues` computes r^n without a 2048-bit exponent modulo n^2: the n-th residues of
Z*_{n^2} form a group isomorphic (CRT) to H_p x H_q, where H_p = {s^p mod p^2} has order p - 1 and s -> s^n
restricted to H_p is a bijection (gcd(q, p - 1) = 1, checked). So s_p^p mod p^2 and s_q^q mod q^2 for uniform
s_p, s_q, recombined by CRT, give **exactly** the distribution of r^n for uniform r (no short-exponent assumption):
two 1024-bit exponents modulo 2048-bit moduli instead of one 2048-bit exponent modulo a 4096-bit modulus. These are
computed *before* the upload (a pool filled in the setup phase, consumed once, never reused). Decryption uses phe's
``raw_decrypt`` (CRT).
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass

import gmpy2
from phe import paillier

from .errors import ConfigError, DecryptionError
from .keyauthority import KeyAuthority, key_id_of

__all__ = ["PaillierAuthority", "ClientKeys", "PublicKey", "MIN_SECURE_BITS", "check_key_bits"]

MIN_SECURE_BITS = 2048
OFFERED_BITS = (2048, 3072)
_PUBLIC_TAG = b"privfed/paillier-n/v1"


def check_key_bits(key_bits: int, insecure_test_keys: bool) -> None:
    """>= 2048 bits (2048 default, 3072 offered); anything shorter only with the test-only flag."""
    if not isinstance(key_bits, int) or key_bits % 256:
        raise ConfigError(f"key_bits must be a multiple of 256, got {key_bits!r}")
    if key_bits < MIN_SECURE_BITS and not insecure_test_keys:
        raise ConfigError(f"Paillier keys shorter than {MIN_SECURE_BITS} bits are refused (got {key_bits}); "
                          f"use 2048 or 3072")
    if key_bits < 512:
        raise ConfigError("key_bits below 512 cannot hold one packed plaintext")


@dataclass(frozen=True)
class PublicKey:
    """What the server holds: the modulus n (g = n + 1 implied)."""

    n: int

    @classmethod
    def from_material(cls, material: bytes) -> "PublicKey":
        if not material.startswith(_PUBLIC_TAG):
            raise ConfigError("not Paillier public material")
        return cls(int.from_bytes(material[len(_PUBLIC_TAG):], "big"))

    @property
    def n_square(self) -> int:
        return self.n * self.n

    @property
    def ciphertext_bytes(self) -> int:
        return (self.n_square.bit_length() + 7) // 8

    @property
    def key_id(self) -> bytes:
        return key_id_of(public_material(self.n))


def public_material(n: int) -> bytes:
    return _PUBLIC_TAG + n.to_bytes((n.bit_length() + 7) // 8, "big")


class ClientKeys:
    """A client's secret bundle: phe's key pair plus gmpy2 constants for fast encryption."""

    def __init__(self, n: int, p: int, q: int) -> None:
        self.public_key = paillier.PaillierPublicKey(n)
        self.private_key = paillier.PaillierPrivateKey(self.public_key, p, q)
        self.key_id = key_id_of(public_material(n))
        self.n = gmpy2.mpz(n)
        self.n_square = self.n * self.n
        self._p, self._q = gmpy2.mpz(p), gmpy2.mpz(q)
        self._p2, self._q2 = self._p * self._p, self._q * self._q
        if math.gcd(q, p - 1) != 1 or math.gcd(p, q - 1) != 1:
            raise ConfigError("Paillier key with gcd(q, p-1) != 1 or gcd(p, q-1) != 1")
        self._q2_inv = gmpy2.invert(self._q2, self._p2)

    def __repr__(self) -> str:  # never print factors
        return f"ClientKeys(key_id={self.key_id.hex()[:16]}...)"

    def nth_residues(self, count: int) -> list:
        """``count`` independent values r^n mod n^2, r uniform in Z*_{n^2}, via CRT (see module docstring)."""
        out = []
        p, q, p2, q2 = self._p, self._q, self._p2, self._q2
        for _ in range(count):
            sp = _unit_below(p2, p)
            sq = _unit_below(q2, q)
            xp = gmpy2.powmod(sp, p, p2)
            xq = gmpy2.powmod(sq, q, q2)
            out.append(xq + q2 * ((xp - xq) * self._q2_inv % p2))
        return out

    def nth_residue_online(self):
        """One r^n mod n^2 the textbook way (a 2048-bit exponent modulo n^2), for the 'online' variant."""
        return gmpy2.powmod(_unit_below(self.n_square, self.n), self.n, self.n_square)

    def encrypt_raw(self, m: int, rn) -> int:
        """(1 + m n) * r^n mod n^2 for 0 <= m < n and a precomputed r^n."""
        if not 0 <= m < self.n:
            raise ConfigError("plaintext out of range")
        return int((1 + gmpy2.mpz(m) * self.n) * rn % self.n_square)

    def decrypt_raw(self, c: int) -> int:
        """phe's CRT decryption; any failure is one opaque DecryptionError."""
        try:
            if not 0 < c < self.n_square:
                raise ValueError
            return int(self.private_key.raw_decrypt(int(c)))
        except Exception:
            raise DecryptionError("decryption failed") from None


def _unit_below(bound, prime):
    """Uniform element of [1, bound) not divisible by ``prime`` (from the OS)."""
    while True:
        value = gmpy2.mpz(secrets.randbelow(int(bound)))
        if value and value % prime:
            return value


class PaillierAuthority(KeyAuthority[ClientKeys]):
    """Generates one phe key pair (lazily, on first use) and deals it."""

    def __init__(self, key_bits: int = 2048, *, insecure_test_keys: bool = False) -> None:
        check_key_bits(key_bits, insecure_test_keys)
        public, private = paillier.generate_paillier_keypair(n_length=key_bits)
        self.key_bits = key_bits
        self._n, self._p, self._q = public.n, private.p, private.q
        self._public = public_material(public.n)

    def __repr__(self) -> str:
        return f"PaillierAuthority(key_bits={self.key_bits})"

    @property
    def public_material(self) -> bytes:
        return self._public

    def client_bundle(self) -> ClientKeys:
        return ClientKeys(self._n, self._p, self._q)

    def phe_private_key(self) -> paillier.PaillierPrivateKey:
        """phe's own private key object (the dealer's; used by known-answer tests)."""
        return paillier.PaillierPrivateKey(paillier.PaillierPublicKey(self._n), self._p, self._q)
