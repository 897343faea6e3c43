"""SecAgg against an active (malicious) server: signed key advertisements and the consistency-check round.

Threat model: the server is **malicious** — it may deviate arbitrarily (substitute public keys as a man in the
middle, tell different clients different survivor sets, replay messages of other rounds, invent clients) — and
colludes with up to n_C corrupted clients. Following Bonawitz et al., CCS 2017, section 6 (the active-adversary
protocol of their Figure 4: a PKI, signed advertisements, the ConsistencyCheck round), each client holds an Ed25519
signing key bound to its id by a roster made by a registrar before the run (:mod:`protocols.identity`), and:

* every key advertisement is signed over (protocol, version, round, session, signer, c_pk, s_pk); a client verifies
  the signature of every key the server relays and refuses the round on any bad, missing, duplicated or non-roster
  signer (no man in the middle, no Sybils, no replay from another round or session);
* after the masked inputs, the server sends the survivor set U3; each client signs (round, session, U3) once and,
  in the unmask phase, reveals shares only after verifying at least t valid signatures by distinct roster members
  of U3 on exactly the U3 it was sent — and it derives the alive and dropped lists from that signed set.

Guarantee (the paper's section 6 argument, restated for this code): an honest client reveals b-shares only of
members of the U3 it signed and s-shares only of peers outside it, once. Two different survivor sets can both
collect t valid signatures only if their signers overlap in corrupted clients:
2(t - n_C) <= n - n_C, i.e. 2t <= n + n_C. Hence the condition enforced at construction (:func:`active_condition`):
**2t > n + n_C** (with n_C = ceil(corruption_fraction * n)), which also gives t > n_C (the corrupted clients alone
cannot reconstruct). With n_C < n/3 it is the paper's t > 2n/3. Then for every honest client the server obtains
at most one of its two secrets, and learns nothing beyond the sum of the inputs of one set of at least t clients.

Client sampling (a cohort the server chooses from the roster). Let N be the roster size and C the number of
corrupted roster members the guarantee must tolerate, counted against the **roster**: C = max(colluders,
ceil(corruption_fraction * N)) (:func:`roster_corrupted`). The server invites a cohort A of the roster; it may pick
A small, stuffed with its colluders, or show different clients different cohorts. Each client checks locally,
before it reveals anything, that every member of A is in the roster and that **2t > |A| + min(C, |A|)** with t
derived from |A| as above (:func:`cohort_condition`, through :func:`cohort_reason`: the one home of the check,
which the threat layer's plan check also calls with the planned clients per round and roster size). Why this is
safe: every advertisement and consistency signature covers the digest of the cohort A its signer was shown, and an
honest client signs one advertisement and one survivor set per round. A client u accepts a peer's key only under
u's own A, so every honest holder of u's shares was shown the same A; an honest holder reveals a share of u only
after t valid signatures on (round, session, A, U3) by distinct members of U3 (a subset of A). If one honest
holder reveals u's self-mask share (u in U3) and another u's masking-key share (u outside U3'), then U3 differs
from U3', so their honest signers are disjoint; both sets reach t only if 2(t - c_A) + c_A <= |A| with c_A <=
min(C, |A|) corrupted clients inside A, i.e. 2t <= |A| + min(C, |A|), which the check excludes. It also gives t >
min(C, |A|): the corrupted members of A cannot reconstruct alone. It does not stop a cohort of C colluders and
one honest client (t = |A| = C + 1 meets it): the opened sum minus the colluders' inputs is that client's input.
So each client also checks **t - min(C, |A|) >= 2** (``MIN_HONEST_IN_SUM``): any sum that can open, even after the
server drops honest clients down to t survivors, holds at least two honest inputs. A cohort that is small or may be colluder-heavy
(the client cannot tell who is corrupted, so it assumes all C may be in A) therefore makes honest clients refuse.
Roster size: a roster file's size, or ``roster_size`` (the in-process registrar then enrols at most that many
clients); without either, the cohort must be exactly the roster (N = |A|, the paper's setting).

Distributed DP (``secagg+dp`` with ``active=true``): ``min_noise_survivors`` (set by secagg+dp from its plan) makes
honest clients refuse to sign, and to unmask under, a survivor set smaller than the noise the plan's epsilon
assumed; a server that drops clients to thin the noise learns nothing.

Limits (stated plainly): privacy of each input only. A malicious server can still abort any round, drop any
client, and corrupt the result (correctness of the sum is not protected). The SecAgg+ sparse graph is refused in
active mode: its guarantee (Bell et al. 2020) needs the graph to be chosen by a trusted or jointly generated
randomness source, and here the server chooses it. The registrar is trusted during setup. Freshness: the session
nonce is the server's, so a malicious server could replay signed advertisements of an earlier run with the same
round number, session and cohort; that gives it nothing, since it never learns a share-encryption private key (it
cannot read shares addressed to a replayed key) and the bound above rests on each honest client answering the
unmask request once — per machine. A server that restarts a client's machine for the round (over Flower a refused
request resets it; another round id builds a new one over the same local update) could run a second complete
session over the same input and difference the two sums, so :meth:`ActiveSecAggProtocol.client` first claims the
round and the input in the client's persistent state (:mod:`protocols.active_once`, check ``one-session``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, MutableMapping, Sequence

import numpy as np

from ..base import MIN_HONEST_IN_SUM, Outgoing
from ..active_once import claim_session
from ..errors import ConfigError, MessageError, ProtocolAbort
from ..identity import SIGNATURE_BYTES, ActiveCheckFailed, IdentitySource, Roster, SigningIdentity, signed_bytes
from ..wire import FieldSpec, Message, MessageSpec, decode, encode
from . import RoundPlan, SecAggProtocol
from .client import SecAggClient, _ids
from .keys import KEY_BYTES
from .messages import ADVERTISE_REQUEST, KEYS, NAME, SERVER_ID, SHARE_REQUEST, UNMASK_REQUEST
from .server import SecAggServer

__all__ = [
    "ACTIVE_PHASES",
    "CONSISTENCY",
    "ActiveSecAggProtocol",
    "ActiveSecAggClient",
    "ActiveSecAggServer",
    "active_condition",
    "cohort_condition",
    "cohort_reason",
    "corrupted_count",
    "roster_corrupted",
    "cohort_digest",
    "protects_against_malicious_server",
    "advertisement_bytes",
    "consistency_bytes",
]

CONSISTENCY = "consistency-check"
ACTIVE_PHASES = ("advertise-keys", "share-keys", "masked-input", CONSISTENCY, "unmask")
_MAX = 1 << 20
_IDS = FieldSpec("array", dtype="int64", max_length=_MAX)
_SIGS = FieldSpec("list", max_length=_MAX)
_SIG = FieldSpec("bytes", length=SIGNATURE_BYTES)

SIGNED_KEYS = MessageSpec("signed-keys", {"c_pk": FieldSpec("bytes", length=KEY_BYTES),
                                          "s_pk": FieldSpec("bytes", length=KEY_BYTES), "signature": _SIG})
SIGNED_SHARE_REQUEST = MessageSpec("signed-share-request", {"peers": _IDS, "c_pks": _SIGS, "s_pks": _SIGS,
                                                            "signatures": _SIGS})
CONSISTENCY_REQUEST = MessageSpec("consistency-request", {"survivors": _IDS})
CONSISTENCY_SIGNATURE = MessageSpec("consistency-signature", {"signature": _SIG})
SIGNED_UNMASK_REQUEST = MessageSpec("signed-unmask-request", {"alive": _IDS, "dropped": _IDS, "signers": _IDS,
                                                              "signatures": _SIGS})


def corrupted_count(n: int, corruption_fraction: float) -> int:
    """n_C: the number of corrupted clients the guarantee must tolerate (ceil of the declared fraction of n)."""
    return math.ceil(corruption_fraction * n - 1e-9)


def active_condition(n: int, t: int, n_c: int) -> str | None:
    """None when Bonawitz et al. (CCS 2017, section 6) give privacy against a malicious server colluding with
    n_c clients at threshold t out of n; otherwise the reason. The one home of this condition."""
    if 2 * t <= n + n_c:
        return (f"active security needs 2t > n + n_C (two survivor sets cannot both collect t signatures), "
                f"got t = {t}, n = {n}, n_C = {n_c}: raise the threshold to at least {(n + n_c) // 2 + 1} "
                f"or lower corruption_fraction")
    if t <= n_c:
        return f"active security needs t > n_C, got t = {t}, n_C = {n_c}"
    return None


def protects_against_malicious_server(options: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether SecAgg with ``options`` claims privacy against a malicious server, and why (for the threat layer)."""
    if not options.get("active"):
        return False, ("semi-honest SecAgg lets a malicious server substitute keys and equivocate about the "
                       "survivor set; use -o active=true (signed advertisements and the consistency check)")
    if options.get("graph", "complete") != "complete":
        return False, "the SecAgg+ sparse graph has no active-security guarantee here (the server picks the graph)"
    return True, ("active mode: each input stays private against a malicious server with up to n_C corrupted "
                  "clients while 2t > n + n_C; the server can still abort, drop clients or corrupt the sum")


