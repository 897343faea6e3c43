"""HE key holders under a deviating server: decrypt only a checked sum of signed contributions, once per round.

Threat model: the aggregating server is **malicious** for privacy: it may ask a key holder to decrypt one client's
ciphertext (``decrypt-individual``), a sum padded with copies or with ciphertexts from another round whose plaintext
it already knows (``replay``), or ask twice. Defence (``active=True`` on ``paillier``/``ckks``): each contributor
signs, with its roster key (:mod:`protocols.identity`), a digest of its ciphertexts bound to protocol, round, the
key id, its own id and the round's **freshness list**: in the setup phase every client sends a fresh 16-byte nonce
from the OS, the server relays the list of nonces with the upload request, and contributors sign over its digest.
A key holder accepts only contributions signed over a list that holds its own nonce of this round, so no signature
made before this round — in an earlier round or an earlier run under the same key and round number — is accepted. In the decrypt phase the server relays the signed contributions themselves — never a sum —
and the key holder checks that there are at least ``min_clients`` of them from distinct roster members, that every
signature verifies for *this* round and key, recomputes the homomorphic sum itself from the relayed ciphertexts and
decrypts only that, at most once per round. So whatever the server does, a released plaintext is the sum of at
least ``min_clients`` distinct clients' inputs of this round.

**Known hole (review of issue 14, not fixed): differencing across key holders.** "Once per round" is per key
holder. Every contributor holds the key, so a malicious server can ask holder A to decrypt the signed set S and
holder B the set S minus the victim (both >= ``min_clients``, both fresh and signed for this round) and subtract the
two released sums: the victim's input. Threshold decryption has the same hole whenever two groups of T holders
can be formed without a common honest holder. Closing it needs the holders to agree on one contribution set (a
consistency round in which contributors sign the set, as in :mod:`protocols.secagg.active`); until then
:func:`protects_against_malicious_server` refuses ``release="server"`` and ``decryption="threshold"``, and accepts
only the shared key with ``release="key-holders"`` (the server never receives a plaintext). A restarted key holder
(a second machine for the round) is refused by :mod:`protocols.active_once`.

Cost (stated, and measured by ``benchmarks/bench_active.py``): the key holder downloads every contribution instead
of one summed ciphertext (k times the download), verifies k Ed25519 signatures (~0.1 ms each) and redoes the k
homomorphic additions; each contributor uploads 64 signature bytes. Limits: it protects each input's privacy, not
the correctness of the sum (a malicious server can drop contributions or abort); any key holder colluding with the
server still decrypts everything (shared client key); corrupted clients can contribute chosen inputs, so with
``min_clients`` = m a server with m - 1 corrupted clients learns the one honest input from the sum — choose
``min_clients`` above the number of corrupted clients you tolerate. The registrar is trusted during setup.
"""

from __future__ import annotations

import hashlib
import os
import struct
from typing import Any, Sequence

from .errors import MessageError
from .identity import SIGNATURE_BYTES, ActiveCheckFailed, Roster, SigningIdentity, signed_bytes
from .wire import FieldSpec, Message, MessageSpec, decode, encode, peek_header

__all__ = [
    "NONCE_BYTES",
    "NONCE_FIELD",
    "new_nonce",
    "freshness_digest",
    "check_own_nonce",
    "SIGNATURE_FIELD",
    "DECRYPT_CONTRIBUTIONS",
    "contribution_digest",
    "sign_contribution",
    "contribution_message",
    "checked_contributions",
    "protects_against_malicious_server",
]

NONCE_BYTES = 16
NONCE_FIELD = FieldSpec("bytes", length=NONCE_BYTES)
SIGNATURE_FIELD = FieldSpec("bytes", length=SIGNATURE_BYTES)
#: the active decrypt request: the signed contributions themselves (each an encoded ``contribution`` message)
DECRYPT_CONTRIBUTIONS = "decrypt-contributions"
_CONTRIBUTION = "contribution"


def new_nonce() -> bytes:
    """This client's freshness nonce for one round (OS randomness)."""
    return os.urandom(NONCE_BYTES)


def freshness_digest(ids: Sequence[int], nonces: Sequence[bytes]) -> bytes:
    """SHA-256 of the round's (id, nonce) list as relayed by the server."""
    h = hashlib.sha256(b"privfed/he-freshness/v1")
    for cid, nonce in zip(ids, nonces):
        h.update(struct.pack("<q", int(cid)) + bytes(nonce))
    return h.digest()


