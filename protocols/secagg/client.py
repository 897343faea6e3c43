"""The SecAgg client: key generation, share distribution, masking and the checked reveal of unmasking shares.

Threat model: the client trusts nobody with its input. It sends only public keys, share ciphertexts that only the
addressed neighbour can open, a hiding commitment to its self-mask seed, and y_u, which is exactly uniform on the
ring given everything else the server sees. In the unmask phase it enforces the rules that keep it and its
neighbours safe against a server that lies about who survived: it refuses (raising, which the runtime records as a
dropout) when fewer than t of its neighbourhood are reported alive, when a peer is in both the alive and the
dropped list, when it is itself listed as dropped, when a peer is listed twice or is not a peer it masked with,
and it answers the unmask request at most once — so it never reveals both the b-share and the s-share of the same
peer. Secrets (keys, seeds, shares, the quantised input) never enter exception texts or ``repr``.

Distributed-DP hook: ``client_noise`` (an object with ``real_bound: float`` and
``sample(dim, scale, rng) -> int64 array`` with |value| <= ceil(real_bound * scale)) adds integer noise in quantised
units to the w'x coordinates only (not to the weight slot, so the decoder's division stays exact up to rounding),
before masking, from an OS-keyed CSPRNG. The headroom of the fixed point includes that bound, and a sample outside
it raises :class:`~protocols.errors.HeadroomError` rather than risking a wrapped sum.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import shamir
from ..base import ClientStateMachine, ClientUpdate
from ..csprng import CSPRNG
from ..errors import HeadroomError, MessageError, ProtocolAbort
from ..wire import ArraySlot, Message, decode, encode
from . import keys, masking
from .messages import (ADVERTISE_REQUEST, KEYS, MASK_REQUEST, NAME, REVEAL, SERVER_ID, SHARE_CIPHERTEXT_BYTES,
                       SHARE_REQUEST, SHARES, UNMASK_REQUEST, masked_spec)

if TYPE_CHECKING:
    from . import RoundPlan, SecAggProtocol

__all__ = ["SecAggClient"]


def _ids(array: np.ndarray, what: str) -> list[int]:
    ids = [int(v) for v in array]
    if len(set(ids)) != len(ids):
        raise ProtocolAbort(f"{what}: a client is listed twice")
    return ids


class SecAggClient(ClientStateMachine):
    """One client's side of one round. Stages: advertise -> share -> mask -> unmask -> done."""

    def __init__(self, protocol: "SecAggProtocol", client_id: int, round_id: int, update: ClientUpdate) -> None:
        if not (isinstance(client_id, int) and 0 <= client_id < (1 << 32) - 1):
            raise MessageError("client id out of range")
        self.protocol, self.client_id, self.round_id, self.update = protocol, client_id, round_id, update
        self._stage = "advertise"
        self._plan: RoundPlan | None = None

    def __repr__(self) -> str:  # never show keys, seeds or shares
        return f"SecAggClient(id={self.client_id}, round={self.round_id}, stage={self._stage})"

    def _reply(self, kind: str, fields: dict[str, Any]) -> bytes:
        return encode(Message(NAME, kind, self.round_id, self.client_id, fields))

    def handle(self, payload: bytes) -> bytes | memoryview | None:
        stage = self._stage
        self._stage = "failed"  # any exception below leaves the machine unusable (no second attempt)
        handler = {"advertise": self._advertise, "share": self._share, "mask": self._mask,
                   "unmask": self._unmask}.get(stage)
        if handler is None:
            raise ProtocolAbort(f"client {self.client_id} has no request to answer in stage {stage}")
        reply, self._stage = handler(payload)
        return reply

    # -- phase 1 --------------------------------------------------------------------------------------------------

    def _advertise(self, payload: bytes) -> tuple[bytes, str]:
        msg = decode(payload, ADVERTISE_REQUEST, protocol=NAME, round_id=self.round_id, sender=SERVER_ID)
        plan = self.protocol.plan(msg["n"])
        if (msg["graph"], msg["k"], msg["threshold"]) != (plan.graph, plan.k, plan.threshold):
            raise ProtocolAbort("the server's graph or threshold differs from this client's configuration")
        if msg["ring_bits"] != self.protocol.ring_bits:
            raise ProtocolAbort("the server's ring size differs from this client's configuration")
        if msg["dim"] != self.update.vector.size:
            raise MessageError(f"server asked for {msg['dim']} values, this client has {self.update.vector.size}")
        neighbours = _ids(msg["neighbours"], "neighbour list")
        if self.client_id in neighbours or len(neighbours) != plan.k or any(v < 0 for v in neighbours):
            raise ProtocolAbort("malformed neighbour list")
        self._plan, self._session = plan, bytes(msg["session"])
        self._neighbours = frozenset(neighbours)
        self._salt = keys.round_salt(self.round_id, self._session)
        self._c_key = keys.generate_private_key()
        self._s_key = keys.generate_private_key()
        self._seed = os.urandom(keys.KEY_BYTES)  # b_u
        return self._reply(KEYS.kind, {"c_pk": keys.public_bytes(self._c_key),
                                       "s_pk": keys.public_bytes(self._s_key)}), "share"

    # -- phase 2 --------------------------------------------------------------------------------------------------

    def _share(self, payload: bytes) -> tuple[bytes, str]:
        plan = self._plan
        msg = decode(payload, SHARE_REQUEST, protocol=NAME, round_id=self.round_id, sender=SERVER_ID)
        peers = _ids(msg["peers"], "peer list")
        c_pks, s_pks = msg["c_pks"], msg["s_pks"]
        if not (len(peers) == len(c_pks) == len(s_pks)):
            raise MessageError("share request: peers and keys differ in length")
        if self.client_id in peers or not set(peers) <= self._neighbours:
            raise ProtocolAbort("share request lists a client that is not a neighbour")
        if len(peers) + 1 < plan.threshold:
            raise ProtocolAbort(f"only {len(peers) + 1} of this client's neighbourhood advertised keys, "
                                f"threshold {plan.threshold}")
        all_keys = [*c_pks, *s_pks, keys.public_bytes(self._c_key), keys.public_bytes(self._s_key)]
        if any(len(k) != keys.KEY_BYTES for k in all_keys) or len(set(all_keys)) != len(all_keys):
            raise ProtocolAbort("duplicate or malformed public keys in the share request")
        xs = [self.client_id + 1, *(p + 1 for p in peers)]
        b_shares = shamir.split(self._seed, plan.threshold, xs)
        s_shares = shamir.split(keys.private_bytes(self._s_key), plan.threshold, xs)
        self._own_b_share = b_shares[0]
        self._peer_s_pk: dict[int, bytes] = {}
        self._recv_key: dict[int, bytes] = {}
        ciphertexts = []
        for i, peer in enumerate(peers, start=1):
            shared = keys.agree(self._c_key, c_pks[i - 1])
            send_key = keys.share_key(shared, self._salt, self.round_id, self.client_id, peer)
            self._recv_key[peer] = keys.share_key(shared, self._salt, self.round_id, peer, self.client_id)
            self._peer_s_pk[peer] = bytes(s_pks[i - 1])
            plaintext = b_shares[i].to_bytes() + s_shares[i].to_bytes()
            ad = keys.associated_data(self.round_id, self._session, self.client_id, peer)
            ciphertexts.append(keys.encrypt(send_key, plaintext, ad))
        commit = keys.commit_self_mask(self._seed, self._salt, self.round_id, self.client_id)
        return self._reply(SHARES.kind, {"recipients": np.asarray(peers, dtype=np.int64),
                                         "ciphertexts": ciphertexts, "b_commit": commit}), "mask"

    # -- phase 3 --------------------------------------------------------------------------------------------------

    def _mask(self, payload: bytes) -> tuple[bytes | memoryview, str]:
        plan = self._plan
        msg = decode(payload, MASK_REQUEST, protocol=NAME, round_id=self.round_id, sender=SERVER_ID)
        senders = _ids(msg["senders"], "sender list")
        if len(senders) != len(msg["ciphertexts"]):
            raise MessageError("mask request: senders and ciphertexts differ in length")
        if not set(senders) <= set(self._recv_key):
            raise ProtocolAbort("mask request carries shares from a client that was not a peer")
        if len(senders) + 1 < plan.threshold:
            raise ProtocolAbort(f"only {len(senders) + 1} of this client's neighbourhood shared keys, "
                                f"threshold {plan.threshold}")
        x = self.client_id + 1
        self._held: dict[int, tuple[shamir.Share, shamir.Share]] = {}
        for peer, ciphertext in zip(senders, msg["ciphertexts"]):
            if len(ciphertext) != SHARE_CIPHERTEXT_BYTES:
                raise MessageError("share ciphertext of the wrong length")
            ad = keys.associated_data(self.round_id, self._session, peer, self.client_id)
            plaintext = keys.decrypt(self._recv_key[peer], ciphertext, ad)
            b_share = shamir.Share.from_bytes(plaintext[:shamir.SHARE_BYTES])
            s_share = shamir.Share.from_bytes(plaintext[shamir.SHARE_BYTES:])
            if {b_share.x, s_share.x} != {x} or {b_share.threshold, s_share.threshold} != {plan.threshold}:
                raise ProtocolAbort("a decrypted share is not addressed to this client or has another threshold")
            self._held[peer] = (b_share, s_share)
        self._masked_with = frozenset(senders)
        bits = self.protocol.ring_bits
        spec = masked_spec(self.update.vector.size, bits)
        # the masked vector is written straight into the reply's bytes: quantised, then masked in place
        reply = ArraySlot(Message(NAME, spec.kind, self.round_id, self.client_id, {}), "y", spec.fields["y"].dtype,
                          self.update.vector.size + 1)
        acc = self._encode(plan, out=reply.words)
        add_keys = [keys.self_mask_key(self._seed, self._salt, self.round_id, self.client_id)]
        sub_keys: list[bytes] = []
        for peer in senders:
            shared = keys.agree(self._s_key, self._peer_s_pk[peer])
            key = keys.mask_key(shared, self._salt, self.round_id, self.client_id, peer)
            (add_keys if self.client_id < peer else sub_keys).append(key)
        masking.apply_masks(acc, add_keys, sub_keys, bits)
        self._s_key = self._c_key = None  # not needed any more; drop the references early
        return reply.seal(), "unmask"

    def _encode(self, plan: "RoundPlan", out: np.ndarray) -> np.ndarray:
        """[w' clip(x), w'] quantised (+ integer DP noise on the w'x coordinates) as ring elements, written into
        ``out`` (the reply's slot) and returned."""
        fp = plan.fixed_point
        rng = CSPRNG.from_os()
        dtype = masking.ring_dtype(self.protocol.ring_bits)
        # [w' clip(x), w'] with x clipped to the declared range (in float32) before weighting, quantised straight
        # into the ring's word type (two's complement) in one blocked pass
        ring = fp.quantize_weighted_ring(self.update.vector, float(self.update.weight),
                                         float(self.protocol.max_weight), rng, dtype,
                                         input_clip=float(self.protocol.clip), out=out)
        noise_source = self.protocol.client_noise
        if noise_source is not None:
            dim = self.update.vector.size
            noise = np.asarray(noise_source.sample(dim, fp.scale, rng))
            if noise.shape != (dim,) or noise.dtype.kind not in "iu":
                raise HeadroomError("client_noise.sample must return an integer array of the vector's length")
            if dim and int(np.max(np.abs(noise.astype(np.int64)))) > fp.extra_per_client:
                raise HeadroomError("client noise exceeds its declared bound; refusing to risk a wrapped sum")
            ring[:-1] += noise.astype(np.int64).astype(dtype)  # wrapping: the same ring element as q + noise
        return masking.reduce(ring, self.protocol.ring_bits)

    # -- phase 4 --------------------------------------------------------------------------------------------------

    def _unmask(self, payload: bytes) -> tuple[bytes, str]:
        plan = self._plan
        msg = decode(payload, UNMASK_REQUEST, protocol=NAME, round_id=self.round_id, sender=SERVER_ID)
        alive = _ids(msg["alive"], "alive list")
        dropped = _ids(msg["dropped"], "dropped list")
        if set(alive) & set(dropped):
            raise ProtocolAbort("a client is listed both alive and dropped")
        if self.client_id in dropped:
            raise ProtocolAbort("this client is listed as dropped")
        if self.client_id not in alive:
            raise ProtocolAbort("this client is missing from the alive list")
        if set(alive) | set(dropped) != self._masked_with | {self.client_id}:
            raise ProtocolAbort("alive and dropped lists do not match the peers this client masked with")
        if len(alive) < plan.threshold:
            raise ProtocolAbort(f"only {len(alive)} of this client's neighbourhood are alive, "
                                f"threshold {plan.threshold}: refusing to reveal shares")
        b_shares = [(self._own_b_share if v == self.client_id else self._held[v][0]).to_bytes() for v in alive]
        s_shares = [self._held[v][1].to_bytes() for v in dropped]
        self._held = {}
        return self._reply(REVEAL.kind, {"b_ids": np.asarray(alive, dtype=np.int64), "b_shares": b_shares,
                                         "s_ids": np.asarray(dropped, dtype=np.int64), "s_shares": s_shares}), "done"