def roster_corrupted(roster_size: int, corruption_fraction: float, colluders: int = 0) -> int:
    """C: the corrupted roster members the guarantee must tolerate, counted against the whole roster (the declared
    ``colluders``, at least ceil(corruption_fraction * roster_size))."""
    return max(int(colluders), corrupted_count(roster_size, corruption_fraction))


def cohort_condition(cohort: int, t: int, corrupted: int) -> str | None:
    """None when a cohort of ``cohort`` clients chosen by a malicious server from a roster with ``corrupted``
    corrupted members is safe at threshold t: 2t > n + min(C, n) (see the module docstring); else the reason."""
    reason = active_condition(cohort, t, min(int(corrupted), cohort))
    if reason is None and t - min(int(corrupted), cohort) < MIN_HONEST_IN_SUM:
        # the server may fill the cohort with its colluders and drop honest clients down to t survivors: the sum
        # that opens then holds t - min(C, n) honest inputs, and one alone is that client's input
        reason = (f"a sum of t = {t} survivors may hold only {t - min(int(corrupted), cohort)} honest input(s) "
                  f"beside the {min(int(corrupted), cohort)} corrupted clients (subtracting theirs reveals one "
                  f"input): active mode needs t - min(C, n) >= {MIN_HONEST_IN_SUM}")
    if reason is None:
        return None
    hint = f"; or invite more clients per round (the server may put all C = {corrupted} in a cohort)" \
        if corrupted > 0 else ""
    return f"cohort of {cohort} from a roster with C = {corrupted} corrupted: {reason}{hint}"


