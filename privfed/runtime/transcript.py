"""Transcripts: what each party received, as kind, size and a keyed digest, never the content.

Threat model: a transcript is written to the run directory, which is meant to be shared. Many messages are a
function of a client's data (a plaintext or clipped update, a local-DP update before the protocol hides it), and
training is seeded, so an unkeyed hash of such a message repeats across runs of the same configuration: anyone with
a candidate data set could rerun the experiment and confirm membership by comparing hashes, defeating DP and
encryption for every reader of the directory. Every digest is therefore HMAC-SHA256 under a :class:`TranscriptKey`
of 32 bytes from :mod:`secrets`, created per run (or per round when no run key is given) and never written: it has no
serialisation, no ``repr`` of its bytes and refuses pickling. Within the run that holds the key, equal messages have
equal digests (so what was sent can be matched with what was received); two runs share none.

Known limits: the kind and size of each message stay visible (fixed by the protocol, not by the data: vectors have
the model's length; SEAL's compression makes CKKS ciphertexts vary by a few bytes, which under RLWE reveals nothing
about the plaintext); who took part and who dropped out is recorded (the server
observes it anyway). A key lives only in the process: a resumed run gets a new one, so digests of rounds before and
after a resume are not comparable (each round's are).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import NoReturn

from protocols.errors import MessageError
from protocols.wire import peek_header

__all__ = ["TranscriptKey", "TranscriptEntry", "transcript_entry", "DIGEST_FIELD", "KEY_BYTES"]

#: the name of the keyed digest in transcript entries and audit reports (says what it is: never a plain hash)
DIGEST_FIELD = "hmac_sha256"
KEY_BYTES = 32


class TranscriptKey:
    """A per-run HMAC-SHA256 key drawn from the OS (:func:`secrets.token_bytes`); it cannot be written anywhere."""

    __slots__ = ("_key",)

    def __init__(self) -> None:
        self._key = secrets.token_bytes(KEY_BYTES)

    def digest(self, payload: bytes) -> str:
        """HMAC-SHA256 of ``payload`` under this key, as 64 hex characters."""
        return hmac.new(self._key, bytes(payload), hashlib.sha256).hexdigest()

    def matches(self, payload: bytes, digest: str) -> bool:
        """Whether ``digest`` is this key's digest of ``payload`` (constant time)."""
        return hmac.compare_digest(self.digest(payload), str(digest))

    def __repr__(self) -> str:
        return "TranscriptKey(<per-run secret, never written>)"

    def __reduce__(self) -> NoReturn:
        raise TypeError("a TranscriptKey is never serialised: it lives only in the process that runs the rounds")

    def __copy__(self) -> "TranscriptKey":
        return self  # one key per run: copies share it

    def __deepcopy__(self, memo: dict) -> "TranscriptKey":
        return self


@dataclass(frozen=True)
class TranscriptEntry:
    """One delivered message: who received it, in which phase, its kind, size and keyed digest."""

    phase: str
    sender: str
    recipient: str
    kind: str
    size: int
    hmac_sha256: str

    def as_dict(self) -> dict[str, object]:
        return {"phase": self.phase, "sender": self.sender, "recipient": self.recipient, "kind": self.kind,
                "size": self.size, DIGEST_FIELD: self.hmac_sha256}


def transcript_entry(phase: str, sender: str, recipient: str, payload: bytes, key: TranscriptKey) -> TranscriptEntry:
    """What the transcript records of one delivered message: kind, size and keyed digest, never the content."""
    if not isinstance(key, TranscriptKey):
        raise TypeError("transcript_entry needs a TranscriptKey: an unkeyed digest of a message would fingerprint "
                        "the client data it carries")
    try:
        kind = peek_header(payload)[1]
    except MessageError:
        kind = "<malformed>"
    return TranscriptEntry(phase, sender, recipient, kind, len(payload), key.digest(payload))
