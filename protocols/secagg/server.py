"""The SecAgg server: routes keys and share ciphertexts, sums masked inputs, reconstructs and removes the masks.

Threat model: the server is honest-but-curious. Everything it holds is listed here so an auditor can check that
none of it reveals an individual input: public keys, AES-GCM ciphertexts addressed to clients, commitments to
self-mask seeds, masked vectors (each uniform on the ring), and in the unmask phase the b-shares of clients whose
masked input it accepted and the s-key shares of clients that dropped before upload — never both for one client,
because the alive and dropped sets it announces are disjoint and fixed when the upload phase closes (a masked input
that arrives after that is rejected, so a client declared dropped stays hidden behind its self mask). It checks
every reconstruction (a private key must match its advertised public key, a seed its commitment) and aborts rather
than return a sum it cannot vouch for; it aborts as soon as a needed neighbourhood has fewer than t survivors. The
graph labelling and the round's session nonce come from an OS-keyed CSPRNG (see :mod:`protocols.secagg.graph`
for why that suffices only against an honest-but-curious server). Exceptions name clients and counts, never
secrets.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Callable

import numpy as np

from .. import shamir
from ..base import AggregateResult, LEARNED_BY_SERVER, Outgoing, ServerStateMachine
from ..csprng import CSPRNG
from ..encoding import weighted_mean_error_bound
from ..errors import MessageError, ProtocolAbort
from ..wire import Message, decode, encode
from . import keys, masking
from .graph import Graph, complete_graph, harary_graph
from .messages import (ADVERTISE_REQUEST, KEYS, MASK_REQUEST, NAME, PHASES, REVEAL, SERVER_ID,
                       SESSION_BYTES, SHARE_CIPHERTEXT_BYTES, SHARE_REQUEST, SHARES, UNMASK_REQUEST, masked_spec)

if TYPE_CHECKING:
    from . import RoundPlan, SecAggProtocol

__all__ = ["SecAggServer"]

ADVERTISE, SHARE, MASKED, UNMASK = PHASES


class SecAggServer(ServerStateMachine):
    def __init__(self, protocol: "SecAggProtocol", round_id: int, ids: tuple[int, ...], dim: int,
                 plan: "RoundPlan") -> None:
        self.protocol, self.round_id, self.ids, self.dim, self.plan = protocol, round_id, ids, dim, plan
        self.bits = protocol.ring_bits
        self.t = plan.threshold
        rng = CSPRNG.from_os()
        self.graph: Graph = harary_graph(ids, plan.k, rng) if plan.graph == "harary" else complete_graph(ids)
        self.session = os.urandom(SESSION_BYTES)
        self.salt = keys.round_salt(round_id, self.session)
        self.phase = ""
        self._expected: frozenset[int] = frozenset()
        self._replied: set[int] = set()
        self._handlers: dict[str, Callable[[int, bytes], None]] = {
            ADVERTISE: self._receive_keys, SHARE: self._receive_shares, MASKED: self._receive_masked,
            UNMASK: self._receive_reveal}
        self.c_pk: dict[int, bytes] = {}
        self.s_pk: dict[int, bytes] = {}
        self._key_owner: dict[bytes, int] = {}
        self._key_clash: set[int] = set()
        self._inbox: dict[int, dict[int, bytes]] = {}
        self._commit: dict[int, bytes] = {}
        self._sum = np.zeros(dim + 1, dtype=masking.ring_dtype(self.bits))
        self._masked_spec = masked_spec(dim, self.bits)
        self._u1: frozenset[int] = frozenset()
        self._u2: frozenset[int] = frozenset()
        self._u3: frozenset[int] = frozenset()
        self._requests: dict[int, tuple[list[int], list[int]]] = {}
        self._b_shares: dict[int, list[shamir.Share]] = {}
        self._s_shares: dict[int, list[shamir.Share]] = {}
        self.dropped_at: dict[str, list[int]] = {}

    def __repr__(self) -> str:
        return f"SecAggServer(round={self.round_id}, n={len(self.ids)}, phase={self.phase})"

    # -- plumbing -------------------------------------------------------------------------------------------------

    def _send(self, phase: str, recipients: frozenset[int], build: Callable[[int], tuple[str, dict]]) -> Outgoing:
        self.phase, self._expected, self._replied = phase, recipients, set()
        messages = {}
        for cid in sorted(recipients):
            kind, fields = build(cid)
            messages[cid] = encode(Message(NAME, kind, self.round_id, SERVER_ID, fields))
        return Outgoing(phase, messages)

    def receive(self, sender: int, payload: bytes) -> None:
        if sender not in self._expected:
            raise MessageError(f"client {sender} was not asked for a reply in phase {self.phase}")
        if sender in self._replied:
            raise MessageError(f"second reply from client {sender} in phase {self.phase} (replay)")
        self._handlers[self.phase](sender, payload)
        self._replied.add(sender)

    def _close(self, survivors: set[int]) -> frozenset[int]:
        """Record the phase's dropouts and abort if any survivor's neighbourhood fell below t."""
        survivors = frozenset(survivors)
        self.dropped_at[self.phase] = sorted(self._expected - survivors)
        if len(survivors) < self.t:
            raise ProtocolAbort(f"phase {self.phase}: {len(survivors)} clients remain, threshold {self.t}")
        for u in survivors:
            if len(self.graph.closed(u) & survivors) < self.t:
                raise ProtocolAbort(f"phase {self.phase}: only {len(self.graph.closed(u) & survivors)} clients of "
                                    f"client {u}'s neighbourhood remain, threshold {self.t}")
        return survivors

    def advance(self) -> Outgoing | AggregateResult:
        step = {ADVERTISE: self._after_keys, SHARE: self._after_shares, MASKED: self._after_masked,
                UNMASK: self._finish}.get(self.phase)
        if step is None:
            raise ProtocolAbort("the round is over")
        return step()

    # -- phase 1: advertise keys ----------------------------------------------------------------------------------

    def start(self) -> Outgoing:
        plan = self.plan

        def build(cid: int) -> tuple[str, dict]:
            return ADVERTISE_REQUEST.kind, {
                "session": self.session, "n": plan.n, "threshold": plan.threshold, "graph": plan.graph,
                "k": plan.k, "neighbours": np.asarray(sorted(self.graph.neighbours[cid]), dtype=np.int64),
                "dim": self.dim, "ring_bits": self.bits}
        return self._send(ADVERTISE, frozenset(self.ids), build)

    def _receive_keys(self, sender: int, payload: bytes) -> None:
        msg = decode(payload, KEYS, protocol=NAME, round_id=self.round_id, sender=sender)
        c_pk, s_pk = bytes(msg["c_pk"]), bytes(msg["s_pk"])
        if c_pk == s_pk:
            raise MessageError(f"client {sender} advertised the same key twice")
        for key in (c_pk, s_pk):
            owner = self._key_owner.get(key)
            if owner is not None:
                self._key_clash.add(owner)  # the first holder is suspect too: both are excluded
                raise MessageError(f"client {sender} advertised a public key already advertised by client {owner}")
        self._key_owner[c_pk] = self._key_owner[s_pk] = sender
        self.c_pk[sender], self.s_pk[sender] = c_pk, s_pk

    def _after_keys(self) -> Outgoing:
        self._u1 = self._close(self._replied - self._key_clash)

        def build(cid: int) -> tuple[str, dict]:
            peers = sorted(self.graph.neighbours[cid] & self._u1)
            return SHARE_REQUEST.kind, {"peers": np.asarray(peers, dtype=np.int64),
                                        "c_pks": [self.c_pk[v] for v in peers],
                                        "s_pks": [self.s_pk[v] for v in peers]}
        return self._send(SHARE, self._u1, build)

    # -- phase 2: share keys --------------------------------------------------------------------------------------

    def _receive_shares(self, sender: int, payload: bytes) -> None:
        msg = decode(payload, SHARES, protocol=NAME, round_id=self.round_id, sender=sender)
        recipients = [int(v) for v in msg["recipients"]]
        if recipients != sorted(self.graph.neighbours[sender] & self._u1):
            raise MessageError(f"client {sender} addressed shares to the wrong set of recipients")
        ciphertexts = msg["ciphertexts"]
        if len(ciphertexts) != len(recipients) or any(len(c) != SHARE_CIPHERTEXT_BYTES for c in ciphertexts):
            raise MessageError(f"client {sender} sent malformed share ciphertexts")
        for recipient, ciphertext in zip(recipients, ciphertexts):
            self._inbox.setdefault(recipient, {})[sender] = bytes(ciphertext)
        self._commit[sender] = bytes(msg["b_commit"])

    def _after_shares(self) -> Outgoing:
        self._u2 = self._close(self._replied)

        def build(cid: int) -> tuple[str, dict]:
            senders = sorted(self.graph.neighbours[cid] & self._u2)
            inbox = self._inbox.get(cid, {})
            return MASK_REQUEST.kind, {"senders": np.asarray(senders, dtype=np.int64),
                                       "ciphertexts": [inbox[v] for v in senders]}
        outgoing = self._send(MASKED, self._u2, build)
        self._inbox = {}
        return outgoing

    # -- phase 3: masked input ------------------------------------------------------------------------------------

    def _receive_masked(self, sender: int, payload: bytes) -> None:
        msg = decode(payload, self._masked_spec, protocol=NAME, round_id=self.round_id, sender=sender)
        y = msg["y"]
        if self.bits not in (32, 64) and int(y.max()) >> self.bits:
            raise MessageError(f"client {sender} sent values outside Z_2^{self.bits}")
        masking.add_into(self._sum, y)  # y is a read-only view over the payload: summed without a copy

    def _after_masked(self) -> Outgoing:
        self._u3 = self._close(self._replied)
        floor = self.protocol.min_survivors
        if floor is not None and len(self._u3) < floor:
            raise ProtocolAbort(f"phase {self.phase}: {len(self._u3)} masked inputs arrived, fewer than "
                                f"min_survivors = {floor} (with the declared colluders the sum could hold a single "
                                f"honest input): nothing is unmasked")
        dropped = self._u2 - self._u3
        for v in dropped:  # the s-key of every client that dropped before upload must be recoverable
            if len(self.graph.neighbours[v] & self._u3) < self.t:
                raise ProtocolAbort(f"phase {self.phase}: client {v} dropped and only "
                                    f"{len(self.graph.neighbours[v] & self._u3)} of its neighbours remain, "
                                    f"threshold {self.t}")

        def build(cid: int) -> tuple[str, dict]:
            alive = sorted(self.graph.closed(cid) & self._u3)
            gone = sorted(self.graph.neighbours[cid] & dropped)
            self._requests[cid] = (alive, gone)
            return UNMASK_REQUEST.kind, {"alive": np.asarray(alive, dtype=np.int64),
                                         "dropped": np.asarray(gone, dtype=np.int64)}
        return self._send(UNMASK, self._u3, build)

    # -- phase 4: unmask ------------------------------------------------------------------------------------------

    def _receive_reveal(self, sender: int, payload: bytes) -> None:
        msg = decode(payload, REVEAL, protocol=NAME, round_id=self.round_id, sender=sender)
        alive, gone = self._requests[sender]
        if [int(v) for v in msg["b_ids"]] != alive or [int(v) for v in msg["s_ids"]] != gone:
            raise MessageError(f"client {sender} revealed shares for clients it was not asked about")
        if len(msg["b_shares"]) != len(alive) or len(msg["s_shares"]) != len(gone):
            raise MessageError(f"client {sender} revealed the wrong number of shares")
        b = [shamir.Share.from_bytes(raw) for raw in msg["b_shares"]]
        s = [shamir.Share.from_bytes(raw) for raw in msg["s_shares"]]
        if any(share.x != sender + 1 or share.threshold != self.t for share in (*b, *s)):
            raise MessageError(f"client {sender} revealed shares that are not its own")
        for v, share in zip(alive, b):
            self._b_shares.setdefault(v, []).append(share)
        for v, share in zip(gone, s):
            self._s_shares.setdefault(v, []).append(share)

    def _finish(self) -> AggregateResult:
        responders = self._close(self._replied)
        bits, total = self.bits, self._sum
        add_keys: list[bytes] = []
        sub_keys: list[bytes] = []
        for v in sorted(self._u3):
            seed = shamir.reconstruct_secret(self._b_shares.get(v, []), keys.KEY_BYTES)
            if keys.commit_self_mask(seed, self.salt, self.round_id, v) != self._commit[v]:
                raise ProtocolAbort(f"the self-mask seed of client {v} does not match its commitment: "
                                    f"a share was corrupted")
            sub_keys.append(keys.self_mask_key(seed, self.salt, self.round_id, v))
        for v in sorted(self._u2 - self._u3):
            raw = shamir.reconstruct_secret(self._s_shares.get(v, []), keys.KEY_BYTES)
            private = keys.private_from_bytes(raw)
            if keys.public_bytes(private) != self.s_pk[v]:
                raise ProtocolAbort(f"the reconstructed masking key of client {v} does not match its public key: "
                                    f"a share was corrupted")
            for u in sorted(self.graph.neighbours[v] & self._u3):
                key = keys.mask_key(keys.agree(private, self.s_pk[u]), self.salt, self.round_id, u, v)
                (sub_keys if u < v else add_keys).append(key)
        masking.apply_masks(total, add_keys, sub_keys, bits)
        self._b_shares, self._s_shares = {}, {}
        self.decoded_ring_sum = total  # the aggregate the server is entitled to (kept for audits and tests)
        return self._decode(total, len(responders))

    def _decode(self, total: np.ndarray, responders: int) -> AggregateResult:
        fp = self.plan.fixed_point
        n_summed = len(self._u3)
        mean, total_weight, weight_sum = fp.weighted_mean_from_ring(total, n_summed, float(self.protocol.max_weight))
        sum_error = fp.sum_error_bound(n_summed)
        bound = weighted_mean_error_bound(sum_error, weight_sum, float(self.protocol.clip))
        # plus float64 arithmetic (w * x before encoding, int -> float, the division): a few ulps of |mean| <= clip,
        # which only matters for 64-bit rings where the fixed-point step falls below float64 resolution
        bound += 16 * 2.0 ** -53 * float(self.protocol.clip)
        info = {
            "protocol": NAME,
            "graph": self.plan.graph,
            "neighbours": self.plan.k,
            "threshold": self.t,
            "ring_bits": self.bits,
            "frac_bits": fp.frac_bits,
            "scale": fp.scale,
            "noise_survivors": n_summed if self.protocol.client_noise is not None else 0,
            "summed_clients": n_summed,
            "unmask_responders": responders,
            "dropped_at": {phase: list(ids) for phase, ids in self.dropped_at.items() if ids},
            "sum_error_bound": sum_error,
        }
        return AggregateResult(mean, total_weight, tuple(sorted(self._u3)), LEARNED_BY_SERVER, bound, info)

