"""The round shared by the HE protections (CKKS, packed Paillier, per-value Paillier): setup, upload, decrypt.

Threat model: the aggregating server is honest-but-curious and holds public key material only; a key authority
(:mod:`protocols.keyauthority`) gave the secret key to the clients. The server sees ciphertexts of each client's
``[w' x, w']`` (``w' = w / max_weight``), adds them, and asks a surviving key-holding client to decrypt **the sum**.
Hidden from the server: every individual update and weight. Not hidden: the aggregate (with ``release="server"``
the decrypted sum is handed to the server — that is its name and ``learned_by`` says so; with
``release="key-holders"`` only the clients learn it and the server's result holds no mean), who took part, sizes
and timing. Limits stated plainly:

* any single key-holding client colluding with the server decrypts everyone's updates (shared client key; packed
  Paillier with ``decryption="threshold"`` replaces this decrypt phase, see :mod:`protocols.threshold_round`);
* the decrypting client checks the server's claim of how many updates are in the sum (>= ``min_clients``), but it
  cannot verify it: a malicious server could ask it to decrypt one client's ciphertext. The protection holds
  against an honest-but-curious server, not a malicious one (that needs threshold decryption or proofs);
* with fewer than 3 contributors each one learns the other's update from the mean, so rounds with fewer than
  ``min_clients`` (default 3; lowering it below 3 needs ``allow_small_rounds=True``) are refused;
* HE hides individual updates, not the aggregate: combine with DP for output privacy;
* clients are trusted to encode honestly (no proofs that inputs are in range); a malformed or out-of-range
  ciphertext that passes the structural checks corrupts the sum.

Phases: ``setup`` (server sends the key id and the round's public parameters; each client checks them against its
own recomputation, precomputes what it can and answers ``ready``), ``upload`` (ciphertexts; deserialised, checked
and added as they arrive), ``decrypt`` (the sum goes to one surviving key holder — the next one if it drops — or,
with ``release="key-holders"``, to all of them).
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, MutableMapping, Sequence

import numpy as np

from .base import (LEARNED_BY_KEY_HOLDERS, LEARNED_BY_SERVER, AggregateResult, AggregationProtocol,
                   ClientStateMachine, ClientUpdate, Outgoing, ServerStateMachine)
from .encoding import split_weighted, weighted_mean_error_bound, weighted_vector
from .errors import ConfigError, DecryptionError, HeadroomError, MessageError, PrivfedError, ProtocolAbort
from .keyauthority import KEY_MODE, KeyAuthority, provision
from .wire import FieldSpec, Message, MessageSpec, decode, encode

__all__ = ["HEProtocol", "ServerCodec", "ClientCodec", "RELEASES", "RESULTS_SLOT", "DEFAULT_MIN_CLIENTS"]

RELEASES = ("server", "key-holders")
#: the fewest contributions a key holder decrypts a sum of, unless the options say more
DEFAULT_MIN_CLIENTS = 3
#: where a key holder keeps the means it decrypted (``state[RESULTS_SLOT][round_id] = (mean, total_weight)``)
RESULTS_SLOT = "privfed.he.results"
_KEY_ID = FieldSpec("bytes", length=32)
SETUP = MessageSpec("setup-request", {"key_id": _KEY_ID, "dim": FieldSpec("int", min_value=1),
                                      "max_clients": FieldSpec("int", min_value=1),
                                      "params": FieldSpec("str", max_length=1024)}, max_bytes=4096)
READY = MessageSpec("ready", {"key_id": _KEY_ID, "precompute_seconds": FieldSpec("float", min_value=0.0)},
                    max_bytes=4096)
UPLOAD = MessageSpec("upload-request", {"params": FieldSpec("str", max_length=1024)}, max_bytes=4096)
ACK = MessageSpec("ack", {"key_id": _KEY_ID, "decrypt_seconds": FieldSpec("float", min_value=0.0)},
                  max_bytes=4096)


class ServerCodec(ABC):
    """Public-key side of one round: parse, check and add ciphertexts; decode a released plaintext sum."""

    params: str                 # the round's public parameters as a canonical string (clients recompute it)
    ciphertext_field: FieldSpec
    plaintext_field: FieldSpec
    max_message_bytes: int

    @abstractmethod
    def parse(self, ciphertexts: Any) -> Any:
        """Validate one client's ciphertexts fully (MessageError) before anything is added."""

    @abstractmethod
    def add(self, parsed: Any) -> None:
        """Add validated ciphertexts to the running sum."""

    @abstractmethod
    def sum_ciphertexts(self) -> Any:
        """The encrypted sum as the ``ciphertexts`` field value."""

    @abstractmethod
    def decode_plaintext(self, plaintext: Any, n_summed: int) -> np.ndarray:
        """A key holder's released plaintext -> float64 sum of ``[w' x, w']`` (MessageError if impossible)."""

    @abstractmethod
    def sum_error(self, n_summed: int) -> float:
        """Bound on |decoded - exact| per coordinate of the weighted sum."""

    def info(self) -> Mapping[str, Any]:
        return {}


