"""The decrypt (and combine) phase of an HE round under threshold decryption.

Threat model: see :mod:`protocols.threshold_paillier` (hides updates from the server plus fewer than T colluding key
holders; honest-but-curious server; dealer trusted at setup). This module only moves and checks partial decryptions:
the server asks contributing key holders, each at most once; each answers with its partial decryptions of the summed
ciphertexts and a proof bound to the key, the round and those exact ciphertexts; the server checks each proof on
arrival (a failure is a :class:`~protocols.errors.MessageError`: the runtime rejects the reply and treats its sender
as dropped) and needs T valid partials, else it aborts with the phase, the count and the threshold. It asks T key
holders first and tops up from the others only for those that dropped or were rejected (T partials on the wire in a
round without failures, one extra round trip per batch of failures). With ``release="key-holders"`` a ``combine``
phase sends the T verified partials back to the key holders, who re-check every proof before combining (they do not
trust the server's checking). A client answers one decrypt request and one combine request per round at most.
With ``active=True`` (a malicious server, :mod:`protocols.he_active`) the decrypt request carries the signed
contributions instead of a sum, and each key holder verifies them and recomputes the sum itself before it produces
its partial decryption, once per round: a partial of one client's ciphertext, or of a sum padded with replayed
ciphertexts, is never made, so T partials of anything but a sum of >= min_clients fresh signed contributions
cannot be collected.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import numpy as np

from .base import AggregateResult, Outgoing
from .encoding import split_weighted
from .errors import DecryptionError, HeadroomError, MessageError, PrivfedError, ProtocolAbort
from .he_round import ACK, HEClient, HEServer, RESULTS_SLOT, _KEY_ID
from .threshold_paillier_keys import verify
from .wire import FieldSpec, Message, MessageSpec, decode

__all__ = ["ThresholdHEServer", "ThresholdHEClient", "partial_spec", "combine_spec"]


def _context(key_id: bytes, round_id: int, ciphertexts: bytes) -> bytes:
    """What a partial decryption and its proof are bound to: the key, the round and the exact summed ciphertexts."""
    return key_id + round_id.to_bytes(8, "big") + hashlib.sha256(ciphertexts).digest()


def partial_spec(codec: Any) -> MessageSpec:
    return MessageSpec("partial", {"key_id": _KEY_ID, "partials": codec.partial_field, "proof": codec.proof_field,
                                   "decrypt_seconds": FieldSpec("float", min_value=0.0)},
                       max_bytes=codec.max_message_bytes + codec.proof_field.length)


def combine_spec(codec: Any) -> MessageSpec:
    t = codec.threshold_public.threshold
    return MessageSpec("combine-request", {
        "holders": FieldSpec("array", dtype="int64", length=t),
        "partials": FieldSpec("bytes", length=t * codec.partial_field.length),
        "proofs": FieldSpec("bytes", length=t * codec.proof_field.length)},
        max_bytes=t * (codec.partial_field.length + codec.proof_field.length) + 4096)


def _split(raw: bytes, width: int) -> list[int]:
    return [int.from_bytes(raw[i:i + width], "big") for i in range(0, len(raw), width)]


class ThresholdHEServer(HEServer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.public = self.codec.threshold_public
        self._partial_spec = partial_spec(self.codec)
        self._valid: dict[int, tuple[bytes, bytes]] = {}   # client id -> (partials, proof), proof checked
        self._rejected: list[int] = []
        self._combine_asked: list[int] = []
        self._acks: list[int] = []
        self._context = b""

    def _abort_below_threshold(self, phase: str, remaining: int) -> ProtocolAbort:
        return ProtocolAbort(f"phase {phase}: {remaining} key holders remain, threshold {self.public.threshold}")

    def _ask_next(self) -> Outgoing:
        """Ask as many not-yet-asked contributing key holders as valid partials are missing (T at first; more
        only when some dropped or were rejected); abort once fewer than T can still answer."""
        unasked = [c for c in self._decrypt_candidates if c in self.public.holders and c not in self._asked]
        missing = self.public.threshold - len(self._valid)
        if len(unasked) < missing:
            raise self._abort_below_threshold("decrypt", len(self._valid) + len(unasked))
        if not self._context:
            self._context = _context(self.key_id, self.round_id, self.codec.sum_ciphertexts())
        chosen = unasked[:missing]
        self._asked.extend(chosen)
        return Outgoing("decrypt", {cid: self._request for cid in chosen})

    def _receive_decrypt(self, sender: int, payload: bytes) -> None:
        self._answered.append(sender)  # one reply per holder, valid or not
        try:
            message = decode(payload, self._partial_spec, protocol=self.name, round_id=self.round_id,
                             sender=sender)
            if message["key_id"] != self.key_id:
                raise MessageError("partial decryption under another key")
            index = self.public.index_of(sender)
            verify(self.public, index, _split(self.codec.sum_ciphertexts(), self.codec.width),
                   _split(message["partials"], self.codec.width), message["proof"], self._context)
        except MessageError:
            self._rejected.append(sender)
            raise
        self._timings["decrypt"].append(message["decrypt_seconds"])
        self._valid[sender] = (message["partials"], message["proof"])

    def _advance_decrypt(self) -> Outgoing | AggregateResult:
        t = self.public.threshold
        if self.phase == "decrypt":
            if len(self._valid) < t:
                return self._ask_next()
            chosen = sorted(self._valid)[:t]
            if self.protocol.release == "server":
                partials = {self.public.index_of(c): _split(self._valid[c][0], self.codec.width) for c in chosen}
                try:
                    plaintext = self.codec.combine_plaintext(partials)
                    self._sum = self.codec.decode_plaintext(plaintext, len(self._contributors))
                except (DecryptionError, MessageError) as exc:
                    raise ProtocolAbort(f"phase decrypt: the verified partial decryptions did not combine "
                                        f"({exc})") from None
                self._combined = chosen
                return self._result()
            self.phase = "combine"
            self._combined = chosen
            payload = self._send("combine-request", {
                "holders": np.array(chosen, dtype=np.int64),
                "partials": b"".join(self._valid[c][0] for c in chosen),
                "proofs": b"".join(self._valid[c][1] for c in chosen)})
            targets = sorted(self._valid)
            self._combine_asked = targets
            return Outgoing("combine", {cid: payload for cid in targets})
        if self.phase == "combine":
            if not self._acks:
                raise ProtocolAbort("phase combine: no key holder acknowledged the combined result")
            return self._result()
        raise ProtocolAbort("the round is over")

    def _receive_other(self, sender: int, payload: bytes) -> None:
        if self.phase != "combine" or sender not in self._combine_asked or sender in self._acks:
            raise MessageError(f"client {sender} was not asked to combine")
        message = decode(payload, ACK, protocol=self.name, round_id=self.round_id, sender=sender)
        if message["key_id"] != self.key_id:
            raise MessageError("acknowledgement under another key")
        self._acks.append(sender)

    def _result(self) -> AggregateResult:
        result = super()._result()
        result.info.update({
            "decryption": "threshold", "threshold": self.public.threshold, "key_holders": len(self.public.holders),
            "decrypted_by": list(self._combined), "partials_valid": sorted(self._valid),
            "partials_rejected": sorted(self._rejected),
            "release_note": ("the server combined T verified partial decryptions of the sum"
                             if self.protocol.release == "server" else
                             "the key holders combined T verified partial decryptions; the server has no mean")})
        if self.protocol.release == "key-holders":
            result.info["combined_by"] = sorted(self._acks)
        return result


class ThresholdHEClient(HEClient):
    combined = False
    _ciphertexts: bytes = b""

    def _decrypt_reply(self, message: Message) -> bytes:
        assert self.codec is not None
        if self.keys.share is None:
            raise MessageError("this client holds no key share")
        started = time.perf_counter()
        if self.protocol.active:  # a sum recomputed from >= min_clients signed contributions (protocols.he_active)
            self._ciphertexts, self._contributors = self._checked_sum(message)
        else:
            self._ciphertexts, self._contributors = message["ciphertexts"], message["contributors"]
        context = _context(self.keys.key_id, self.round_id, self._ciphertexts)
        try:
            partials, proof = self.codec.partial(self._ciphertexts, context)  # type: ignore[attr-defined]
        except PrivfedError:
            raise DecryptionError("decryption failed") from None
        return self._reply("partial", {"key_id": self.keys.key_id, "partials": partials, "proof": proof,
                                       "decrypt_seconds": time.perf_counter() - started})

    def _extra_specs(self) -> dict[str, MessageSpec]:
        if self.protocol.release != "key-holders":
            return {}
        return {"combine-request": combine_spec(self.server_codec)}

    def _handle_other(self, message: Message) -> bytes:
        if not self.decrypted or self.combined:
            raise MessageError("combine requested before this client's partial decryption, or twice")
        self.combined = True
        codec, public = self.server_codec, self.keys.public
        holders = [int(h) for h in message["holders"]]
        if len(set(holders)) != public.threshold:
            raise MessageError("the combine request does not name T distinct key holders")
        width, proof_len = codec.width, codec.proof_field.length  # type: ignore[union-attr]
        part_len = codec.partial_field.length  # type: ignore[union-attr]
        cts = _split(self._ciphertexts, width)
        context = _context(self.keys.key_id, self.round_id, self._ciphertexts)
        partials = {}
        for k, holder in enumerate(holders):
            index = public.index_of(holder)
            values = _split(message["partials"][k * part_len:(k + 1) * part_len], width)
            verify(public, index, cts, values, message["proofs"][k * proof_len:(k + 1) * proof_len], context)
            partials[index] = values
        started = time.perf_counter()
        try:
            plaintext = codec.combine_plaintext(partials)  # type: ignore[union-attr]
            total = codec.decode_plaintext(plaintext, self._contributors)  # type: ignore[union-attr]
        except (DecryptionError, MessageError, HeadroomError):
            raise DecryptionError("decryption failed") from None
        self.state.setdefault(RESULTS_SLOT, {})[self.round_id] = split_weighted(total, self.protocol.max_weight)
        return self._reply(ACK.kind, {"key_id": self.keys.key_id, "decrypt_seconds": time.perf_counter() - started})