def cohort_reason(protocol: "SecAggProtocol", cohort: int, roster_size: int | None = None,
                  colluders: int = 0) -> str | None:
    """The one check of a cohort, called by every honest client (on the cohort it was shown) and by the threat
    layer (on the planned clients per round): t from the protocol's options for ``cohort`` clients, C from the
    roster size (``None``: the cohort is the whole roster) and the declared colluders. None when it holds."""
    try:
        t = SecAggProtocol.plan(protocol, cohort).threshold
    except ConfigError as exc:
        return str(exc)
    population = cohort if roster_size is None else int(roster_size)
    if population < cohort:
        return f"a cohort of {cohort} clients cannot come from a roster of {population}"
    declared = max(int(colluders), int(getattr(protocol, "colluders", 0) or 0))
    return cohort_condition(cohort, t, roster_corrupted(population, protocol.corruption_fraction, declared))


def cohort_digest(cohort: Sequence[int]) -> bytes:
    """The cohort a signer was shown, as its signatures cover it (sorted ids, little-endian int64)."""
    return np.asarray(sorted(int(c) for c in cohort), dtype="<i8").tobytes()


def advertisement_bytes(round_id: int, session: bytes, signer: int, c_pk: bytes, s_pk: bytes,
                        cohort: Sequence[int]) -> bytes:
    return signed_bytes("secagg-advertise", NAME, round_id, session, signer, c_pk, s_pk, cohort_digest(cohort))