class ClientCodec(ABC):
    """Secret-key side: precompute, encrypt one weighted vector, decrypt a sum into the compact release form."""

    @abstractmethod
    def precompute(self) -> None:
        """Work that does not need the update (done in the setup phase)."""

    @abstractmethod
    def encrypt(self, vector: np.ndarray) -> Any:
        """``[w' x, w']`` (float64) -> the ``ciphertexts`` field value."""

    @abstractmethod
    def decrypt(self, ciphertexts: Any) -> Any:
        """The encrypted sum -> the ``plaintext`` field value (raise DecryptionError, opaque)."""


@dataclass(frozen=True)
class HEProtocol(AggregationProtocol):
    """Options shared by the HE protections (validated in ``__post_init__``; keys are made lazily, never here)."""

    phases: ClassVar[tuple[str, ...]] = ("setup", "upload", "decrypt")
    upload_phase: ClassVar[str] = "upload"
    key_slot: ClassVar[str] = "privfed.he.keys"
    #: the state machines (a variant with another decrypt phase, e.g. threshold decryption, subclasses them)
    server_type: ClassVar[type | None] = None
    client_type: ClassVar[type | None] = None

    min_clients: int = DEFAULT_MIN_CLIENTS
    allow_small_rounds: bool = False
    release: str = "server"
    max_weight: float = 1.0
    clip: float = 1.0
    #: active=True: key holders decrypt only a sum they recompute from >= min_clients signed contributions of
    #: this round, once (see protocols.he_active); roster / key_dir as for active SecAgg (protocols.identity)
    active: bool = False
    roster: str | None = None
    key_dir: str | None = None
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.min_clients, int) or self.min_clients < 1:
            raise ConfigError("min_clients must be a positive integer")
        if self.min_clients < 3 and not self.allow_small_rounds:
            raise ConfigError("HE rounds with fewer than 3 contributors let each client learn the other's update "
                              "from the mean; min_clients < 3 needs allow_small_rounds=True")
        if self.release not in RELEASES:
            raise ConfigError(f"release must be one of {RELEASES}, got {self.release!r}")
        for name in ("max_weight", "clip"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be positive and finite, got {value!r}")
        if not isinstance(self.active, bool):
            raise ConfigError(f"active must be true or false, got {self.active!r}")
        if (self.roster is not None or self.key_dir is not None) and not self.active:
            raise ConfigError("roster and key_dir apply to active=true only")

    # -- what each scheme supplies -------------------------------------------------------------------------------
    @abstractmethod
    def _make_authority(self) -> KeyAuthority:
        """Create the key authority (called once per protocol instance, on first use)."""

    @abstractmethod
    def server_codec(self, public_material: bytes, dim: int, max_clients: int) -> ServerCodec:
        """The public-side codec, built from public material only."""

    @abstractmethod
    def client_codec(self, keys: Any, dim: int, max_clients: int) -> ClientCodec:
        """The secret-side codec for one client."""

    # -- shared machinery ----------------------------------------------------------------------------------------
    @property
    def coded_range(self) -> float:
        """|entry| bound of ``[w' x, w']``: max(clip, 1) since 0 < w' <= 1."""
        return max(float(self.clip), 1.0)

    def key_authority(self) -> KeyAuthority:
        """The per-run dealer (made on first use; pass ``authority=`` to a subclass to share one)."""
        authority = self._cache.get("authority")
        if authority is None:
            authority = self._cache["authority"] = self._make_authority()
        return authority

    def server(self, round_id: int, client_ids: Sequence[int], dim: int) -> "HEServer":
        if dim < 1:
            raise ConfigError("dim must be >= 1")
        ids = tuple(client_ids)
        if len(ids) < self.min_clients:
            raise ConfigError(f"{len(ids)} clients invited, an HE round needs at least {self.min_clients}")
        authority = self.key_authority()
        codec = self.server_codec(authority.public_material, dim, len(ids))
        server = (self.server_type or HEServer)(self, round_id, ids, dim, authority.key_id, codec)
        if self.active:
            self.identities().roster_for(ids)
        return server

    def client(self, client_id: int, round_id: int, update: ClientUpdate,
               state: MutableMapping[str, Any]) -> "HEClient":
        if self.active:  # one session per round and per input (protocols.active_once)
            from .active_once import claim_session
            claim_session(state, self.name, round_id, update.vector, update.weight)
        keys = provision(state, self.key_slot, self.key_authority())
        client = (self.client_type or HEClient)(self, client_id, round_id, update, keys, state)
        if self.active:
            client.identity = self.identities().identity(client_id, state)
        return client

    def identities(self) -> Any:
        """The roster and signing keys of active mode (protocols.identity.IdentitySource), made on first use."""
        from .identity import IdentitySource
        source = self._cache.get("identities")
        if source is None:
            source = self._cache["identities"] = IdentitySource(self.roster, self.key_dir)
        return source

    @property
    def key_mode(self) -> str:
        """How the audit record names the key arrangement."""
        return KEY_MODE

    def describe(self) -> Mapping[str, Any]:
        return {"protocol": self.name, "key_mode": self.key_mode, "min_clients": self.min_clients,
                "release": self.release, "hides": "individual updates and weights from the server",
                "learned_by": LEARNED_BY_SERVER if self.release == "server" else LEARNED_BY_KEY_HOLDERS,
                "active_adversary_checks": self.active}


class HEServer(ServerStateMachine):
    def __init__(self, protocol: HEProtocol, round_id: int, client_ids: tuple[int, ...], dim: int,
                 key_id: bytes, codec: ServerCodec) -> None:
        self.protocol, self.round_id, self.client_ids, self.dim = protocol, round_id, client_ids, dim
        self.key_id, self.codec = key_id, codec
        self.name = protocol.name
        self.phase = "setup"
        self._ready: list[int] = []
        self._contributors: list[int] = []
        self._decrypt_candidates: list[int] = []
        self._asked: list[int] = []
        self._answered: list[int] = []
        self._sum: np.ndarray | None = None
        self._timings: dict[str, list[float]] = {"precompute": [], "online": [], "decrypt": []}
        fields = {"key_id": _KEY_ID, "ciphertexts": codec.ciphertext_field,
                  "online_seconds": FieldSpec("float", min_value=0.0)}
        self._signed: list[bytes] = []  # active mode: each contributor's signed contribution, relayed to key holders
        self._nonces: dict[int, bytes] = {}  # active mode: each ready client's freshness nonce
        self._ready_spec = _active_specs()[0] if protocol.active else READY
        if protocol.active:
            from .he_active import SIGNATURE_FIELD
            fields["signature"] = SIGNATURE_FIELD
        self._update_spec = MessageSpec("update", fields, max_bytes=codec.max_message_bytes)
        self._release_spec = MessageSpec("release", {"plaintext": codec.plaintext_field,
                                                     "decrypt_seconds": FieldSpec("float", min_value=0.0)},
                                         max_bytes=codec.max_message_bytes)

    def _send(self, kind: str, fields: Mapping[str, Any]) -> bytes:
        return encode(Message(self.name, kind, self.round_id, -1, fields))

    def _freshness(self) -> dict[str, Any]:
        """Active mode: the ready clients' nonces, relayed so that signatures are bound to this round instance."""
        if not self.protocol.active:
            return {}
        ids = sorted(self._nonces)
        return {"nonce_ids": np.asarray(ids, dtype=np.int64), "nonces": [self._nonces[c] for c in ids]}

    def start(self) -> Outgoing:
        payload = self._send(SETUP.kind, {"key_id": self.key_id, "dim": self.dim,
                                          "max_clients": len(self.client_ids), "params": self.codec.params})
        return Outgoing("setup", {cid: payload for cid in self.client_ids})

    def receive(self, sender: int, payload: bytes) -> None:
        if sender not in self.client_ids:
            raise MessageError(f"client {sender} is not in this round")
        if self.phase == "setup":
            if sender in self._ready:
                raise MessageError(f"second ready from client {sender}")
            message = decode(payload, self._ready_spec, protocol=self.name, round_id=self.round_id, sender=sender)
            if message["key_id"] != self.key_id:
                raise MessageError("client holds keys from another key authority or run")
            self._timings["precompute"].append(message["precompute_seconds"])
            if self.protocol.active:
                self._nonces[sender] = bytes(message["nonce"])
            self._ready.append(sender)
        elif self.phase == "upload":
            if sender not in self._ready or sender in self._contributors:
                raise MessageError(f"unexpected or repeated update from client {sender}")
            message = decode(payload, self._update_spec, protocol=self.name, round_id=self.round_id, sender=sender)
            if message["key_id"] != self.key_id:
                raise MessageError("ciphertexts under another key")
            parsed = self.codec.parse(message["ciphertexts"])  # full validation first: nothing half-added
            if self.protocol.active:
                from .he_active import contribution_message
                self._signed.append(contribution_message(self.name, self.round_id, sender, message["ciphertexts"],
                                                         message["signature"]))
            self.codec.add(parsed)
            self._timings["online"].append(message["online_seconds"])
            self._contributors.append(sender)
        elif self.phase == "decrypt":
            if sender not in self._asked or sender in self._answered:
                raise MessageError(f"client {sender} was not asked to decrypt")
            self._receive_decrypt(sender, payload)
        else:
            self._receive_other(sender, payload)

    def _receive_other(self, sender: int, payload: bytes) -> None:
        """A reply in a phase after ``decrypt`` (none in the shared-key round)."""
        raise MessageError("the round is over")

    def _receive_decrypt(self, sender: int, payload: bytes) -> None:
        """One key holder's decrypt-phase reply (a released plaintext or an acknowledgement)."""
        if self.protocol.release == "server":
            message = decode(payload, self._release_spec, protocol=self.name, round_id=self.round_id,
                             sender=sender)
            if self._sum is None:
                self._sum = self._checked_release(message["plaintext"])
        else:
            message = decode(payload, ACK, protocol=self.name, round_id=self.round_id, sender=sender)
            if message["key_id"] != self.key_id:
                raise MessageError("acknowledgement under another key")
        self._timings["decrypt"].append(message["decrypt_seconds"])
        self._answered.append(sender)

    def _checked_release(self, plaintext: Any) -> np.ndarray:
        """The released plaintext sum, refused (MessageError: the next key holder is asked) unless k honest
        updates could have produced it: finite, the weight slot in (0, k], every slot within k * coded_range plus
        the codec's error bound. Checked here so that the result step cannot fail on a bad release."""
        k = len(self._contributors)
        total = np.asarray(self.codec.decode_plaintext(plaintext, k), dtype=np.float64)
        slack = self.codec.sum_error(k)
        reach = k * self.protocol.coded_range + slack
        if total.shape != (self.dim + 1,) or not np.isfinite(total).all():
            raise MessageError("released plaintext is not a finite vector of the round's length")
        if not 0 < total[-1] <= k + slack:
            raise MessageError(f"released weight sum {total[-1]:.6g} outside (0, {k}]: not a sum of {k} updates")
        if float(np.max(np.abs(total))) > reach:
            raise MessageError(f"released plaintext exceeds {reach:.6g}, beyond what {k} updates can reach")
        return total

    def advance(self) -> Outgoing | AggregateResult:
        need = self.protocol.min_clients
        if self.phase == "setup":
            if len(self._ready) < need:
                raise ProtocolAbort(f"{len(self._ready)} clients ready, an HE round needs {need}")
            self.phase = "upload"
            payload = self._send(UPLOAD.kind, {"params": self.codec.params, **self._freshness()})
            return Outgoing("upload", {cid: payload for cid in sorted(self._ready)})
        if self.phase == "upload":
            if len(self._contributors) < need:
                raise ProtocolAbort(f"{len(self._contributors)} updates received, an HE round needs {need} "
                                    f"(fewer would expose individual updates through the mean)")
            self.phase = "decrypt"
            self._decrypt_candidates = sorted(self._contributors)
            if self.protocol.active:  # the key holders recompute the sum from the signed contributions
                from .he_active import DECRYPT_CONTRIBUTIONS
                self._request = self._send(DECRYPT_CONTRIBUTIONS, {"contributions": self._signed,
                                                                   **self._freshness()})
            else:
                self._request = self._send("decrypt-request", {"ciphertexts": self.codec.sum_ciphertexts(),
                                                               "contributors": len(self._contributors)})
            return self._ask_next()
        return self._advance_decrypt()

    def _advance_decrypt(self) -> Outgoing | AggregateResult:
        """After the decrypt phase's replies: the result, or the next key holder to ask."""
        if self.phase == "decrypt":
            if self.protocol.release == "server" and self._sum is not None:
                return self._result()
            if self.protocol.release == "key-holders" and self._answered:
                return self._result()
            return self._ask_next()
        raise ProtocolAbort("the round is over")

    def _ask_next(self) -> Outgoing:
        remaining = [c for c in self._decrypt_candidates if c not in self._asked]
        if not remaining:
            raise ProtocolAbort("no surviving key holder decrypted the sum")
        chosen = remaining[:1] if self.protocol.release == "server" else remaining
        self._asked.extend(chosen)
        return Outgoing("decrypt", {cid: self._request for cid in chosen})

    def _result(self) -> AggregateResult:
        self.phase = "done"
        k = len(self._contributors)
        info: dict[str, Any] = {
            "protocol": self.name, "key_mode": self.protocol.key_mode, "release": self.protocol.release,
            "contributors": k, "decrypted_by": sorted(self._answered),
            "client_precompute_seconds_mean": _mean(self._timings["precompute"]),
            "client_online_seconds_mean": _mean(self._timings["online"]),
            "decrypt_seconds": _mean(self._timings["decrypt"]),
            **self.codec.info(),
        }
        survivors = tuple(sorted(self._contributors))
        if self.protocol.release == "key-holders":
            info["mean_location"] = f"client state {RESULTS_SLOT!r} of the key holders; the server has no mean"
            return AggregateResult(np.full(self.dim, np.nan), math.nan, survivors, LEARNED_BY_KEY_HOLDERS,
                                   math.nan, info)
        assert self._sum is not None
        mean, total_weight = split_weighted(self._sum, self.protocol.max_weight)
        bound = weighted_mean_error_bound(self.codec.sum_error(k), float(self._sum[-1]), self.protocol.clip)
        info["release_note"] = "the key holder's decryption of the sum was handed to the server"
        return AggregateResult(mean, total_weight, survivors, LEARNED_BY_SERVER, bound, info)


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values)) if values else 0.0


