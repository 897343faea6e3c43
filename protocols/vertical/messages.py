"""Message kinds of a vertical-FL session and their strict schemas (privfed's wire format, protocol ``vertical``).

Threat model: this module hides nothing; it is the validation boundary of the cut-layer exchange. Every message is
bound to the session phase through the wire header's round id (0 for the PSI alignment, step ``s >= 1`` for
training step ``s``) and its sender (-1 is the label party, ``k >= 0`` feature party ``k``); arrays are checked for
dtype, element count, shape and finiteness here, and for their bounds and order by the state machines.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np

from ..errors import MessageError
from ..psi import ELEMENT_BYTES, MAX_SET_SIZE
from ..wire import FieldSpec, Message, MessageSpec, decode, encode, peek_header

__all__ = ["NAME", "LABEL_PARTY", "ALIGN_ROUND", "COMBINES", "PSI_MASKED", "PSI_REMASKED", "PSI_FINISH",
           "ALIGNED", "FORWARD", "EMBEDDING", "GRADIENT", "STOP", "MAX_BATCH", "MAX_EMBEDDING",
           "alignment_digest", "pack", "unpack", "matrix", "header"]

NAME = "vertical"
LABEL_PARTY = -1
ALIGN_ROUND = 0
COMBINES = ("concat", "sum")
MAX_BATCH = 1 << 16
MAX_EMBEDDING = 4096
_ELEMENTS = FieldSpec("array", dtype="uint8", max_length=MAX_SET_SIZE * ELEMENT_BYTES, shape=(None, ELEMENT_BYTES))
_MATRIX = FieldSpec("array", dtype="float32", max_length=MAX_BATCH * MAX_EMBEDDING, shape=(None, None))

#: label party -> feature party: its own ids, masked (PSI step 1)
PSI_MASKED = MessageSpec("psi-masked", {"masked": _ELEMENTS})
#: feature party -> label party: the label party's elements re-masked (same order) and its own masked ids
PSI_REMASKED = MessageSpec("psi-remasked", {"remasked": _ELEMENTS, "masked": _ELEMENTS})
#: label party -> feature party: the feature party's elements re-masked, which of the pairwise intersection's
#: entities (sorted) every party shares (one 0/1 byte each), and how embeddings are combined
PSI_FINISH = MessageSpec("psi-finish", {
    "remasked": _ELEMENTS,
    "selection": FieldSpec("array", dtype="uint8", max_length=MAX_SET_SIZE),
    "combine": FieldSpec("str", max_length=16),
})
#: feature party -> label party: the digest of the aligned ids it will train on, and their number
ALIGNED = MessageSpec("aligned", {"digest": FieldSpec("bytes", length=32), "size": FieldSpec("int", min_value=0)})
#: label party -> feature party: embed these aligned rows (train = 1: a gradient follows)
FORWARD = MessageSpec("forward", {
    "rows": FieldSpec("array", dtype="int64", max_length=MAX_BATCH),
    "train": FieldSpec("int", min_value=0, max_value=1),
    "alignment": FieldSpec("bytes", length=32),
})
EMBEDDING = MessageSpec("embedding", {"values": _MATRIX})
GRADIENT = MessageSpec("gradient", {"values": _MATRIX})
STOP = MessageSpec("stop", {"reason": FieldSpec("str", max_length=4096)})


def alignment_digest(ids: Sequence[str]) -> bytes:
    """SHA-256 over the aligned ids in order, length-prefixed (two parties agree on it iff they agree on the rows)."""
    h = hashlib.sha256(b"privfed-vertical-alignment-v1")
    for entity in ids:
        raw = entity.encode("utf-8")
        h.update(len(raw).to_bytes(4, "big") + raw)
    return h.digest()


def pack(kind: MessageSpec, round_id: int, sender: int, **fields: object) -> bytes:
    return encode(Message(NAME, kind.kind, round_id, sender, fields))


def header(payload: bytes) -> tuple[str, int]:
    """(kind, round id) of a vertical message; MessageError for anything else."""
    protocol, kind, round_id, _ = peek_header(payload)
    if protocol != NAME:
        raise MessageError(f"message for protocol {protocol!r}, expected {NAME!r}")
    return kind, round_id


def unpack(payload: bytes, kinds: Sequence[MessageSpec], round_id: int, sender: int) -> Message:
    return decode(payload, {k.kind: k for k in kinds}, protocol=NAME, round_id=round_id, sender=sender)


def matrix(values: np.ndarray, rows: int, cols: int, what: str, bound: float | None = None) -> np.ndarray:
    """A (rows, cols) float32 matrix from a decoded field, or MessageError naming what is wrong."""
    if values.size != rows * cols:
        raise MessageError(f"{what}: {values.size} values, expected {rows}x{cols}")
    if values.ndim != 2 or values.shape != (rows, cols):
        raise MessageError(f"{what}: shape {values.shape}, expected ({rows}, {cols})")
    if bound is not None and np.abs(values).max(initial=0.0) > bound:
        raise MessageError(f"{what}: entries outside the declared range [-{bound}, {bound}]")
    return values


def elements(values: np.ndarray, what: str) -> np.ndarray:
    if values.ndim != 2 or values.shape[1] != ELEMENT_BYTES:
        raise MessageError(f"{what}: shape {values.shape}, expected (n, {ELEMENT_BYTES})")
    return values