def check_own_nonce(client_id: int, nonce: bytes, ids: Any, nonces: Sequence[bytes]) -> bytes:
    """The digest of the relayed freshness list after checking it is well formed and holds this client's nonce."""
    ids = [int(v) for v in ids]
    if len(ids) != len(nonces) or len(set(ids)) != len(ids) or any(len(n) != NONCE_BYTES for n in nonces):
        raise ActiveCheckFailed("freshness", "the relayed nonce list is malformed or lists a client twice")
    if dict(zip(ids, (bytes(n) for n in nonces))).get(client_id) != nonce:
        raise ActiveCheckFailed("freshness", "the relayed nonce list does not hold this client's nonce of this "
                                             "round (a replay from another round or run)")
    return freshness_digest(ids, nonces)


def contribution_digest(protocol: str, round_id: int, sender: int, ciphertexts: Any) -> bytes:
    """SHA-256 of the canonical encoding of one client's ciphertexts (what its signature covers)."""
    return hashlib.sha256(encode(Message(protocol, _CONTRIBUTION, round_id, sender,
                                         {"ciphertexts": ciphertexts}))).digest()


def _signed(protocol: str, round_id: int, key_id: bytes, freshness: bytes, sender: int, ciphertexts: Any) -> bytes:
    return signed_bytes("he-contribution", protocol, round_id, key_id, sender, freshness,
                        contribution_digest(protocol, round_id, sender, ciphertexts))


def sign_contribution(identity: SigningIdentity, protocol: str, round_id: int, key_id: bytes, freshness: bytes,
                      ciphertexts: Any) -> bytes:
    return identity.sign(_signed(protocol, round_id, key_id, freshness, identity.client_id, ciphertexts))


def contribution_message(protocol: str, round_id: int, sender: int, ciphertexts: Any, signature: bytes) -> bytes:
    """One signed contribution as the server relays it to a key holder."""
    return encode(Message(protocol, _CONTRIBUTION, round_id, sender,
                          {"ciphertexts": ciphertexts, "signature": signature}))


def checked_contributions(contributions: Sequence[bytes], *, protocol: str, round_id: int, key_id: bytes,
                          freshness: bytes, roster: Roster, min_clients: int, ciphertext_field: FieldSpec, max_bytes: int,
                          ) -> list[Any]:
    """The ciphertexts of ``contributions`` after every check, or :class:`ActiveCheckFailed` naming the one that
    failed: ``contributions`` (too few), ``duplicate-signer``, ``roster`` (unknown signer), ``replay`` (another
    round or protocol), ``contribution-signature`` (a signature that does not verify for this round, key and
    freshness list ``freshness``, the digest :func:`check_own_nonce` returned)."""
    if len(contributions) < min_clients:
        raise ActiveCheckFailed("contributions", f"{len(contributions)} signed contributions relayed, a decryption "
                                                 f"needs at least min_clients = {min_clients}")
    spec = MessageSpec(_CONTRIBUTION, {"ciphertexts": ciphertext_field, "signature": SIGNATURE_FIELD},
                       max_bytes=max_bytes)
    seen: set[int] = set()
    out = []
    for raw in contributions:
        try:
            name, kind, rid, sender = peek_header(bytes(raw))
        except MessageError:
            raise ActiveCheckFailed("contribution-signature", "a relayed contribution is malformed") from None
        if name != protocol or rid != round_id:
            raise ActiveCheckFailed("replay", f"a contribution of client {sender} belongs to round {rid} of "
                                              f"{name!r}, this is round {round_id} of {protocol!r}")
        if sender in seen:
            raise ActiveCheckFailed("duplicate-signer", f"client {sender} appears twice among the contributions")
        if sender not in roster:
            raise ActiveCheckFailed("roster", f"contributor {sender} is not in the roster")
        message = decode(bytes(raw), spec, protocol=protocol, round_id=round_id, sender=sender)
        roster.verify(sender, _signed(protocol, round_id, key_id, freshness, sender, message["ciphertexts"]),
                      message["signature"], "contribution-signature")
        seen.add(sender)
        out.append(message["ciphertexts"])
    return out


def protects_against_malicious_server(options: Any) -> tuple[bool, str]:
    """Whether an HE protection with ``options`` claims input privacy against a malicious server, and why."""
    if not options.get("active"):
        return False, ("a semi-honest key holder decrypts whatever the server sends (one client's ciphertext, or a "
                       "sum padded with a replayed one); use -o active=true (signed contributions, checked sums)")
    if options.get("decryption") == "threshold" or options.get("release", "server") == "server":
        return False, ("differencing across key holders: each honest key holder decrypts once per round, but a "
                       "malicious server can ask two of them (or two groups of T threshold holders) to decrypt two "
                       "signed contribution sets of one round that differ by one client and subtract the released "
                       "sums; no agreement on one contribution set exists yet (see SECURITY.md); use "
                       "release=key-holders with the shared key (the server then receives no plaintext at all)")
    return True, ("active mode: a key holder decrypts only its own recomputation of the sum of >= min_clients "
                  "signed contributions of the round, once; the server can still abort, drop clients or corrupt "
                  "the sum, and any key holder colluding with it still decrypts everything")
