"""The simulated malicious server's HE behaviours (decrypt-individual, replay); see privfed.bench.malicious.

Threat model: this is the attacker, not a protection: it holds what a deviating server would hold (every ciphertext,
signature and released plaintext it received) and subtracts what it already knows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from protocols.wire import decode

from privfed.bench.malicious_base import Attacker

__all__ = ["HEAttacker"]


class HEAttacker(Attacker):
    def __init__(self, inner: Any, round_id: int, target: int, memory: dict, behaviour: str) -> None:
        super().__init__(inner, round_id, target, memory)
        self.behaviour = behaviour
        self.active = bool(inner.protocol.active)
        self.uploads: dict[int, Any] = {}
        self.signed: dict[int, bytes] = {}
        self.known_offset: np.ndarray | None = None
        self.n_summed = 1
        self.partials: dict[int, list[int]] = {}  # threshold decryption: key-holder index -> partial decryptions

    def intercept(self, phase: str, sender: int, payload: bytes) -> None:
        inner = self.inner
        if phase == "upload":
            msg = decode(payload, inner._update_spec, protocol=inner.name, round_id=self.round_id, sender=sender)
            self.uploads[sender] = msg["ciphertexts"]
            if self.active:
                from protocols.he_active import contribution_message
                self.signed[sender] = contribution_message(inner.name, self.round_id, sender, msg["ciphertexts"],
                                                           msg["signature"])
        if phase == "decrypt" and hasattr(inner, "public"):  # threshold decryption: combine the partials it got
            self._collect_partial(sender, payload)
        elif phase == "decrypt" and inner.protocol.release == "server" and self.recovered is None:
            msg = decode(payload, inner._release_spec, protocol=inner.name, round_id=self.round_id, sender=sender)
            total = inner.codec.decode_plaintext(msg["plaintext"], self.n_summed)
            if self.known_offset is not None:
                total = total - self.known_offset
            self.recovered = total

    def rewrite(self, phase: str, messages: dict[int, bytes]) -> dict[int, bytes]:
        inner, v, name = self.inner, self.target, self.inner.name
        if phase != "decrypt" or v not in self.uploads:
            return messages
        first = self.round_id == self.memory.get("first_round", self.round_id)
        m = inner.protocol.min_clients
        if self.behaviour == "replay" and first:
            # round 1: ask for the sum of just m contributions (a server may drop clients), learn its plaintext
            chosen = sorted(c for c in self.uploads if c != v)[:m]
            self.n_summed = self.memory["n"] = len(chosen)
            if self.active:
                self.memory["signed"] = [self.signed[c] for c in chosen]
                return {cid: self._request("decrypt-contributions", {"contributions": self.memory["signed"],
                                                                     **inner._freshness()}) for cid in messages}
            codec = self._fresh_codec()
            for c in chosen:
                codec.add(codec.parse(self.uploads[c]))
            self.memory["sum_ciphertexts"] = codec.sum_ciphertexts()
            return {cid: self._request("decrypt-request", {"ciphertexts": self.memory["sum_ciphertexts"],
                                                           "contributors": len(chosen)}) for cid in messages}
        if self.active:
            if self.behaviour == "decrypt-individual":
                contributions = [self.signed[v]] * m
            else:  # the target's contribution plus round 1's (old signatures: the only ones the server has)
                contributions = [self.signed[v], *self.memory["signed"]]
            fields = {"contributions": contributions, **inner._freshness()}
            kind = "decrypt-contributions"
        else:
            if self.behaviour == "decrypt-individual":
                ciphertexts, claimed = self.uploads[v], m
            else:
                codec = self._fresh_codec()
                codec.add(codec.parse(self.uploads[v]))
                codec.add(codec.parse(self.memory["sum_ciphertexts"]))
                ciphertexts, claimed = codec.sum_ciphertexts(), 1 + self.memory["n"]
                self.known_offset = self.memory.get("plain_sum")
            self.n_summed = 1 if self.behaviour == "decrypt-individual" else claimed  # what is really summed
            fields = {"ciphertexts": ciphertexts, "contributors": claimed}
            kind = "decrypt-request"
        if self.active:
            self.n_summed = len(fields["contributions"])
        return {cid: self._request(kind, fields) for cid in messages}

    def _collect_partial(self, sender: int, payload: bytes) -> None:
        """Threshold Paillier: keep each partial decryption of whatever the server asked for; with T of them,
        combine (no proof check: the attacker knows what it asked) and subtract what it already knows."""
        inner = self.inner
        msg = decode(payload, inner._partial_spec, protocol=inner.name, round_id=self.round_id, sender=sender)
        width = inner.codec.width
        raw = msg["partials"]
        self.partials[inner.public.index_of(sender)] = [int.from_bytes(raw[i:i + width], "big")
                                                        for i in range(0, len(raw), width)]
        if self.recovered is None and len(self.partials) >= inner.public.threshold:
            chosen = dict(sorted(self.partials.items())[:inner.public.threshold])
            total = inner.codec.decode_plaintext(inner.codec.combine_plaintext(chosen), self.n_summed)
            self.recovered = total - self.known_offset if self.known_offset is not None else total

    def _fresh_codec(self) -> Any:
        inner = self.inner
        return inner.protocol.server_codec(inner.protocol.key_authority().public_material, inner.dim,
                                           len(inner.client_ids))

    def reconstruct(self) -> np.ndarray | None:
        return self.recovered


