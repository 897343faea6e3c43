"""SecAgg wire messages: one :class:`~protocols.wire.MessageSpec` per request and reply of the four phases.

Threat model: this module hides nothing; it fixes what may cross the wire so that :func:`protocols.wire.decode`
rejects anything else (kind, exact fields, types, dtypes, array shapes, list and item lengths, round, sender). What each party learns from
these messages is stated in :mod:`protocols.secagg` — the server sees public keys, ciphertexts of shares it cannot
open, masked vectors, and the shares that survivors reveal in the unmask phase.

Phases and messages (server requests are sent with sender -1)::

    advertise-keys  advertise-request {session, n, threshold, graph, k, neighbours, dim, ring_bits}
                    -> keys {c_pk, s_pk}
    share-keys      share-request {peers, c_pks, s_pks}   -> shares {recipients, ciphertexts, b_commit}
    masked-input    mask-request {senders, ciphertexts}   -> masked {y}  (uint32 / uint64, dim + 1 entries)
    unmask          unmask-request {alive, dropped}       -> reveal {b_ids, b_shares, s_ids, s_shares}
"""

from __future__ import annotations

from ..wire import FieldSpec, MessageSpec
from ..shamir import SHARE_BYTES
from .keys import KEY_BYTES, NONCE_BYTES, TAG_BYTES

__all__ = [
    "NAME",
    "PHASES",
    "SERVER_ID",
    "SESSION_BYTES",
    "SHARE_PLAINTEXT_BYTES",
    "SHARE_CIPHERTEXT_BYTES",
    "ADVERTISE_REQUEST",
    "KEYS",
    "SHARE_REQUEST",
    "SHARES",
    "MASK_REQUEST",
    "masked_spec",
    "UNMASK_REQUEST",
    "REVEAL",
]

NAME = "secagg"
PHASES = ("advertise-keys", "share-keys", "masked-input", "unmask")
SERVER_ID = -1
SESSION_BYTES = 16
SHARE_PLAINTEXT_BYTES = 2 * SHARE_BYTES
SHARE_CIPHERTEXT_BYTES = NONCE_BYTES + SHARE_PLAINTEXT_BYTES + TAG_BYTES
_MAX_CLIENTS = 1 << 20

# every structure is fixed here (wire.decode checks it): id lists are one-dimensional int64 arrays, public keys,
# share ciphertexts and revealed shares have their exact byte lengths
_IDS = FieldSpec("array", dtype="int64", max_length=_MAX_CLIENTS)
_KEY_LIST = FieldSpec("list", max_length=_MAX_CLIENTS, item_length=KEY_BYTES)
_SHARE_CIPHERTEXTS = FieldSpec("list", max_length=_MAX_CLIENTS, item_length=SHARE_CIPHERTEXT_BYTES)
_SHARES = FieldSpec("list", max_length=_MAX_CLIENTS, item_length=SHARE_BYTES)

ADVERTISE_REQUEST = MessageSpec("advertise-request", {
    "session": FieldSpec("bytes", length=SESSION_BYTES),
    "n": FieldSpec("int", min_value=2, max_value=_MAX_CLIENTS),
    "threshold": FieldSpec("int", min_value=2, max_value=_MAX_CLIENTS),
    "graph": FieldSpec("str", max_length=16),
    "k": FieldSpec("int", min_value=1, max_value=_MAX_CLIENTS),
    "neighbours": _IDS,
    "dim": FieldSpec("int", min_value=1),
    "ring_bits": FieldSpec("int", min_value=8, max_value=64),
})
KEYS = MessageSpec("keys", {
    "c_pk": FieldSpec("bytes", length=KEY_BYTES),
    "s_pk": FieldSpec("bytes", length=KEY_BYTES),
})
SHARE_REQUEST = MessageSpec("share-request", {"peers": _IDS, "c_pks": _KEY_LIST, "s_pks": _KEY_LIST})
SHARES = MessageSpec("shares", {
    "recipients": _IDS,
    "ciphertexts": _SHARE_CIPHERTEXTS,
    "b_commit": FieldSpec("bytes", length=KEY_BYTES),
})
MASK_REQUEST = MessageSpec("mask-request", {"senders": _IDS, "ciphertexts": _SHARE_CIPHERTEXTS})
UNMASK_REQUEST = MessageSpec("unmask-request", {"alive": _IDS, "dropped": _IDS})
REVEAL = MessageSpec("reveal", {"b_ids": _IDS, "b_shares": _SHARES, "s_ids": _IDS, "s_shares": _SHARES})


def masked_spec(dim: int, ring_bits: int) -> MessageSpec:
    """The masked-input reply for vectors of ``dim`` values: a 1-D array of dim + 1 ring elements (the weight slot
    last), in the ring's word type; decoded as a read-only view over the message (the server only adds it)."""
    dtype = "uint32" if ring_bits <= 32 else "uint64"
    return MessageSpec("masked", {"y": FieldSpec("array", dtype=dtype, length=dim + 1, copy=False)})
