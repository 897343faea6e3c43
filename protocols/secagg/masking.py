"""Mask expansion for SecAgg: AES-256 counter-mode keystreams read straight into the ring Z_{2^bits}.

Threat model: a mask is an AES-256 keystream in counter mode under a single-use key (derived per round, purpose and
pair by :mod:`protocols.secagg.keys`), read as little-endian words and reduced modulo 2^bits. The stream is cut
into segments of ``SEGMENT_BYTES`` (1 MiB); 16-byte block j of segment s is AES-256_k(s as 12 big-endian bytes ||
j + 2 as 4 big-endian bytes), so no two blocks of one key share a counter (a segment holds 2^16 blocks, far below
the 2^32 - 2 its 32-bit counter allows). Because 2^bits divides 2^32 (or 2^64) the reduction is a bit mask and the
result is exactly uniform on Z_{2^bits} — no modulo bias, every value including 2^bits - 1 occurs — under the PRF
assumption on AES. The key is the full 256-bit HKDF output (no truncated seed, no non-cryptographic generator).
Sums wrap with numpy's unsigned arithmetic, which is exactly arithmetic modulo 2^32 or 2^64; rings of fewer bits
are reduced once at the end with :func:`reduce`.

How the keystream is produced: segment s is the ciphertext of zeros under AES-256-GCM with the 96-bit IV s. GCM's
ciphertext is by definition (NIST SP 800-38D) plaintext XOR the counter-mode keystream from inc32(IV || 1), i.e.
exactly the blocks above; its tag is never computed or sent, so GCM serves only as OpenSSL's fastest AES
counter-mode engine (its vectorised VAES path runs about twice as fast as its CTR mode on the machines privfed is
measured on). ``tests/vectors/secagg_mask_kat.json`` holds words computed from the definition with AES-ECB, and the
tests check both parties' expansions against them.

Speed (:func:`apply_masks`, the hot path of both parties): all of a party's masks are added in one pass over the
vector in cache-sized blocks — for each block, every key's keystream is written into a small reused buffer and
added to the block in place — and the vector is split into one run of whole segments per core, each expanded by
its own cipher contexts (a segment's keystream does not depend on any other, so the result is bit for bit the
single-threaded one). ``cryptography`` releases the GIL inside AES and numpy inside the additions, so the ranges run
in parallel threads; every such call gives up and re-takes the GIL, and these hand-overs between the two threads
are what the block size trades against the cache (at 10 x 1M, 64 KiB blocks made two threads slower than one;
512 KiB, block and keystream together still within L2, gave the fastest round). With numba installed
(:func:`protocols.jit.fold_kernel`) the keys go two at a time: both keystreams are written into two reused buffers
and folded into the block in one compiled pass, bit for bit the words of the two numpy additions (a third fewer
calls, so fewer hand-overs, and one pass over the block instead of two). The server adds each masked upload
into its running sum (:func:`add_into`, reading the upload as a read-only view over the received bytes). No key,
mask or partial sum leaves the calling party's process; the threads only share its memory.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ..errors import ConfigError
from ..jit import fold_kernel
from ..parallel import resolve_workers, run_all, split, thread_scratch

__all__ = ["MIN_BITS", "MAX_BITS", "SEGMENT_BYTES", "ring_dtype", "keystream_words", "scratch", "add_mask", "sub_mask",
           "apply_masks", "add_into", "reduce"]

MIN_BITS = 8
MAX_BITS = 64
SEGMENT_BYTES = 1 << 20  # keystream bytes under one IV (part of the mask's definition: never change it)
BLOCK_BYTES = 1 << 19  # bytes of the vector processed per key before moving on (block and keystream stay in L2)
_PARALLEL_MIN_BYTES = 1 << 20  # below this a second thread costs more than it saves


def ring_dtype(bits: int) -> np.dtype:
    """uint32 for rings up to 2^32, uint64 above (the wire dtype of masked vectors)."""
    if not MIN_BITS <= bits <= MAX_BITS:
        raise ConfigError(f"ring bits must be in {MIN_BITS}..{MAX_BITS}, got {bits}")
    return np.dtype(np.uint32 if bits <= 32 else np.uint64)


def keystream_words(key: bytes, n: int, bits: int, out: np.ndarray | None = None) -> np.ndarray:
    """n words of the mask keystream under ``key`` (not yet reduced modulo 2^bits), written into ``out`` when
    given (a reusable scratch buffer of at least n words + one AES block), else into a fresh array."""
    dtype = ring_dtype(bits)
    nbytes = n * dtype.itemsize
    if out is None:
        out = np.empty(n + 16 // dtype.itemsize, dtype=dtype)
    raw = out.view(np.uint8)
    for lo in range(0, nbytes, SEGMENT_BYTES):
        hi = min(lo + SEGMENT_BYTES, nbytes)
        _segment(key, lo // SEGMENT_BYTES)(_zeros(hi - lo), raw[lo:])
    words = out[:n]
    return words if dtype.byteorder in ("<", "=", "|") and np.little_endian else words.byteswap()


def _segment(key: bytes, index: int):
    """``update_into`` of the cipher context whose output on zeros is segment ``index`` of the keystream."""
    return Cipher(algorithms.AES(key), modes.GCM(index.to_bytes(12, "big"))).encryptor().update_into


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
    """acc[start:stop] += sum PRG(add)[start:stop] - sum PRG(sub)[start:stop]; ``start`` starts a segment."""
    itemsize = acc.dtype.itemsize
    segment_words = SEGMENT_BYTES // itemsize
    ops = [np.add] * len(add_keys) + [np.subtract] * len(sub_keys)
    all_keys = list(add_keys) + list(sub_keys)
    # this thread's reused block buffer (a fresh one would page-fault on every call); each block overwrites it
    nbytes = (block_words + 16 // itemsize) * itemsize
    buffer = thread_scratch("mask-block", nbytes)[:nbytes].view(acc.dtype)
    raw = buffer.view(np.uint8)
    swap = not np.little_endian
    zeros = _zeros(block_words * itemsize)
    fold = None if swap else fold_kernel(acc[start:start + block_words])
    if fold is not None:  # numba: two keys' keystreams per pass over the block, in a second reused buffer
        buffer2 = thread_scratch("mask-block-2", nbytes)[:nbytes].view(acc.dtype)
        raw2 = buffer2.view(np.uint8)
        signs = [acc.dtype.type(1)] * len(add_keys) + [acc.dtype.type(-1 % (1 << 8 * itemsize))] * len(sub_keys)
        signs.append(acc.dtype.type(0))  # an odd last stream is folded with a zero sign for the missing one
    for segment_lo in range(start, stop, segment_words):
        segment_hi = min(segment_lo + segment_words, stop)
        streams = [_segment(key, segment_lo // segment_words) for key in all_keys]
        for lo in range(segment_lo, segment_hi, block_words):
            hi = min(lo + block_words, segment_hi)
            words, part, plain = buffer[:hi - lo], acc[lo:hi], zeros[:(hi - lo) * itemsize]
            if fold is not None:
                words2 = buffer2[:hi - lo]
                for j in range(0, len(streams), 2):
                    streams[j](plain, raw)
                    if j + 1 < len(streams):
                        streams[j + 1](plain, raw2)
                    fold(part, words, words2 if j + 1 < len(streams) else words, signs[j], signs[j + 1])
                continue
            for update_into, op in zip(streams, ops):
                update_into(plain, raw)
                if swap:
                    words.byteswap(inplace=True)
                op(part, words, out=part)


def apply_masks(acc: np.ndarray, add_keys: Sequence[bytes], sub_keys: Sequence[bytes], bits: int,
                workers: int | None = None, block_bytes: int = BLOCK_BYTES) -> np.ndarray:
    """acc += sum_k PRG(add_keys[k]) - sum_k PRG(sub_keys[k]) in place (wrapping), reduced modulo 2^bits; returns
    acc. The same words :func:`add_mask` and :func:`sub_mask` add one key at a time, in one cache-blocked pass
    split over up to ``workers`` threads (default: the usable cores), one run of whole segments each."""
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
    ranges = split(n, workers, align=SEGMENT_BYTES // itemsize)  # each range starts a segment
    run_all(_mask_range, [(acc, lo, hi, add_keys, sub_keys, block_words) for lo, hi in ranges])
    return reduce(acc, bits)


def add_into(acc: np.ndarray, y: np.ndarray, workers: int | None = 1) -> np.ndarray:
    """acc += y in place (wrapping): the server's running sum of masked inputs; returns acc. One pass in the calling
    thread by default: the sum is bound by memory, and waking a second thread for each upload cost more than it
    saved (measured at 10 x 1M); ``workers=None`` (the usable cores) or a count splits large vectors into ranges."""
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