def consistency_bytes(round_id: int, session: bytes, signer: int, survivors: Sequence[int],
                      cohort: Sequence[int]) -> bytes:
    ids = np.asarray(sorted(survivors), dtype="<i8").tobytes()
    return signed_bytes("secagg-consistency", NAME, round_id, session, signer, ids, cohort_digest(cohort))


@dataclass(frozen=True)
class ActiveSecAggProtocol(SecAggProtocol):
    """SecAgg with signed advertisements and the consistency check (select it with ``active=True``).

    Extra options: ``roster`` (path of a roster JSON from ``privfed keys roster``) and ``key_dir`` (directory of
    the clients' key files); without them an in-process registrar enrols the clients on first use (simulation).
    ``roster_size``: the roster's size N when the server samples cohorts from it (the in-process registrar then
    enrols at most N clients; with a roster file it must equal the file's size); ``colluders``: corrupted roster
    members declared (C is at least ceil(corruption_fraction * N)); ``min_noise_survivors`` (set by secagg+dp):
    honest clients refuse a signed survivor set smaller than this.
    """

    phases: ClassVar[tuple[str, ...]] = ACTIVE_PHASES
    active: bool = True
    roster: str | None = None
    key_dir: str | None = None
    roster_size: int | None = None
    colluders: int = 0
    min_noise_survivors: int | None = None
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.active is not True:
            raise ConfigError("ActiveSecAggProtocol needs active=True")
        if self.graph != "complete":
            raise ConfigError("active mode supports the complete graph only: the SecAgg+ sparse graph's guarantee "
                              "needs a graph the server cannot choose, and here the server chooses it")
        for label, value, low in (("roster_size", self.roster_size, 2), ("colluders", self.colluders, 0),
                                  ("min_noise_survivors", self.min_noise_survivors, 1)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
                raise ConfigError(f"{label} must be an integer >= {low}, got {value!r}")
        source = IdentitySource(self.roster, self.key_dir, capacity=self.roster_size)
        if self.roster is not None and self.roster_size is not None and self.roster_size != source.size:
            raise ConfigError(f"roster_size = {self.roster_size} but the roster file has {source.size} members")
        self._cache["identities"] = source

    @property
    def identities(self) -> IdentitySource:
        return self._cache["identities"]

    @property
    def population(self) -> int | None:
        """N, the roster size cohorts are drawn from (None: the cohort must be the whole roster)."""
        return self.identities.size if self.roster is not None else self.roster_size

    def cohort_reason(self, cohort: int, colluders: int = 0) -> str | None:
        """:func:`cohort_reason` for this configuration (its roster size and colluders)."""
        return cohort_reason(self, cohort, self.population, colluders)

    def plan(self, n: int) -> RoundPlan:
        plan = super().plan(n)
        reason = self.cohort_reason(n)
        if reason is not None:
            raise ConfigError(reason)
        return plan

    def _check_cohort(self, ids: Sequence[int], roster: Roster, error: type) -> None:
        if not set(ids) <= set(roster.members):
            raise error("roster", f"clients {sorted(set(ids) - set(roster.members))} are not in the roster")
        if self.population is None and set(ids) != set(roster.members):
            raise error("roster", f"active mode without a roster file or roster_size needs the round's cohort to "
                                  f"be the roster: {len(ids)} invited, {len(roster)} in the roster")

    def server(self, round_id: int, client_ids: Sequence[int], dim: int) -> "ActiveSecAggServer":
        ids = tuple(client_ids)
        try:
            roster = self.identities.roster_for(ids)
        except ActiveCheckFailed as exc:
            raise ConfigError(f"cohort: {exc}") from None
        self._check_cohort(ids, roster, lambda check, detail: ConfigError(f"cohort: {detail}"))
        base = super().server(round_id, ids, dim)
        return ActiveSecAggServer(self, round_id, base.ids, dim, base.plan, roster)

    def client(self, client_id: int, round_id: int, update: Any,
               state: MutableMapping[str, Any]) -> "ActiveSecAggClient":
        claim_session(state, NAME, round_id, update.vector, update.weight)  # one session per round and input
        identity = self.identities.identity(client_id, state)
        return ActiveSecAggClient(self, client_id, round_id, update, identity,
                                  self.identities.roster_for([client_id]))

    def describe(self) -> Mapping[str, Any]:
        out = dict(super().describe())
        out.update({"active_adversary_checks": True, "roster_size": self.population,
                    "min_noise_survivors": self.min_noise_survivors,
                    "hides": "each individual input from a malicious server colluding with fewer than the tolerated "
                             "corrupted clients (not the sum's correctness)"})
        return out


def _arr(ids: Sequence[int]) -> np.ndarray:
    return np.asarray(list(ids), dtype=np.int64)


class ActiveSecAggClient(SecAggClient):
    """The client with every active check; each refusal is an :class:`ActiveCheckFailed` naming the check."""

    def __init__(self, protocol: ActiveSecAggProtocol, client_id: int, round_id: int, update: Any,
                 identity: SigningIdentity, roster: Roster) -> None:
        super().__init__(protocol, client_id, round_id, update)
        self._identity, self._roster = identity, roster
        self._survivors: tuple[int, ...] | None = None

    def handle(self, payload: bytes) -> bytes | None:
        if self._stage == "consistency":
            self._stage = "failed"
            reply, self._stage = self._consistency(payload)
            return reply
        return super().handle(payload)

    def _as_base(self, kind: str, fields: dict[str, Any]) -> bytes:
        return encode(Message(NAME, kind, self.round_id, SERVER_ID, fields))

    def _advertise(self, payload: bytes) -> tuple[bytes, str]:
        request = decode(payload, ADVERTISE_REQUEST, protocol=NAME, round_id=self.round_id, sender=SERVER_ID)
        reason = self.protocol.cohort_reason(int(request["n"]))  # the cohort condition, before anything is made
        if reason is not None:
            raise ActiveCheckFailed("cohort", reason)
        reply, stage = super()._advertise(payload)
        cohort = self._neighbours | {self.client_id}  # the base checked |cohort| = n
        self.protocol._check_cohort(cohort, self._roster, ActiveCheckFailed)
        self._cohort = tuple(sorted(cohort))
        msg = decode(reply, KEYS, protocol=NAME, round_id=self.round_id, sender=self.client_id)
        c_pk, s_pk = msg["c_pk"], msg["s_pk"]
        signature = self._identity.sign(advertisement_bytes(self.round_id, self._session, self.client_id, c_pk, s_pk,
                                                            self._cohort))
        return self._reply(SIGNED_KEYS.kind, {"c_pk": c_pk, "s_pk": s_pk, "signature": signature}), stage

    def _noise_floor(self, survivors: Sequence[int], what: str) -> None:
        floor = self.protocol.min_noise_survivors
        if floor is not None and len(survivors) < floor:
            raise ActiveCheckFailed("noise-survivors", f"{len(survivors)} survivors, the plan's epsilon assumes the "
                                                       f"noise of at least {floor}: refusing to {what}")

    def _share(self, payload: bytes) -> tuple[bytes, str]:
        msg = decode(payload, SIGNED_SHARE_REQUEST, protocol=NAME, round_id=self.round_id, sender=SERVER_ID)
        peers = [int(v) for v in msg["peers"]]
        if len(set(peers)) != len(peers):
            raise ActiveCheckFailed("duplicate-signer", "a client is listed twice among the advertisements")
        if not (len(peers) == len(msg["c_pks"]) == len(msg["s_pks"]) == len(msg["signatures"])):
            raise MessageError("signed share request: peers, keys and signatures differ in length")
        for peer, c_pk, s_pk, sig in zip(peers, msg["c_pks"], msg["s_pks"], msg["signatures"]):
            if len(c_pk) != KEY_BYTES or len(s_pk) != KEY_BYTES:
                raise MessageError("signed share request: malformed public key")
            self._roster.verify(peer, advertisement_bytes(self.round_id, self._session, peer, c_pk, s_pk,
                                                          self._cohort), sig, "advertisement-signature")
        base = self._as_base(SHARE_REQUEST.kind, {"peers": msg["peers"], "c_pks": msg["c_pks"],
                                                  "s_pks": msg["s_pks"]})
        return super()._share(base)

    def _mask(self, payload: bytes) -> tuple[bytes, str]:
        reply, _ = super()._mask(payload)
        return reply, "consistency"

    def _consistency(self, payload: bytes) -> tuple[bytes, str]:
        msg = decode(payload, CONSISTENCY_REQUEST, protocol=NAME, round_id=self.round_id, sender=SERVER_ID)
        survivors = _ids(msg["survivors"], "survivor set")
        if self.client_id not in survivors:
            raise ActiveCheckFailed("consistency-set", "this client is missing from the survivor set")
        if not set(survivors) <= self._masked_with | {self.client_id}:
            raise ActiveCheckFailed("consistency-set", "the survivor set names a client that did not share keys")
        if len(survivors) < self._plan.threshold:
            raise ActiveCheckFailed("consistency-set", f"{len(survivors)} survivors, threshold "
                                                       f"{self._plan.threshold}: refusing to sign")
        self._noise_floor(survivors, "sign")
        self._survivors = tuple(sorted(survivors))
        signature = self._identity.sign(consistency_bytes(self.round_id, self._session, self.client_id,
                                                          self._survivors, self._cohort))
        return self._reply(CONSISTENCY_SIGNATURE.kind, {"signature": signature}), "unmask"

    def _unmask(self, payload: bytes) -> tuple[bytes, str]:
        msg = decode(payload, SIGNED_UNMASK_REQUEST, protocol=NAME, round_id=self.round_id, sender=SERVER_ID)
        survivors = self._survivors
        assert survivors is not None
        alive, dropped = [int(v) for v in msg["alive"]], [int(v) for v in msg["dropped"]]
        if tuple(alive) != survivors or set(dropped) != self._masked_with - set(survivors):
            raise ActiveCheckFailed("consistency-set", "the unmask request's alive or dropped list differs from the "
                                                       "survivor set this client signed")
        signers = [int(v) for v in msg["signers"]]
        if len(signers) != len(msg["signatures"]):
            raise MessageError("signed unmask request: signers and signatures differ in length")
        if len(set(signers)) != len(signers):
            raise ActiveCheckFailed("duplicate-signer", "a client signed the survivor set twice")
        if not set(signers) <= set(survivors):
            raise ActiveCheckFailed("consistency-signatures", "a signer is not in the survivor set")
        if len(signers) < self._plan.threshold:
            raise ActiveCheckFailed("consistency-signatures", f"only {len(signers)} clients signed the survivor "
                                    f"set, threshold {self._plan.threshold}: refusing to reveal shares")
        self._noise_floor(survivors, "reveal shares")
        for signer, sig in zip(signers, msg["signatures"]):
            self._roster.verify(signer, consistency_bytes(self.round_id, self._session, signer, survivors,
                                                          self._cohort), sig, "consistency-signatures")
        base = self._as_base(UNMASK_REQUEST.kind, {"alive": msg["alive"], "dropped": msg["dropped"]})
        return super()._unmask(base)


class ActiveSecAggServer(SecAggServer):
    """The honest server of active mode: verifies every signature it relays, adds the consistency round."""

    def __init__(self, protocol: ActiveSecAggProtocol, round_id: int, ids: tuple[int, ...], dim: int,
                 plan: RoundPlan, roster: Roster) -> None:
        super().__init__(protocol, round_id, ids, dim, plan)
        self.roster = roster
        self._ad_sig: dict[int, bytes] = {}
        self._consistency_sig: dict[int, bytes] = {}
        self._handlers.update({"advertise-keys": self._receive_signed_keys, CONSISTENCY: self._receive_consistency})

    def advance(self) -> Outgoing | Any:
        if self.phase == CONSISTENCY:
            return self._after_consistency()
        return super().advance()

    def _receive_signed_keys(self, sender: int, payload: bytes) -> None:
        msg = decode(payload, SIGNED_KEYS, protocol=NAME, round_id=self.round_id, sender=sender)
        c_pk, s_pk = bytes(msg["c_pk"]), bytes(msg["s_pk"])
        try:
            self.roster.verify(sender, advertisement_bytes(self.round_id, self.session, sender, c_pk, s_pk, self.ids),
                               msg["signature"], "advertisement-signature")
        except ActiveCheckFailed as exc:
            raise MessageError(str(exc)) from None
        self._receive_keys(sender, encode(Message(NAME, KEYS.kind, self.round_id, sender,
                                                  {"c_pk": c_pk, "s_pk": s_pk})))
        self._ad_sig[sender] = bytes(msg["signature"])

    def _after_keys(self) -> Outgoing:
        self._u1 = self._close(self._replied - self._key_clash)

        def build(cid: int) -> tuple[str, dict]:
            peers = sorted(self.graph.neighbours[cid] & self._u1)
            return SIGNED_SHARE_REQUEST.kind, {"peers": _arr(peers), "c_pks": [self.c_pk[v] for v in peers],
                                               "s_pks": [self.s_pk[v] for v in peers],
                                               "signatures": [self._ad_sig[v] for v in peers]}
        return self._send("share-keys", self._u1, build)

    def _after_masked(self) -> Outgoing:
        self._u3 = self._close(self._replied)
        for v in self._u2 - self._u3:
            if len(self.graph.neighbours[v] & self._u3) < self.t:
                raise ProtocolAbort(f"phase {self.phase}: client {v} dropped and too few of its neighbours remain")
        survivors = _arr(sorted(self._u3))
        return self._send(CONSISTENCY, self._u3, lambda cid: (CONSISTENCY_REQUEST.kind, {"survivors": survivors}))

    def _receive_consistency(self, sender: int, payload: bytes) -> None:
        msg = decode(payload, CONSISTENCY_SIGNATURE, protocol=NAME, round_id=self.round_id, sender=sender)
        try:
            self.roster.verify(sender, consistency_bytes(self.round_id, self.session, sender, sorted(self._u3),
                                                         self.ids), msg["signature"], "consistency-signatures")
        except ActiveCheckFailed as exc:
            raise MessageError(str(exc)) from None
        self._consistency_sig[sender] = bytes(msg["signature"])

    def _after_consistency(self) -> Outgoing:
        u4 = self._close(self._replied)
        signers = sorted(u4)
        signatures = [self._consistency_sig[v] for v in signers]
        dropped = self._u2 - self._u3

        def build(cid: int) -> tuple[str, dict]:
            alive = sorted(self.graph.closed(cid) & self._u3)
            gone = sorted(self.graph.neighbours[cid] & dropped)
            self._requests[cid] = (alive, gone)
            return SIGNED_UNMASK_REQUEST.kind, {"alive": _arr(alive), "dropped": _arr(gone),
                                                "signers": _arr(signers), "signatures": signatures}
        return self._send("unmask", u4, build)
