"""A malicious-server simulator: play a deviating server against the real client machines and check what it learns.

The simulated server wraps the protocol's honest server machine, rewrites what it sends and intercepts what it
receives, exactly as a deviating server could (it never touches a client's memory). After the round, it tries to
reconstruct a target client's weighted input ``[w' x, w']`` from what it received and from the secrets it made up
itself. The simulation knows every client's true input, so ``server_learned`` is checked exactly: a client id is
listed when the server's reconstruction equals that client's true weighted input to within 1e-3 per entry (far
below the distance of any reconstruction that failed, which decodes to values spread over the whole ring or
plaintext space). Nothing here is a secret path of a deployment: it exists to show the attacks.

Behaviours (``BEHAVIOURS``):

* ``forge-keys`` (SecAgg): man in the middle — the target is sent server-made key-agreement keys for every peer, so
  the server decrypts the target's shares of its self-mask seed, feeds it fabricated shares, and removes every mask
  from its masked input. Semi-honest clients cannot tell; active clients refuse on the advertisement signatures.
* ``equivocate`` (SecAgg): the server tells one group the target survived (they reveal its self-mask shares) and
  another that it dropped (they reveal its masking-key shares). Succeeds in semi-honest mode when both groups can
  reach t (t <= n/2, e.g. ``-o threshold=0.5``); active mode refuses such a threshold at construction and, at any
  threshold, clients refuse to unmask without t signatures on the survivor set they signed.
* ``replay`` (all): messages of an earlier round are reused. For HE the server asks to decrypt the target's
  ciphertext plus the previous round's encrypted sum (whose plaintext it already knows) and subtracts; for SecAgg it
  relays the previous round's peer advertisements to the target. Active clients refuse: signatures bind round and
  session.
* ``decrypt-individual`` (HE): the server asks a key holder to decrypt the target's ciphertext alone (padded with
  copies in active mode). Semi-honest key holders check only the claimed count; active ones refuse.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping

import numpy as np

from protocols import registry, shamir
from protocols.base import AggregateResult, ClientUpdate, Outgoing, ServerStateMachine
from protocols.encoding import weighted_vector
from protocols.errors import ConfigError, MessageError, PrivfedError, ProtocolAbort
from protocols.wire import Message, decode, encode
from privfed.runtime.local import RoundReport, run_round

__all__ = ["BEHAVIOURS", "simulate_malicious_server", "bench_malicious"]

BEHAVIOURS = ("forge-keys", "equivocate", "replay", "decrypt-individual")
SECAGG_BEHAVIOURS = ("forge-keys", "equivocate", "replay")
HE_BEHAVIOURS = ("replay", "decrypt-individual")
LEARNED_TOLERANCE = 1e-3


class _Hijacked:
    """The protocol with its server machine replaced by an attacker wrapping the honest one."""

    def __init__(self, inner: Any, make: Callable[[Any, int], ServerStateMachine]) -> None:
        self.inner, self._make = inner, make

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def server(self, round_id: int, client_ids: Any, dim: int) -> ServerStateMachine:
        return self._make(self.inner.server(round_id, client_ids, dim), round_id)

    def client(self, *args: Any) -> Any:
        return self.inner.client(*args)


class _Attacker(ServerStateMachine):
    """Forwards to the honest machine; subclasses rewrite requests (``rewrite``) and intercept replies."""

    def __init__(self, inner: Any, round_id: int, target: int, memory: dict) -> None:
        self.inner, self.round_id, self.target, self.memory = inner, round_id, target, memory
        self.phase = ""
        self.private: set[int] = set()  # clients whose replies this phase the attacker keeps to itself
        self.recovered: np.ndarray | None = None

    def start(self) -> Outgoing:
        return self._out(self.inner.start())

    def advance(self) -> Outgoing | AggregateResult:
        try:
            step = self.inner.advance()
        except MessageError as exc:  # the honest machine cannot finish from the state the attack left
            raise ProtocolAbort(f"the attacked round cannot finish: {exc}") from None
        return self._out(step) if isinstance(step, Outgoing) else step

    def _out(self, out: Outgoing) -> Outgoing:
        self.phase, self.private = out.phase, set()
        return Outgoing(out.phase, self.rewrite(out.phase, dict(out.messages)))

    def receive(self, sender: int, payload: bytes) -> None:
        try:
            self.intercept(self.phase, sender, payload)
        except PrivfedError:
            pass  # the attack failed on this message; the honest machine still judges it below
        if sender not in self.private:
            self.inner.receive(sender, payload)

    def rewrite(self, phase: str, messages: dict[int, bytes]) -> dict[int, bytes]:
        return messages

    def intercept(self, phase: str, sender: int, payload: bytes) -> None:
        return None

    def _request(self, kind: str, fields: Mapping[str, Any]) -> bytes:
        return encode(Message(self.inner.protocol.name, kind, self.round_id, -1, dict(fields)))


# -- SecAgg --------------------------------------------------------------------------------------------------------


class _SecAggAttacker(_Attacker):
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


# -- HE --------------------------------------------------------------------------------------------------------


class _HEAttacker(_Attacker):
    def __init__(self, inner: Any, round_id: int, target: int, memory: dict, behaviour: str) -> None:
        super().__init__(inner, round_id, target, memory)
        self.behaviour = behaviour
        self.active = bool(inner.protocol.active)
        self.uploads: dict[int, Any] = {}
        self.signed: dict[int, bytes] = {}
        self.known_offset: np.ndarray | None = None
        self.n_summed = 1

    def intercept(self, phase: str, sender: int, payload: bytes) -> None:
        inner = self.inner
        if phase == "upload":
            msg = decode(payload, inner._update_spec, protocol=inner.name, round_id=self.round_id, sender=sender)
            self.uploads[sender] = msg["ciphertexts"]
            if self.active:
                from protocols.he_active import contribution_message
                self.signed[sender] = contribution_message(inner.name, self.round_id, sender, msg["ciphertexts"],
                                                           msg["signature"])
        if phase == "decrypt" and inner.protocol.release == "server" and self.recovered is None:
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

    def _fresh_codec(self) -> Any:
        inner = self.inner
        return inner.protocol.server_codec(inner.protocol.key_authority().public_material, inner.dim,
                                           len(inner.client_ids))

    def reconstruct(self) -> np.ndarray | None:
        return self.recovered


# -- driver --------------------------------------------------------------------------------------------------------


def simulate_malicious_server(protection: str, options: Mapping[str, Any], updates: Mapping[int, ClientUpdate],
                              behaviour: str) -> dict[str, Any]:
    """Run ``behaviour`` against ``protection`` and report ``server_learned`` and the clients' refusals."""
    if behaviour not in BEHAVIOURS:
        raise ConfigError(f"unknown malicious-server behaviour {behaviour!r}; choose from {', '.join(BEHAVIOURS)}")
    protocol = registry.create(protection, options)
    family = "secagg" if protocol.name == "secagg" else ("he" if hasattr(protocol, "key_authority") else None)
    allowed = {"secagg": SECAGG_BEHAVIOURS, "he": HE_BEHAVIOURS}.get(family or "", ())
    if behaviour not in allowed:
        raise ConfigError(f"--malicious-server {behaviour} does not apply to {protection!r} (it applies to "
                          f"{'secagg' if behaviour in ('forge-keys', 'equivocate') else 'paillier and ckks'}; "
                          f"the simulator covers secagg, paillier and ckks)")
    ids = sorted(updates)
    target = ids[-1]
    memory: dict[str, Any] = {"first_round": 1}
    attackers: list[Any] = []

    def make(inner: Any, round_id: int) -> ServerStateMachine:
        cls = _SecAggAttacker if family == "secagg" else _HEAttacker
        attacker = cls(inner, round_id, target, memory, behaviour)
        attackers.append(attacker)
        return attacker

    hijacked = _Hijacked(protocol, make)
    states: dict[int, dict] = {}
    reports: list[RoundReport] = []
    rounds = (1, 2) if behaviour == "replay" else (1,)
    for round_id in rounds:
        report = run_round(hijacked, round_id, updates, client_states=states, transcript=False)  # type: ignore[arg-type]
        reports.append(report)
        if round_id == 1 and behaviour == "replay" and family == "he":
            memory["plain_sum"] = attackers[-1].recovered
    attacker = attackers[-1]
    learned: list[int] = []
    try:
        recovered = attacker.reconstruct()
    except PrivfedError:
        recovered = None
    if recovered is not None:
        u = updates[target]
        clip = float(protocol.clip)
        x = np.clip(u.vector, np.float32(-clip), np.float32(clip))
        truth = weighted_vector(x, float(u.weight), float(protocol.max_weight))
        if recovered.shape == truth.shape and float(np.max(np.abs(recovered - truth))) <= LEARNED_TOLERANCE:
            learned.append(target)
    last = reports[-1]
    refusals = {str(c): d["reason"] for c, d in sorted(last.dropped.items()) if d["reason"] != "injected dropout"}
    refusals.update({str(c): "server rejected: " + d["reason"] for c, d in sorted(last.rejected.items())})
    return {
        "malicious_server": behaviour,
        "active": bool(getattr(protocol, "active", False)),
        "target": target,
        "rounds": len(reports),
        "server_learned": learned,
        "refusals": refusals,
        "round_aborted": last.aborted,
        "round_completed": last.result is not None,
    }


def bench_malicious(spec: Any, behaviour: str) -> dict[str, Any]:
    """``privfed bench ... --malicious-server BEHAVIOUR``: the bench record of one simulated attack."""
    from privfed.bench.aggregation import MAX_WEIGHT, VALUE_RANGE, synthetic_updates

    if spec.drops:
        raise ConfigError("--malicious-server and --drop cannot be combined (the simulated server decides dropouts)")
    options = {"max_weight": MAX_WEIGHT, "clip": VALUE_RANGE, **spec.options}
    updates = synthetic_updates(spec.clients, spec.params, spec.seed)
    record = simulate_malicious_server(spec.protection, options, updates, behaviour)
    return {"protection": spec.protection, "clients": spec.clients, "params": spec.params, "seed": spec.seed,
            "options": {k: v for k, v in spec.options.items()}, **record}
