"""The simulated malicious server's SecAgg behaviours (forge-keys, equivocate, replay); see privfed.bench.malicious.

Threat model: this is the attacker, not a protection: it holds what a deviating server would hold (every message it
received and the keys it made up), and reconstructs a target's input when that suffices.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from protocols import shamir
from protocols.wire import decode

from privfed.bench.malicious_base import Attacker

__all__ = ["SecAggAttacker"]


class SecAggAttacker(Attacker):
    def __init__(self, inner: Any, round_id: int, target: int, memory: dict, behaviour: str) -> None:
        super().__init__(inner, round_id, target, memory)
        from protocols.secagg import keys, masking
        self.keys, self.masking, self.behaviour = keys, masking, behaviour
        self.active = bool(getattr(inner.protocol, "active", False))
        self.forged: dict[int, tuple[Any, Any]] = {}
        self.b_shares: list[shamir.Share] = []
        self.s_shares: list[shamir.Share] = []
        self.seed: bytes | None = None
        self.y: np.ndarray | None = None
        self.group_b: list[int] = []
        self.b_signatures: dict[int, bytes] = {}

    def _spec(self, name: str) -> Any:
        from protocols.secagg import active, messages
        return getattr(active, name) if hasattr(active, name) else getattr(messages, name)

    # requests ------------------------------------------------------------------------------------------------
    def rewrite(self, phase: str, messages: dict[int, bytes]) -> dict[int, bytes]:
        v, behaviour = self.target, self.behaviour
        share_spec = self._spec("SIGNED_SHARE_REQUEST" if self.active else "SHARE_REQUEST")
        if phase == "share-keys" and v in messages:
            msg = decode(messages[v], share_spec, protocol="secagg", round_id=self.round_id, sender=-1)
            fields = dict(msg.fields)
            if behaviour == "replay":
                self.memory.setdefault("share-request", fields)  # first round: remember; later rounds: replay
                if self.round_id != self.memory.get("first_round", self.round_id):
                    fields = self.memory["share-request"]
            if behaviour == "forge-keys":
                c_pks, s_pks = [], []
                for peer in (int(p) for p in fields["peers"]):
                    c, s = self.keys.generate_private_key(), self.keys.generate_private_key()
                    self.forged[peer] = (c, s)
                    c_pks.append(self.keys.public_bytes(c))
                    s_pks.append(self.keys.public_bytes(s))
                fields.update(c_pks=c_pks, s_pks=s_pks)  # the signatures (if any) stay the peers' real ones
            messages[v] = self._request(share_spec.kind, fields)
        if phase == "masked-input" and behaviour == "forge-keys" and self.forged and v in messages:
            messages[v] = self._fabricated_shares()
        if behaviour == "equivocate":
            messages = self._equivocate(phase, messages)
        return messages

    def _fabricated_shares(self) -> bytes:
        """Shares the target will accept, encrypted under the forged keys (their secrets are garbage)."""
        keys, inner, v = self.keys, self.inner, self.target
        senders, ciphertexts = sorted(self.forged), []
        for u in senders:
            xs = [v + 1, *(w + 1 for w in senders if w != u)]
            b = shamir.split(os.urandom(32), inner.t, xs)[0]
            s = shamir.split(os.urandom(32), inner.t, xs)[0]
            shared = keys.agree(self.forged[u][0], inner.c_pk[v])
            key = keys.share_key(shared, inner.salt, self.round_id, u, v)
            ad = keys.associated_data(self.round_id, inner.session, u, v)
            ciphertexts.append(keys.encrypt(key, b.to_bytes() + s.to_bytes(), ad))
        return self._request("mask-request", {"senders": np.asarray(senders, dtype=np.int64),
                                              "ciphertexts": ciphertexts})

    def _equivocate(self, phase: str, messages: dict[int, bytes]) -> dict[int, bytes]:
        inner, v = self.inner, self.target
        lie_phase = "consistency-check" if self.active else "unmask"
        if phase == lie_phase and v in messages:
            others = sorted(c for c in messages if c != v)
            self.group_b = others[inner.t - 1:]  # group A = target + t - 1 others; B = the rest, told v dropped
            told = np.asarray(sorted(set(inner._u3) - {v}), dtype=np.int64)
            for cid in self.group_b:
                if self.active:
                    messages[cid] = self._request("consistency-request", {"survivors": told})
                else:
                    gone = sorted((set(inner.graph.neighbours[cid]) & (set(inner._u2) - set(inner._u3))) | {v})
                    messages[cid] = self._request("unmask-request", {
                        "alive": told, "dropped": np.asarray(gone, dtype=np.int64)})
            self.private = set(self.group_b)
        if self.active and phase == "unmask" and self.group_b:
            told = sorted(set(inner._u3) - {v})
            gone = sorted((set(inner._u2) - set(inner._u3)) | {v})
            signers = sorted(self.b_signatures)
            for cid in self.group_b:
                messages[cid] = self._request("signed-unmask-request", {
                    "alive": np.asarray(told, dtype=np.int64), "dropped": np.asarray(gone, dtype=np.int64),
                    "signers": np.asarray(signers, dtype=np.int64),
                    "signatures": [self.b_signatures[s] for s in signers]})
            self.private = set(self.group_b)
        return messages

    # replies -------------------------------------------------------------------------------------------------
    def intercept(self, phase: str, sender: int, payload: bytes) -> None:
        from protocols.secagg import messages as m
        inner, keys, v = self.inner, self.keys, self.target
        if phase == "share-keys" and sender == v and self.forged:
            msg = decode(payload, m.SHARES, protocol="secagg", round_id=self.round_id, sender=v)
            for u, ciphertext in zip((int(r) for r in msg["recipients"]), msg["ciphertexts"]):
                shared = keys.agree(self.forged[u][0], inner.c_pk[v])
                key = keys.share_key(shared, inner.salt, self.round_id, v, u)
                plain = keys.decrypt(key, ciphertext, keys.associated_data(self.round_id, inner.session, v, u))
                self.b_shares.append(shamir.Share.from_bytes(plain[:shamir.SHARE_BYTES]))
        if phase == "masked-input" and sender == v:
            self.y = decode(payload, m.masked_spec(inner.dim, inner.bits), protocol="secagg",
                            round_id=self.round_id, sender=v)["y"].copy()
        if phase == "consistency-check" and sender in self.group_b:
            from protocols.secagg.active import CONSISTENCY_SIGNATURE
            msg = decode(payload, CONSISTENCY_SIGNATURE, protocol="secagg", round_id=self.round_id, sender=sender)
            self.b_signatures[sender] = bytes(msg["signature"])
        if phase == "unmask":
            msg = decode(payload, m.REVEAL, protocol="secagg", round_id=self.round_id, sender=sender)
            for ids, shares, out in ((msg["b_ids"], msg["b_shares"], self.b_shares),
                                     (msg["s_ids"], msg["s_shares"], self.s_shares)):
                for cid, raw in zip(ids, shares):
                    if int(cid) == v:
                        out.append(shamir.Share.from_bytes(raw))

    def reconstruct(self) -> np.ndarray | None:
        """The target's weighted input, if what the server holds suffices."""
        inner, keys, masking, v = self.inner, self.keys, self.masking, self.target
        if self.y is None or len(self.b_shares) < inner.t:
            return None
        seed = shamir.reconstruct_secret(self.b_shares[:inner.t], keys.KEY_BYTES)
        total = self.y.copy()
        buffer = masking.scratch(total.size, inner.bits)
        masking.sub_mask(total, keys.self_mask_key(seed, inner.salt, self.round_id, v), inner.bits, buffer)
        if self.forged:
            pairs = {u: keys.agree(s, inner.s_pk[v]) for u, (_, s) in self.forged.items()}
        elif len(self.s_shares) >= inner.t:
            private = keys.private_from_bytes(shamir.reconstruct_secret(self.s_shares[:inner.t], keys.KEY_BYTES))
            pairs = {u: keys.agree(private, inner.s_pk[u]) for u in sorted(set(inner._u2) - {v})}
        else:
            return None
        for u, shared in pairs.items():
            key = keys.mask_key(shared, inner.salt, self.round_id, v, u)
            (masking.sub_mask if v < u else masking.add_mask)(total, key, inner.bits, buffer)
        masking.reduce(total, inner.bits)
        fp = inner.plan.fixed_point
        return fp.dequantize(fp.from_ring(total, 1))


