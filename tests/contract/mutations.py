"""Random and mutated messages for the decoder fuzz (test data only: numpy's generator is fine here)."""

from __future__ import annotations

import math
import struct
from typing import Any, Iterator

import numpy as np

from protocols.wire import Message, encode, inspect

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


# -- structure-aware mutations (issue 12, case 10): the bytes stay decodable, the structure is wrong ---------------

_DTYPE_SWAP = {"float32": np.float64, "float64": np.float32, "int64": np.int32, "int32": np.int64,
               "uint32": np.uint64, "uint64": np.uint32, "uint8": np.uint16, "uint16": np.uint8}

#: every mutation kind the structural fuzz applies (a field-level kind applies to the fields it fits)
STRUCTURAL_KINDS = ("reshape (1,n)", "reshape (n,1)", "dtype swap", "length +1", "length -1", "item +1 byte",
                    "item -1 byte", "type swap", "NaN", "inf", "oversized", "dropped", "duplicated",
                    "round +1", "sender +1", "kind renamed")


def _field_variants(value: Any) -> Iterator[tuple[str, Any]]:
    """(mutation kind, new value) for one field value as :func:`protocols.wire.inspect` returns it."""
    if isinstance(value, np.ndarray):
        flat = value.reshape(-1)
        yield "reshape (1,n)", flat.reshape(1, -1)
        yield "reshape (n,1)", flat.reshape(-1, 1)
        yield "dtype swap", flat.astype(_DTYPE_SWAP[value.dtype.name])
        yield "length +1", np.append(flat, flat[-1:] if flat.size else np.zeros(1, flat.dtype))
        if flat.size:
            yield "length -1", flat[:-1].copy()
        yield "type swap", flat.tobytes()
        if value.dtype.kind == "f" and flat.size:
            yield "NaN", np.where(np.arange(flat.size) == 0, np.nan, flat).astype(flat.dtype)
            yield "inf", np.where(np.arange(flat.size) == flat.size - 1, np.inf, flat).astype(flat.dtype)
        yield "oversized", np.tile(flat, 64) if flat.size else np.zeros(64, flat.dtype)
    elif isinstance(value, bytes):
        yield "length +1", value + b"\x00"
        if value:
            yield "length -1", value[:-1]
        yield "type swap", [value]
        yield "oversized", value * 64 if value else b"\x00" * 64
    elif isinstance(value, list):
        yield "length +1", [*value, value[-1] if value else b"\x00" * 32]
        if value:
            yield "length -1", value[:-1]
            yield "item +1 byte", [value[0] + b"\x00", *value[1:]]
            yield "item -1 byte", [value[0][:-1], *value[1:]]
        yield "type swap", b"".join(value) or b"\x00"
        yield "oversized", value * 64 if value else [b"\x00" * 32] * 64
    elif isinstance(value, bool):
        raise TypeError("booleans are not wire values")
    elif isinstance(value, int):
        yield "type swap", float(value)
    elif isinstance(value, float):
        yield "NaN", float("nan")
        yield "inf", float("inf")
        yield "type swap", int(value) if math.isfinite(value) else 0
    elif isinstance(value, str):
        yield "length +1", value + "x"
        if value:
            yield "length -1", value[:-1]
        yield "type swap", value.encode("utf-8")


def _with_duplicate(message: Message, name: str) -> bytes:
    """``message`` with field ``name`` encoded twice (a dict cannot hold that, so splice the bytes)."""
    empty = encode(Message(message.protocol, message.kind, message.round_id, message.sender, {}))
    one = encode(Message(message.protocol, message.kind, message.round_id, message.sender,
                         {name: message.fields[name]}))
    full = bytearray(encode(message))
    count_at = len(empty) - 2
    struct.pack_into("<H", full, count_at, len(message.fields) + 1)
    return bytes(full) + one[len(empty):]


def structural_mutants(payload: bytes) -> list[tuple[str, bytes]]:
    """Every structure-aware mutant of one valid message, labelled ``"<field>: <kind>"`` or ``"<kind>"``.

    Each mutant decodes as a privfed message (except "oversized" where the size itself is the point) but breaks
    the message's schema or header: arrays reshaped (n)->(1,n)/(n,1), dtypes swapped, lengths off by one (arrays,
    bytes, lists, list items, strings), a field's type changed, NaN/inf in floats, a field 64x too long, a field
    dropped or repeated, the round id or sender changed, the kind renamed.
    """
    message = inspect(payload)
    assert encode(message) == payload, "inspect/encode must round-trip a valid message"
    out: list[tuple[str, bytes]] = []

    def build(fields: dict, kind: str | None = None, round_delta: int = 0, sender_delta: int = 0) -> bytes:
        return encode(Message(message.protocol, kind or message.kind, message.round_id + round_delta,
                              message.sender + sender_delta, fields))

    for name, value in message.fields.items():
        for label, new in _field_variants(value):
            out.append((f"{name}: {label}", build({**message.fields, name: new})))
        out.append((f"{name}: dropped", build({k: v for k, v in message.fields.items() if k != name})))
        out.append((f"{name}: duplicated", _with_duplicate(message, name)))
    out.append(("round +1", build(dict(message.fields), round_delta=1)))
    out.append(("sender +1", build(dict(message.fields), sender_delta=1)))
    out.append(("kind renamed", build(dict(message.fields), kind=message.kind + "x")))
    return out


def one_per_kind(mutants: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """The first mutant of every mutation kind (field-level kinds: one field each, so every kind is covered)."""
    seen: set[str] = set()
    chosen = []
    for label, data in mutants:
        kind = label.split(": ")[-1]
        if kind not in seen:
            seen.add(kind)
            chosen.append((label, data))
    return chosen
