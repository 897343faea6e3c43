"""Random and mutated messages for the decoder fuzz (test data only: numpy's generator is fine here)."""

from __future__ import annotations

import struct
from typing import Iterator

import numpy as np

HEADER_SPAN = 96  # magic, version, names, round, sender, field count and the first field headers live here


def mutants(valid: list[bytes], count: int, seed: int) -> Iterator[bytes]:
    """``count`` hostile variants of the valid messages: random bytes, truncations, bit flips concentrated on the
    structure, wrong rounds and senders, trailing garbage, lengths blown up, and empty messages."""
    rng = np.random.default_rng(seed)
    for k in range(count):
        base = valid[k % len(valid)]
        kind = k % 9
        if kind == 0:
            yield rng.bytes(int(rng.integers(0, 200)))
        elif kind == 1:
            yield base[: int(rng.integers(0, len(base)))]
        elif kind == 2:
            data = bytearray(base)
            for _ in range(int(rng.integers(1, 4))):
                pos = int(rng.integers(0, min(len(data), HEADER_SPAN)))
                data[pos] ^= 1 << int(rng.integers(0, 8))
            yield bytes(data)
        elif kind == 3:
            data = bytearray(base)
            pos = int(rng.integers(0, len(data)))
            data[pos] = int(rng.integers(0, 256))
            yield bytes(data)
        elif kind == 4:
            yield base + rng.bytes(int(rng.integers(1, 16)))
        elif kind == 5:
            yield _patch_header(base, round_delta=int(rng.integers(1, 5)))
        elif kind == 6:
            yield _patch_header(base, sender_delta=int(rng.integers(1, 5)))
        elif kind == 7:
            data = bytearray(base)
            # write a huge little-endian length somewhere in the structure
            pos = int(rng.integers(0, max(1, min(len(data) - 8, HEADER_SPAN))))
            data[pos:pos + 8] = struct.pack("<Q", int(rng.integers(1 << 40, 1 << 62)))
            yield bytes(data)
        else:
            yield b"" if rng.random() < 0.5 else base[: len(base) // 2] + base


def _patch_header(message: bytes, round_delta: int = 0, sender_delta: int = 0) -> bytes:
    """Re-target a valid message at another round or sender (a replay or a spoof), keeping it well formed."""
    try:
        pos = 5
        pos += 1 + message[pos]  # protocol name
        pos += 1 + message[pos]  # kind
        round_id, sender = struct.unpack_from("<Qq", message, pos)
        return message[:pos] + struct.pack("<Qq", round_id + round_delta, sender + sender_delta) + message[pos + 16:]
    except (IndexError, struct.error):
        return message[::-1]
