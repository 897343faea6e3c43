"""Mask expansion for SecAgg: AES-256-CTR keystreams read straight into the ring Z_{2^bits}.

Threat model: a mask is the AES-256-CTR keystream (zero IV; every key is single-use, derived per round, purpose and
pair by :mod:`protocols.secagg.keys`) read as little-endian words and reduced modulo 2^bits. Because 2^bits divides
2^32 (or 2^64) the reduction is a bit mask and the result is exactly uniform on Z_{2^bits} — no modulo bias, every
value including 2^bits - 1 occurs — under the PRF assumption on AES. The key is the full 256-bit HKDF output (no
truncated seed, no non-cryptographic generator). Sums wrap with numpy's unsigned arithmetic, which is exactly
arithmetic modulo 2^32 or 2^64; rings of fewer bits are reduced once at the end with :func:`reduce`.

Speed (:func:`apply_masks`, the hot path of both parties): all of a party's masks are added in one pass over the
vector in cache-sized blocks — for each block, every key's keystream is written into a small reused buffer and
added to the block in place — and the vector is split into one contiguous range per core, each range expanded by
its own AES-CTR contexts started at that range's block counter (the zero IV plus the range's offset in 16-byte
blocks, so the keystream is bit for bit the one a single stream from the zero IV produces). ``cryptography``
releases the GIL inside AES and numpy inside the additions, so the ranges run in parallel threads. The server adds
each masked upload into its running sum the same way (:func:`add_into`, reading the upload as a read-only view over
the received bytes). No key, mask or partial sum leaves the calling party's process; the threads only share its
memory.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ..errors import ConfigError
from ..parallel import resolve_workers, run_all, split

__all__ = ["MIN_BITS", "MAX_BITS", "ring_dtype", "keystream_words", "scratch", "add_mask", "sub_mask", "apply_masks",
           "add_into", "reduce"]

MIN_BITS = 8
MAX_BITS = 64
_ZERO_IV = bytes(16)
BLOCK_BYTES = 1 << 18  # bytes of the vector processed per key before moving on (stays in L2 cache)
_PARALLEL_MIN_BYTES = 1 << 20  # below this a second thread costs more than it saves


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


def _mask_range(acc: np.ndarray, start: int, stop: int, add_keys: Sequence[bytes], sub_keys: Sequence[bytes],
                block_words: int) -> None:
    """acc[start:stop] += sum PRG(add)[start:stop] - sum PRG(sub)[start:stop]; ``start`` is a multiple of 16 bytes."""
    itemsize = acc.dtype.itemsize
    counter = (start * itemsize // 16).to_bytes(16, "big")
    streams = [(Cipher(algorithms.AES(key), modes.CTR(counter)).encryptor().update_into, np.add) for key in add_keys]
    streams += [(Cipher(algorithms.AES(key), modes.CTR(counter)).encryptor().update_into, np.subtract)
                for key in sub_keys]
    buffer = np.empty(block_words + 16 // itemsize, dtype=acc.dtype)
    raw = buffer.view(np.uint8)
    swap = not np.little_endian
    zeros = _zeros(block_words * itemsize)
    for lo in range(start, stop, block_words):
        hi = min(lo + block_words, stop)
        words, part, plain = buffer[:hi - lo], acc[lo:hi], zeros[:(hi - lo) * itemsize]
        for update_into, op in streams:
            update_into(plain, raw)
            if swap:
                words.byteswap(inplace=True)
            op(part, words, out=part)


def apply_masks(acc: np.ndarray, add_keys: Sequence[bytes], sub_keys: Sequence[bytes], bits: int,
                workers: int | None = None, block_bytes: int = BLOCK_BYTES) -> np.ndarray:
    """acc += sum_k PRG(add_keys[k]) - sum_k PRG(sub_keys[k]) in place (wrapping), reduced modulo 2^bits; returns
    acc. The same words :func:`add_mask` and :func:`sub_mask` add one key at a time, in one cache-blocked pass
    split over ``workers`` threads (default: the usable cores)."""
    dtype = ring_dtype(bits)
    if acc.dtype != dtype or acc.ndim != 1 or not acc.flags.c_contiguous or not acc.flags.writeable:
        raise ConfigError(f"apply_masks needs a writeable contiguous 1-d {dtype} vector, got {acc.dtype} {acc.shape}")
    if block_bytes < 16 or block_bytes % 16:
        raise ConfigError(f"block_bytes must be a positive multiple of 16, got {block_bytes}")
    n, itemsize = acc.size, dtype.itemsize
    block_words = block_bytes // itemsize
    workers = resolve_workers(workers)
    if not add_keys and not sub_keys or n == 0:
        return reduce(acc, bits)
    if n * itemsize * (len(add_keys) + len(sub_keys)) < _PARALLEL_MIN_BYTES:
        workers = 1
    ranges = split(n, workers, align=16 // itemsize)  # each range starts on an AES block
    run_all(_mask_range, [(acc, lo, hi, add_keys, sub_keys, block_words) for lo, hi in ranges])
    return reduce(acc, bits)


def add_into(acc: np.ndarray, y: np.ndarray, workers: int | None = None) -> np.ndarray:
    """acc += y in place (wrapping), over one contiguous range per core when the vectors are large (the server's
    running sum of masked inputs); returns acc."""
    if y.shape != acc.shape or y.dtype != acc.dtype:
        raise ConfigError(f"add_into needs two vectors of one shape and word type, got {acc.dtype} {acc.shape} and "
                          f"{y.dtype} {y.shape}")
    workers = 1 if acc.nbytes < _PARALLEL_MIN_BYTES else resolve_workers(workers)
    run_all(_add_range, [(acc[lo:hi], y[lo:hi]) for lo, hi in split(acc.size, workers)])
    return acc


def _add_range(acc: np.ndarray, y: np.ndarray) -> None:
    np.add(acc, y, out=acc)


def reduce(acc: np.ndarray, bits: int) -> np.ndarray:
    """Reduce in place modulo 2^bits (a no-op for 32 and 64) and return acc."""
    width = acc.dtype.itemsize * 8
    if bits < width:
        acc &= acc.dtype.type((1 << bits) - 1)
    return acc
