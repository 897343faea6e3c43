"""Long-term client identities for the active-adversary modes: Ed25519 signing keys and a public roster.

Threat model: a **registrar** runs once, before any round, in a trusted setup (like the HE key authority): it makes
one Ed25519 key pair per client, publishes the *roster* (client id -> public signing key) and hands each client
its own private key file (private to that client; the server never holds one). Afterwards the server is untrusted:
it relays every message, and every message whose authenticity matters (SecAgg key advertisements, consistency-check
signatures, HE contributions) carries an Ed25519 signature over a domain-separated, round- and session-bound byte
string (:func:`signed_bytes`). A malicious server can therefore not forge a client's key advertisement (no man in
the middle), not invent clients (no Sybils: only roster members sign), and not replay a signed message from
another round, session, protocol or purpose. Assumptions: the roster reaches every client unmodified (it is public
and can be pinned, e.g. by its digest :meth:`Roster.digest`), EUF-CMA security of Ed25519 (``cryptography`` /
OpenSSL), and private key files that stay private. Limits: the registrar is trusted during setup (it saw every
private key; it should delete them after distribution); a corrupted client signs whatever it likes, which the
thresholds of the protocols that use signatures account for.

Files: the roster is JSON ``{"format": "privfed-roster/1", "algorithm": "ed25519", "members": {"<id>": "<hex>"}}``;
a key file is JSON ``{"format": "privfed-signing-key/1", "client_id": <id>, "private_key": "<hex>"}`` written with
mode 0600. Every check that fails raises :class:`ActiveCheckFailed`, which names the check (``check``) and never
carries key material.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, MutableMapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import ConfigError, ProtocolAbort

__all__ = [
    "ROSTER_FORMAT",
    "KEY_FORMAT",
    "SIGNATURE_BYTES",
    "PUBLIC_KEY_BYTES",
    "ActiveCheckFailed",
    "SigningIdentity",
    "Roster",
    "IdentitySource",
    "make_identities",
    "signed_bytes",
    "key_file_name",
    "write_roster",
    "write_key_file",
    "read_roster",
    "read_key_file",
]

ROSTER_FORMAT = "privfed-roster/1"
KEY_FORMAT = "privfed-signing-key/1"
SIGNATURE_BYTES = 64
PUBLIC_KEY_BYTES = 32
_LABEL = b"privfed/identity/v1"
IDENTITY_SLOT = "privfed.identity"


class ActiveCheckFailed(ProtocolAbort):
    """An active-adversary check failed; ``check`` names it (e.g. ``advertisement-signature``)."""

    def __init__(self, check: str, detail: str) -> None:
        super().__init__(f"active check '{check}' failed: {detail}")
        self.check = check


@dataclass(frozen=True)
class SigningIdentity:
    """One client's private signing key (kept in that client's state; ``repr`` never shows it)."""

    client_id: int
    private_key: Ed25519PrivateKey = field(repr=False)

    @property
    def public_bytes(self) -> bytes:
        return self.private_key.public_key().public_bytes_raw()

    def sign(self, data: bytes) -> bytes:
        return self.private_key.sign(data)


def _valid_id(cid: Any) -> bool:
    return isinstance(cid, int) and not isinstance(cid, bool) and 0 <= cid < (1 << 32) - 1


@dataclass(frozen=True)
class Roster:
    """The public binding of client ids to Ed25519 public keys (validated: distinct ids and keys, valid points)."""

    members: Mapping[int, bytes]

    def __post_init__(self) -> None:
        members = dict(self.members)
        if not members:
            raise ConfigError("a roster needs at least one member")
        for cid, key in members.items():
            if not _valid_id(cid):
                raise ConfigError(f"roster: client id {cid!r} is not an integer in 0 .. 2^32 - 2")
            if not isinstance(key, (bytes, bytearray)) or len(key) != PUBLIC_KEY_BYTES:
                raise ConfigError(f"roster: the key of client {cid} is not a 32-byte Ed25519 public key")
            try:
                Ed25519PublicKey.from_public_bytes(bytes(key))
            except ValueError:
                raise ConfigError(f"roster: the key of client {cid} is not a valid Ed25519 point") from None
        if len({bytes(k) for k in members.values()}) != len(members):
            raise ConfigError("roster: two clients share one public key (a duplicated signer)")
        object.__setattr__(self, "members", {int(c): bytes(k) for c, k in sorted(members.items())})
        object.__setattr__(self, "_keys", {c: Ed25519PublicKey.from_public_bytes(k) for c, k in members.items()})

    def __len__(self) -> int:
        return len(self.members)

    def __contains__(self, cid: object) -> bool:
        return cid in self.members

    def digest(self) -> bytes:
        """SHA-256 of the canonical roster (pin it to detect a substituted roster)."""
        h = hashlib.sha256(_LABEL + b"|roster")
        for cid, key in self.members.items():
            h.update(struct.pack("<Q", cid) + key)
        return h.digest()

    def require(self, ids: Iterable[int], check: str = "roster") -> None:
        """Raise unless every id is a roster member."""
        unknown = sorted(c for c in ids if c not in self.members)
        if unknown:
            raise ActiveCheckFailed(check, f"clients {unknown} are not in the roster")

    def verify(self, signer: int, data: bytes, signature: bytes, check: str) -> None:
        """Raise :class:`ActiveCheckFailed` (naming ``check``) unless ``signature`` is ``signer``'s over ``data``."""
        key = self._keys.get(signer)  # type: ignore[attr-defined]
        if key is None:
            raise ActiveCheckFailed(check, f"signer {signer} is not in the roster")
        if not isinstance(signature, (bytes, bytearray)) or len(signature) != SIGNATURE_BYTES:
            raise ActiveCheckFailed(check, f"the signature of client {signer} is malformed")
        try:
            key.verify(bytes(signature), data)
        except InvalidSignature:
            raise ActiveCheckFailed(check, f"the signature of client {signer} does not verify") from None

    def to_json(self) -> dict[str, Any]:
        return {"format": ROSTER_FORMAT, "algorithm": "ed25519",
                "members": {str(c): k.hex() for c, k in self.members.items()}}

    @classmethod
    def from_json(cls, data: Any) -> "Roster":
        if not isinstance(data, dict) or data.get("format") != ROSTER_FORMAT or data.get("algorithm") != "ed25519":
            raise ConfigError(f"not a {ROSTER_FORMAT} ed25519 roster")
        members = data.get("members")
        if not isinstance(members, dict):
            raise ConfigError("roster: 'members' must map client ids to hex keys")
        try:
            parsed = {int(c): bytes.fromhex(k) for c, k in members.items()}
        except (TypeError, ValueError):
            raise ConfigError("roster: member ids must be integers and keys hex strings") from None
        if len(parsed) != len(members):
            raise ConfigError("roster: a client id is listed twice")
        return cls(parsed)


