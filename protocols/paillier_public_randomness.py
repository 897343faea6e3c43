"""Paillier encryption randomness r^n mod n^2 from public parameters only, by fixed-base exponentiation.

Threat model: clients of threshold Paillier hold no factors of n, so they cannot use the CRT shortcut of
:mod:`protocols.paillier_keys`; the textbook r^n costs a full |n|-bit exponentiation modulo n^2. Here the dealer
publishes h = -y^2 mod n of order λ(n) = 2p'q' (it checks the order while it still knows p', q'), so that h generates
J_n, the elements of Jacobi symbol +1, a subgroup of index 2 of Z*_n. Any u with Jacobi symbol -1 generates the other
coset. For a uniform bit b and x uniform in [0, 2^(|n| + 128)), r = u^b h^x is within statistical distance 2^-128 of
uniform on Z*_n (x mod λ is that close to uniform), so r^n = U^b H^x, with U = u^n and H = h^n mod n^2, has the
distribution of textbook Paillier randomness: no short-exponent or other extra assumption, only the dealer's honesty
about h's order (the dealer is trusted at setup anyway; clients check that h has Jacobi symbol +1 and is not ±1).
H^x is computed with a table of H^(d 2^(w i)) (w = 6), built once per key from public values (shared by every
client of a process; never secret), then about 363 multiplications modulo n^2 instead of ~2,300 for a powmod.
x and b come from ``secrets`` (the OS).
"""

from __future__ import annotations

import secrets
import threading

import gmpy2

from .errors import ConfigError

__all__ = ["FixedBaseResidues", "STAT_BITS", "WINDOW_BITS"]

STAT_BITS = 128
WINDOW_BITS = 6
_TABLES: dict[tuple[int, int], list[list]] = {}  # public tables by key, the most recent _MAX_TABLES kept
_MAX_TABLES = 4
_LOCK = threading.Lock()


class FixedBaseResidues:
    """Uniform n-th residues r^n mod n^2 from the public n and the dealer's generator h of J_n."""

    def __init__(self, n: int, h: int) -> None:
        n, h = gmpy2.mpz(n), gmpy2.mpz(h)
        if not 1 < h < n - 1 or gmpy2.jacobi(h, n) != 1 or gmpy2.gcd(h, n) != 1:
            raise ConfigError("the dealer's residue base h is not an element of J_n other than ±1")
        self.n, self.n_square = n, n * n
        self.exponent_bits = int(n.bit_length()) + STAT_BITS
        u = gmpy2.mpz(2)
        while gmpy2.jacobi(u, n) != -1:  # the smallest u of Jacobi symbol -1 (public, deterministic)
            u += 1
        self.u_n = gmpy2.powmod(u, n, self.n_square)
        self.h_n = gmpy2.powmod(h, n, self.n_square)

    def _table(self) -> list[list]:
        key = (int(self.n), int(self.h_n))
        with _LOCK:
            table = _TABLES.get(key)
            if table is None:
                while len(_TABLES) >= _MAX_TABLES:  # a few MB each: keep the memory of a long test session bounded
                    _TABLES.pop(next(iter(_TABLES)))
                table = _TABLES[key] = self._build()
        return table

    def _build(self) -> list[list]:
        n2, size = self.n_square, 1 << WINDOW_BITS
        table, base = [], self.h_n
        for _ in range((self.exponent_bits + WINDOW_BITS - 1) // WINDOW_BITS):
            row, acc = [gmpy2.mpz(1)] * size, gmpy2.mpz(1)
            for d in range(1, size):
                acc = acc * base % n2
                row[d] = acc
            table.append(row)
            base = acc * base % n2  # H^(2^(w (i+1)))
        return table

    def power(self, x: int):
        """H^x mod n^2 for 0 <= x < 2^exponent_bits, from the table."""
        if not 0 <= x < (1 << self.exponent_bits):
            raise ConfigError("exponent out of range")
        table, n2, mask = self._table(), self.n_square, (1 << WINDOW_BITS) - 1
        acc, i = gmpy2.mpz(1), 0
        while x:
            d = x & mask
            if d:
                acc = acc * table[i][d] % n2
            x >>= WINDOW_BITS
            i += 1
        return acc

    def sample(self):
        """One r^n = U^b H^x for a uniform bit b and x uniform in [0, 2^(|n| + 128))."""
        value = self.power(secrets.randbits(self.exponent_bits))
        return value * self.u_n % self.n_square if secrets.randbits(1) else value
