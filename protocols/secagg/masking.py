"""Mask expansion for SecAgg: AES-256-CTR keystreams read straight into the ring Z_{2^bits}.

Threat model: a mask is the AES-256-CTR keystream (zero IV; every key is single-use, derived per round, purpose and
pair by :mod:`protocols.secagg.keys`) read as little-endian words and reduced modulo 2^bits. Because 2^bits divides
2^32 (or 2^64) the reduction is a bit mask and the result is exactly uniform on Z_{2^bits} — no modulo bias, every
value including 2^bits - 1 occurs — under the PRF assumption on AES. The key is the full 256-bit HKDF output (no
truncated seed, no non-cryptographic generator). Sums wrap with numpy's unsigned arithmetic, which is exactly
arithmetic modulo 2^32 or 2^64; rings of fewer bits are reduced once at the end with :func:`reduce`.
"""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ..errors import ConfigError

__all__ = ["MIN_BITS", "MAX_BITS", "ring_dtype", "keystream_words", "scratch", "add_mask", "sub_mask", "reduce"]

MIN_BITS = 8
MAX_BITS = 64
_ZERO_IV = bytes(16)


def ring_dtype(bits: int) -> np.dtype:
    """uint32 for rings up to 2^32, uint64 above (the wire dtype of masked vectors)."""
    if not MIN_BITS <= bits <= MAX_BITS:
        raise ConfigError(f"ring bits must be in {MIN_BITS}..{MAX_BITS}, got {bits}")
    return np.dtype(np.uint32 if bits <= 32 else np.uint64)


def keystream_words(key: bytes, n: int, bits: int, out: np.ndarray | None = None) -> np.ndarray:
    """n words of AES-256-CTR keystream under ``key`` (not yet reduced modulo 2^bits), written into ``out`` when
    given (a reusable scratch buffer of at least n words + one AES block), else into a fresh array."""
    dtype = ring_dtype(bits)
    nbytes = n * dtype.itemsize
    if out is None:
        out = np.empty(n + 16 // dtype.itemsize, dtype=dtype)
    encryptor = Cipher(algorithms.AES(key), modes.CTR(_ZERO_IV)).encryptor()
    encryptor.update_into(_zeros(nbytes), out.view(np.uint8))
    words = out[:n]
    return words if dtype.byteorder in ("<", "=", "|") and np.little_endian else words.byteswap()


_ZERO_CACHE: dict[int, memoryview] = {}


def _zeros(nbytes: int) -> memoryview:
    """A shared read-only zero buffer (the CTR plaintext) of at least nbytes, so masks allocate nothing."""
    cached = _ZERO_CACHE.get(0)
    if cached is None or len(cached) < nbytes:
        cached = memoryview(bytes(max(nbytes, 1 << 16)))
        _ZERO_CACHE[0] = cached
    return cached[:nbytes]


def scratch(n: int, bits: int) -> np.ndarray:
    """A scratch buffer for :func:`keystream_words` (n words plus one AES block of slack)."""
    dtype = ring_dtype(bits)
    return np.empty(n + 16 // dtype.itemsize, dtype=dtype)


def add_mask(acc: np.ndarray, key: bytes, bits: int, out: np.ndarray | None = None) -> None:
    """acc += PRG(key) in place (wrapping)."""
    acc += keystream_words(key, acc.size, bits, out)


def sub_mask(acc: np.ndarray, key: bytes, bits: int, out: np.ndarray | None = None) -> None:
    """acc -= PRG(key) in place (wrapping)."""
    acc -= keystream_words(key, acc.size, bits, out)


def reduce(acc: np.ndarray, bits: int) -> np.ndarray:
    """Reduce in place modulo 2^bits (a no-op for 32 and 64) and return acc."""
    width = acc.dtype.itemsize * 8
    if bits < width:
        acc &= acc.dtype.type((1 << bits) - 1)
    return acc