def signed_bytes(purpose: str, protocol: str, round_id: int, session: bytes, signer: int, *parts: bytes) -> bytes:
    """The canonical byte string a signature covers: label, purpose, protocol, round, session, signer and the
    length-prefixed parts. Two purposes, rounds, sessions, protocols or signers never produce the same string."""
    out = [_LABEL, b"|", purpose.encode(), b"|", protocol.encode(), b"|", struct.pack("<Qq", round_id, signer),
           struct.pack("<Q", len(session)), bytes(session)]
    for part in parts:
        out += [struct.pack("<Q", len(part)), bytes(part)]
    return b"".join(out)


def make_identities(ids: Iterable[int]) -> tuple[Roster, dict[int, SigningIdentity]]:
    """The registrar: a fresh key pair per id (from the OS) and the roster of their public keys."""
    identities = {}
    for cid in ids:
        if not _valid_id(cid):
            raise ConfigError(f"client id {cid!r} is not an integer in 0 .. 2^32 - 2")
        identities[cid] = SigningIdentity(cid, Ed25519PrivateKey.generate())
    if not identities:
        raise ConfigError("the registrar needs at least one client id")
    return Roster({c: i.public_bytes for c, i in identities.items()}), identities


def key_file_name(client_id: int) -> str:
    return f"client-{client_id}.key.json"


def write_roster(path: str | os.PathLike, roster: Roster) -> None:
    Path(path).write_text(json.dumps(roster.to_json(), indent=1) + "\n")


