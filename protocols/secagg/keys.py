"""SecAgg key agreement and derivation: X25519, HKDF-SHA256 with domain separation, AES-256-GCM for shares.

Threat model: an honest-but-curious server relays every public key and ciphertext and records them. Under the
computational Diffie-Hellman assumption on Curve25519 and HKDF-SHA256 as a KDF, nobody without one of a pair's
private keys learns anything about the keys derived for that pair. Every derived key is domain-separated: the HKDF
salt binds protocol name, protocol version, round id and the round's public session nonce; the info binds the
purpose (share encryption, pairwise mask, self mask, self-mask commitment) and the ordered pair of client ids
(sender -> recipient for encryption, (min, max) for the symmetric mask). Keys of two rounds, two sessions, two
purposes or two directions are therefore independent, and the X25519 keys themselves are fresh per round.
Share ciphertexts are AES-256-GCM under a single-use key with a random 96-bit nonce and associated data binding
protocol, version, round, session, sender and recipient: a tampered, replayed or misrouted ciphertext fails
authentication with one opaque :class:`~protocols.errors.DecryptionError`. Limits: there is no PKI and no
signature, so a *malicious* server could substitute public keys (man in the middle); this module assumes the server
relays keys faithfully. Private keys and derived secrets never appear in exceptions or ``repr``.
"""

from __future__ import annotations

import hashlib
import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import DecryptionError, MessageError

__all__ = [
    "PROTOCOL_LABEL",
    "PROTOCOL_VERSION",
    "PURPOSE_SHARE",
    "PURPOSE_MASK",
    "PURPOSE_SELF",
    "PURPOSE_COMMIT",
    "KEY_BYTES",
    "NONCE_BYTES",
    "TAG_BYTES",
    "generate_private_key",
    "public_bytes",
    "private_bytes",
    "private_from_bytes",
    "agree",
    "round_salt",
    "derive",
    "share_key",
    "mask_key",
    "self_mask_key",
    "commit_self_mask",
    "associated_data",
    "encrypt",
    "decrypt",
]

PROTOCOL_LABEL = b"privfed/secagg"
PROTOCOL_VERSION = 1
PURPOSE_SHARE = b"share-encryption"
PURPOSE_MASK = b"pairwise-mask"
PURPOSE_SELF = b"self-mask"
PURPOSE_COMMIT = b"self-mask-commitment"
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
_SELF = -1  # the "peer" slot of single-party derivations


def generate_private_key() -> X25519PrivateKey:
    """A fresh X25519 key from the OS (OpenSSL's generator seeded by the OS)."""
    return X25519PrivateKey.generate()


def public_bytes(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def private_bytes(key: X25519PrivateKey) -> bytes:
    return key.private_bytes_raw()


def private_from_bytes(raw: bytes) -> X25519PrivateKey:
    if len(raw) != KEY_BYTES:
        raise MessageError("an X25519 private key is 32 bytes")
    return X25519PrivateKey.from_private_bytes(raw)


def agree(private: X25519PrivateKey, peer_public: bytes) -> bytes:
    """X25519 shared secret; a malformed or low-order peer key raises MessageError (never a zero secret)."""
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(bytes(peer_public)))
    except ValueError:
        raise MessageError("peer public key is invalid or of low order") from None


def round_salt(round_id: int, session: bytes) -> bytes:
    """HKDF salt binding protocol, version, round and the round's public session nonce."""
    return hashlib.sha256(b"%s|salt|v%d|" % (PROTOCOL_LABEL, PROTOCOL_VERSION)
                          + struct.pack("<Q", round_id) + bytes(session)).digest()


def _info(purpose: bytes, round_id: int, first: int, second: int) -> bytes:
    return (PROTOCOL_LABEL + b"|v%d|" % PROTOCOL_VERSION + purpose + b"|"
            + struct.pack("<Qqq", round_id, first, second))


def derive(secret: bytes, salt: bytes, purpose: bytes, round_id: int, first: int, second: int) -> bytes:
    """32 bytes of HKDF-SHA256(secret; salt; protocol|version|purpose|round|first|second)."""
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt,
                info=_info(purpose, round_id, first, second)).derive(secret)


def share_key(shared: bytes, salt: bytes, round_id: int, sender: int, recipient: int) -> bytes:
    """The single-use AES-256-GCM key for sender -> recipient share ciphertexts (direction-bound)."""
    return derive(shared, salt, PURPOSE_SHARE, round_id, sender, recipient)


def mask_key(shared: bytes, salt: bytes, round_id: int, u: int, v: int) -> bytes:
    """The AES-CTR key of the pairwise mask of {u, v} (ordered as (min, max): both ends derive the same key)."""
    return derive(shared, salt, PURPOSE_MASK, round_id, min(u, v), max(u, v))


def self_mask_key(seed: bytes, salt: bytes, round_id: int, owner: int) -> bytes:
    """The AES-CTR key of ``owner``'s self mask, from its 256-bit seed b_u."""
    return derive(seed, salt, PURPOSE_SELF, round_id, owner, _SELF)


def commit_self_mask(seed: bytes, salt: bytes, round_id: int, owner: int) -> bytes:
    """A binding, hiding (the seed has 256 bits of entropy) commitment to b_u, checked after reconstruction."""
    return derive(seed, salt, PURPOSE_COMMIT, round_id, owner, _SELF)


def associated_data(round_id: int, session: bytes, sender: int, recipient: int) -> bytes:
    return (PROTOCOL_LABEL + b"|v%d|shares|" % PROTOCOL_VERSION
            + struct.pack("<Qqq", round_id, sender, recipient) + bytes(session))


def encrypt(key: bytes, plaintext: bytes, ad: bytes) -> bytes:
    """nonce || AES-256-GCM(key, nonce, plaintext, ad)."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, ad)


def decrypt(key: bytes, ciphertext: bytes, ad: bytes) -> bytes:
    """The plaintext, or one opaque DecryptionError for any tampering, misrouting or replay."""
    if len(ciphertext) < NONCE_BYTES + TAG_BYTES:
        raise DecryptionError("share ciphertext failed authentication")
    try:
        return AESGCM(key).decrypt(ciphertext[:NONCE_BYTES], ciphertext[NONCE_BYTES:], ad)
    except InvalidTag:
        raise DecryptionError("share ciphertext failed authentication") from None
