"""A cryptographically secure random source: AES-256-CTR keyed from the OS or from a derived secret.

Threat model: outputs are computationally indistinguishable from uniform to anyone without the 256-bit key
(standard AES-CTR PRG assumption). :meth:`CSPRNG.from_os` takes its key from ``os.urandom``; :meth:`CSPRNG.from_key`
expands a secret that a protocol derived (for example a pairwise mask seed from X25519 + HKDF). The experiment
seed never reaches this module: keys, masks, Paillier randomness, rounding and DP noise all come from here or from
``secrets``. Engine: a stream whose 16-byte initial counter ends in 00000002 (every :meth:`CSPRNG.from_os` stream, and
:data:`FAST_NONCE`) is produced by OpenSSL's AES-256-GCM over zeros, whose ciphertext is by definition that same
counter-mode keystream (the tag is never computed), because its vectorised path runs about twice as fast as its CTR
mode; such a stream stops at 2^32 - 2 blocks (64 GiB), where GCM's 32-bit counter would wrap and CTR's would carry.
Other initial counters (the NIST test vectors) use CTR mode. Limits: floating-point samplers (``normal``, ``laplace``)
are the textbook transforms of uniform doubles and inherit the known floating-point caveats of DP noise (Mironov 2012);
the integer samplers used for distributed DP live in ``protocols.dp`` and are exact.
"""

from __future__ import annotations

import os

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .errors import ConfigError

__all__ = ["CSPRNG", "FAST_NONCE"]

_TWO_POW_53 = float(1 << 53)
_GCM_START = (2).to_bytes(4, "big")  # GCM's first keystream block is IV || 00000002
_GCM_MAX_BYTES = ((1 << 32) - 2) * 16
#: an initial counter whose keystream the fast engine produces (for keys used once, such as derived sub-streams)
FAST_NONCE = bytes(12) + _GCM_START
_ZEROS = [b""]


def _zeros(nbytes: int) -> bytes:
    """A shared zero buffer (the CTR plaintext of :meth:`CSPRNG.fill`) of at least nbytes."""
    zeros = _ZEROS[0]
    if len(zeros) < nbytes:
        zeros = bytes(max(nbytes, 1 << 16))
        _ZEROS[0] = zeros
    return zeros


class CSPRNG:
    """AES-256-CTR keystream with helpers that map it onto integers, rings and floats."""

    __slots__ = ("_encryptor", "_left")

    def __init__(self, key: bytes, nonce: bytes = bytes(16)) -> None:
        if not isinstance(key, (bytes, bytearray)) or len(key) not in (16, 32):
            raise ConfigError("CSPRNG key must be 16 or 32 bytes")
        if len(nonce) != 16:
            raise ConfigError("CSPRNG nonce must be 16 bytes")
        nonce = bytes(nonce)
        if nonce[12:] == _GCM_START:  # the same keystream from the faster engine (module docstring)
            self._encryptor = Cipher(algorithms.AES(bytes(key)), modes.GCM(nonce[:12])).encryptor()
            self._left: int | None = _GCM_MAX_BYTES
        else:
            self._encryptor = Cipher(algorithms.AES(bytes(key)), modes.CTR(nonce)).encryptor()
            self._left = None

    @classmethod
    def from_os(cls) -> "CSPRNG":
        """A fresh generator keyed with 256 bits from the operating system."""
        return cls(os.urandom(32), os.urandom(12) + _GCM_START)

    def _spend(self, nbytes: int) -> None:
        if self._left is not None:
            if nbytes > self._left:
                raise ConfigError("CSPRNG stream exhausted (2^32 - 2 blocks): make a new generator")
            self._left -= nbytes

    @classmethod
    def from_key(cls, key: bytes, nonce: bytes = bytes(16)) -> "CSPRNG":
        """Expand a secret that was derived for one purpose (the caller is responsible for domain separation)."""
        return cls(key, nonce)

    def bytes(self, n: int) -> bytes:
        self._spend(n)
        return self._encryptor.update(bytes(n))

    def fill(self, out: np.ndarray, count: int | None = None) -> np.ndarray:
        """Write the next keystream bytes into ``out[:count]`` (little-endian words; the same bytes :meth:`bytes`
        would return) without allocating; ``out`` needs one AES block of slack beyond ``count`` items."""
        count = out.size if count is None else count
        nbytes = count * out.itemsize
        raw = out.reshape(-1).view(np.uint8)
        if len(raw) < nbytes + 15:
            raise ConfigError("CSPRNG.fill needs one AES block of slack beyond the words it writes")
        self._spend(nbytes)
        self._encryptor.update_into(memoryview(_zeros(nbytes))[:nbytes], raw)
        words = out[:count]
        if not np.little_endian and out.itemsize > 1:
            words.byteswap(inplace=True)
        return words

    def uint32(self, n: int) -> np.ndarray:
        return np.frombuffer(self.bytes(4 * n), dtype="<u4").astype(np.uint32)

    def uint64(self, n: int) -> np.ndarray:
        return np.frombuffer(self.bytes(8 * n), dtype="<u8").astype(np.uint64)

    def ring(self, n: int, bits: int) -> np.ndarray:
        """n elements exactly uniform on Z_{2^bits} (bits <= 64) as uint64 (uint32 when bits <= 32)."""
        if not 1 <= bits <= 64:
            raise ConfigError("ring bits must be in 1..64")
        if bits <= 32:
            out = self.uint32(n)
            return out if bits == 32 else out & np.uint32((1 << bits) - 1)
        out = self.uint64(n)
        return out if bits == 64 else out & np.uint64((1 << bits) - 1)

    def below(self, bound: int) -> int:
        """One integer uniform on [0, bound) by rejection sampling (any size of bound)."""
        if bound <= 0:
            raise ConfigError("bound must be positive")
        nbytes = (bound.bit_length() + 7) // 8 + 8
        limit = (256 ** nbytes // bound) * bound
        while True:
            value = int.from_bytes(self.bytes(nbytes), "little")
            if value < limit:
                return value % bound

    def uniform(self, n: int) -> np.ndarray:
        """n doubles uniform on [0, 1) with 53 random bits each."""
        return (self.uint64(n) >> np.uint64(11)).astype(np.float64) / _TWO_POW_53

    def normal(self, n: int, std: float = 1.0) -> np.ndarray:
        """n independent N(0, std^2) samples (Box-Muller on CSPRNG uniforms)."""
        half = (n + 1) // 2
        u1 = 1.0 - self.uniform(half)  # (0, 1]: log is finite
        u2 = self.uniform(half)
        radius = np.sqrt(-2.0 * np.log(u1))
        z = np.concatenate([radius * np.cos(2 * np.pi * u2), radius * np.sin(2 * np.pi * u2)])[:n]
        return z * std

    def laplace(self, n: int, scale: float = 1.0) -> np.ndarray:
        """n independent Laplace(0, scale) samples (inverse CDF on CSPRNG uniforms)."""
        u = self.uniform(n) - 0.5
        return -scale * np.sign(u) * np.log1p(-2.0 * np.abs(u))