class HEClient(ClientStateMachine):
    def __init__(self, protocol: HEProtocol, client_id: int, round_id: int, update: ClientUpdate, keys: Any,
                 state: MutableMapping[str, Any]) -> None:
        self.protocol, self.client_id, self.round_id, self.update = protocol, client_id, round_id, update
        self.keys, self.state, self.name = keys, state, protocol.name
        self.codec: ClientCodec | None = None
        self.server_codec: ServerCodec | None = None
        self.params: str | None = None
        self.uploaded = False
        self.decrypted = False  # a key holder decrypts at most once per round
        self.nonce: bytes | None = None  # active mode: this round's freshness nonce
        self.identity: Any = None  # active mode: this client's signing identity

    def _reply(self, kind: str, fields: Mapping[str, Any]) -> bytes:
        return encode(Message(self.name, kind, self.round_id, self.client_id, fields))

    def handle(self, payload: bytes) -> bytes | None:
        specs = {SETUP.kind: SETUP, UPLOAD.kind: _active_specs()[1] if self.protocol.active else UPLOAD}
        if self.server_codec is not None:
            specs["decrypt-request"] = MessageSpec(
                "decrypt-request", {"ciphertexts": self.server_codec.ciphertext_field,
                                    "contributors": FieldSpec("int", min_value=0)},
                max_bytes=self.server_codec.max_message_bytes)
            if self.protocol.active:
                from .he_active import DECRYPT_CONTRIBUTIONS
                specs = {k: v for k, v in specs.items() if k != "decrypt-request"}
                specs[DECRYPT_CONTRIBUTIONS] = MessageSpec(DECRYPT_CONTRIBUTIONS, {
                    "contributions": FieldSpec("list", max_length=1 << 20), **_active_specs()[2]})
            specs.update(self._extra_specs())
        message = decode(payload, specs, protocol=self.name, round_id=self.round_id, sender=-1)
        if message.kind == SETUP.kind:
            return self._setup(message)
        if message.kind == UPLOAD.kind:
            return self._upload(message)
        if message.kind == "decrypt-request" or (self.protocol.active and message.kind == _decrypt_contributions()):
            return self._decrypt(message)
        return self._handle_other(message)

    def _extra_specs(self) -> dict[str, MessageSpec]:
        """Requests of phases after ``decrypt`` (none in the shared-key round)."""
        return {}

    def _handle_other(self, message: Message) -> bytes | None:
        raise MessageError(f"unexpected request {message.kind!r}")

    def _setup(self, message: Message) -> bytes:
        if self.codec is not None:
            raise MessageError("second setup request")
        if message["key_id"] != self.keys.key_id:
            raise MessageError("the server announces keys this client does not hold")
        dim, max_clients = message["dim"], message["max_clients"]
        if dim != self.update.vector.size:
            raise MessageError(f"server asked for {dim} values, this client has {self.update.vector.size}")
        if max_clients < self.protocol.min_clients:
            raise ProtocolAbort("fewer clients invited than an HE round needs")
        authority_public = self.protocol.key_authority().public_material
        self.server_codec = self.protocol.server_codec(authority_public, dim + 0, max_clients)
        if message["params"] != self.server_codec.params:
            raise MessageError("the server's round parameters differ from this client's recomputation")
        self.params = message["params"]
        self.max_clients = max_clients
        started = time.perf_counter()
        self.codec = self.protocol.client_codec(self.keys, dim, max_clients)
        self.codec.precompute()
        ready = {"key_id": self.keys.key_id, "precompute_seconds": time.perf_counter() - started}
        if self.protocol.active:
            from .he_active import new_nonce
            self.nonce = ready["nonce"] = new_nonce()
        return self._reply(READY.kind, ready)

    def _upload(self, message: Message) -> bytes:
        if self.codec is None or self.uploaded:
            raise MessageError("upload requested before setup, or twice")
        if message["params"] != self.params:
            raise MessageError("round parameters changed between setup and upload")
        started = time.perf_counter()
        vector = weighted_vector(self.update.vector, self.update.weight, self.protocol.max_weight)
        ciphertexts = self.codec.encrypt(vector)
        self.uploaded = True
        fields = {"key_id": self.keys.key_id, "ciphertexts": ciphertexts}
        if self.protocol.active:
            from .he_active import check_own_nonce, sign_contribution
            freshness = check_own_nonce(self.client_id, self.nonce, message["nonce_ids"], message["nonces"])
            fields["signature"] = sign_contribution(self.identity, self.name, self.round_id, self.keys.key_id,
                                                    freshness, ciphertexts)
        return self._reply("update", {**fields, "online_seconds": time.perf_counter() - started})

    def _decrypt(self, message: Message) -> bytes:
        assert self.codec is not None and self.server_codec is not None
        if not self.uploaded:
            raise MessageError("asked to decrypt a sum this client did not contribute to")
        if self.decrypted:
            raise ProtocolAbort("asked to decrypt twice in one round: a key holder decrypts at most once per round")
        self.decrypted = True
        if not self.protocol.active and message["contributors"] < self.protocol.min_clients:
            raise ProtocolAbort("refusing to decrypt a sum of fewer updates than an HE round needs")
        return self._decrypt_reply(message)

    def _decrypt_reply(self, message: Message) -> bytes:
        """Decrypt the sum with the shared key (after active mode's checks): release it to the server or keep it
        (``release``)."""
        assert self.codec is not None and self.server_codec is not None
        started = time.perf_counter()
        if self.protocol.active:
            ciphertexts, contributors = self._checked_sum(message)
        else:
            if message["contributors"] < self.protocol.min_clients:
                raise ProtocolAbort("refusing to decrypt a sum of fewer updates than an HE round needs")
            ciphertexts, contributors = message["ciphertexts"], message["contributors"]
        try:
            plaintext = self.codec.decrypt(ciphertexts)
        except PrivfedError:
            raise DecryptionError("decryption failed") from None
        seconds = time.perf_counter() - started
        if self.protocol.release == "server":
            return self._reply("release", {"plaintext": plaintext, "decrypt_seconds": seconds})
        try:
            total = self.server_codec.decode_plaintext(plaintext, contributors)
        except (MessageError, HeadroomError):
            raise DecryptionError("decryption failed") from None
        self.state.setdefault(RESULTS_SLOT, {})[self.round_id] = split_weighted(total, self.protocol.max_weight)
        return self._reply(ACK.kind, {"key_id": self.keys.key_id, "decrypt_seconds": seconds})

    def _checked_sum(self, message: Message) -> tuple[Any, int]:
        """Active mode: verify the relayed signed contributions and recompute their sum (protocols.he_active)."""
        from .he_active import check_own_nonce, checked_contributions
        assert self.server_codec is not None
        freshness = check_own_nonce(self.client_id, self.nonce, message["nonce_ids"], message["nonces"])
        ciphertexts = checked_contributions(
            message["contributions"], protocol=self.name, round_id=self.round_id, key_id=self.keys.key_id,
            freshness=freshness,
            roster=self.protocol.identities().roster_for([self.client_id]), min_clients=self.protocol.min_clients,
            ciphertext_field=self.server_codec.ciphertext_field, max_bytes=self.server_codec.max_message_bytes)
        if len(ciphertexts) > self.max_clients:
            raise ProtocolAbort(f"{len(ciphertexts)} contributions, more than the {self.max_clients} invited")
        codec = self.protocol.server_codec(self.protocol.key_authority().public_material, self.update.vector.size,
                                           self.max_clients)  # a fresh sum, same parameters as the round
        for value in ciphertexts:
            codec.add(codec.parse(value))
        return codec.sum_ciphertexts(), len(ciphertexts)


def _active_specs() -> tuple[MessageSpec, MessageSpec, dict[str, FieldSpec]]:
    """Active mode's ready reply (with a nonce), upload request and decrypt fields (with the nonce list)."""
    from .he_active import NONCE_FIELD
    nonce_list = {"nonce_ids": FieldSpec("array", dtype="int64", max_length=1 << 20),
                  "nonces": FieldSpec("list", max_length=1 << 20)}
    ready = MessageSpec("ready", {**READY.fields, "nonce": NONCE_FIELD}, max_bytes=READY.max_bytes)
    upload = MessageSpec(UPLOAD.kind, {**UPLOAD.fields, **nonce_list}, max_bytes=64 + 40 * (1 << 20))
    return ready, upload, nonce_list


def _decrypt_contributions() -> str:
    """The active-mode decrypt request's kind (the signed contributions instead of a sum)."""
    from .he_active import DECRYPT_CONTRIBUTIONS
    return DECRYPT_CONTRIBUTIONS