def write_key_file(directory: str | os.PathLike, identity: SigningIdentity) -> Path:
    """Write ``identity`` to ``directory/client-<id>.key.json`` readable by its owner only (mode 0600)."""
    path = Path(directory) / key_file_name(identity.client_id)
    raw = identity.private_key.private_bytes_raw().hex()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"format": KEY_FORMAT, "client_id": identity.client_id, "private_key": raw}, handle)
    return path


def read_roster(path: str | os.PathLike) -> Roster:
    try:
        return Roster.from_json(json.loads(Path(path).read_text()))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read roster {path}: {type(exc).__name__}") from None


def read_key_file(path: str | os.PathLike, roster: Roster | None = None) -> SigningIdentity:
    """Load a key file; with ``roster``, check that its public key is the one the roster binds to its id."""
    try:
        data = json.loads(Path(path).read_text())
        if data.get("format") != KEY_FORMAT:
            raise ValueError
        cid, raw = int(data["client_id"]), bytes.fromhex(data["private_key"])
        identity = SigningIdentity(cid, Ed25519PrivateKey.from_private_bytes(raw))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise ConfigError(f"{path} is not a readable {KEY_FORMAT} file") from None
    if roster is not None and roster.members.get(cid) != identity.public_bytes:
        raise ActiveCheckFailed("roster", f"the key file of client {cid} does not match the roster")
    return identity


class IdentitySource:
    """Where a protocol gets its roster and each client its signing key.

    With ``roster_path`` (and ``key_dir``), the registrar's files are loaded; without, an in-process registrar
    enrolls the round's clients on first use (simulation only: it is trusted setup run by the same process), at
    most ``capacity`` of them when given (the roster size a sampling server draws cohorts from). Each client's
    identity is kept in its persistent ``state`` like any long-lived key.
    """

    def __init__(self, roster_path: str | None = None, key_dir: str | None = None,
                 capacity: int | None = None) -> None:
        if key_dir is not None and roster_path is None:
            raise ConfigError("key_dir needs a roster")
        self.roster_path, self.key_dir, self.capacity = roster_path, key_dir, capacity
        self._roster: Roster | None = read_roster(roster_path) if roster_path else None
        self._issued: dict[int, SigningIdentity] = {}

    def roster_for(self, ids: Iterable[int]) -> Roster:
        """The roster, enrolling missing ids with the in-process registrar (file rosters are never extended)."""
        ids = list(ids)
        if self.roster_path is not None:
            assert self._roster is not None
            self._roster.require(ids)
            return self._roster
        missing = list(dict.fromkeys(c for c in ids if self._roster is None or c not in self._roster))
        if missing and self.capacity is not None and len(self._issued) + len(missing) > self.capacity:
            raise ActiveCheckFailed("roster", f"enrolling clients {missing[:5]} would exceed the roster size "
                                              f"{self.capacity}")
        if missing:
            _, fresh = make_identities(missing)
            self._issued.update(fresh)
            self._roster = Roster({c: i.public_bytes for c, i in self._issued.items()})
        assert self._roster is not None
        return self._roster

    @property
    def size(self) -> int | None:
        """The roster's size: the file's, else the capacity of the in-process registrar (None: unbounded)."""
        return len(self._roster) if self.roster_path is not None and self._roster is not None else self.capacity

    def identity(self, client_id: int, state: MutableMapping[str, Any]) -> SigningIdentity:
        """Client ``client_id``'s signing key: from its state, its key file, or the in-process registrar."""
        roster = self.roster_for([client_id])
        held = state.get(IDENTITY_SLOT) if isinstance(state, MutableMapping) else None
        if isinstance(held, SigningIdentity) and roster.members.get(client_id) == held.public_bytes:
            return held
        if self.key_dir is not None:
            identity = read_key_file(Path(self.key_dir) / key_file_name(client_id), roster)
        elif self.roster_path is not None:
            raise ConfigError(f"client {client_id} has no signing key: give key_dir with its key file")
        else:
            identity = self._issued[client_id]
        if identity.client_id != client_id:
            raise ActiveCheckFailed("roster", f"the key file for client {client_id} names another client")
        state[IDENTITY_SLOT] = identity
        return identity
