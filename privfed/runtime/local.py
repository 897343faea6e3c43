"""In-process runtime: drives one round of any protocol pair with exact byte counts and per-party clocks.

Every message crosses as the bytes the protocol produced, so byte counts are the real ones, per client, per phase
and per direction. Client compute (creating the client machine and every ``handle`` call) and server compute
(``start``/``receive``/``advance``) are timed separately with ``time.perf_counter``. Dropouts are injected at a
named point (``before-upload``, ``after-upload`` or one of the protocol's phases): from that phase on the client
receives nothing and answers nothing. A reply the server rejects (``MessageError``) or a client that refuses
(any ``PrivfedError``) makes that client a dropout with the reason recorded. The transcript is simply what each
party received: kind, size and SHA-256 digest of every delivered message (never the content).
"""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, MutableMapping

import numpy as np

from protocols.base import (LEARNED_BY_KEY_HOLDERS, AggregateResult, AggregationProtocol, ClientStateMachine,
                            ClientUpdate)
from protocols.errors import MessageError, PrivfedError, ProtocolAbort
from protocols.wire import peek_header

__all__ = ["RoundReport", "TranscriptEntry", "run_round", "SERVER"]

SERVER = "server"
Tamper = Callable[[str, int, bytes], "bytes | None"]


@dataclass(frozen=True)
class TranscriptEntry:
    """One delivered message: who received it, in which phase, its kind, size and digest."""

    phase: str
    sender: str
    recipient: str
    kind: str
    size: int
    sha256: str


@dataclass
class RoundReport:
    """Everything the runtime observed in one round."""

    protection: str
    round_id: int
    participants: tuple[int, ...]
    result: AggregateResult | None = None
    aborted: str | None = None
    dropped: dict[int, dict[str, str]] = field(default_factory=dict)
    rejected: dict[int, dict[str, str]] = field(default_factory=dict)
    upload_bytes: dict[int, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    download_bytes: dict[int, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    client_seconds: dict[int, float] = field(default_factory=lambda: defaultdict(float))
    server_seconds: float = 0.0
    total_seconds: float = 0.0
    phases: list[str] = field(default_factory=list)
    transcript: list[TranscriptEntry] = field(default_factory=list)
    server_view: list[tuple[str, int, bytes]] = field(default_factory=list)
    #: with ``learned_by == "key-holders"``: (mean, total weight) as a key holder decrypted it (simulation only)
    key_holder_result: tuple[np.ndarray, float] | None = None

    @property
    def aggregate(self) -> np.ndarray | None:
        """The round's weighted mean as the party entitled to it learned it: the server's result, or, when only the
        key holders learn it, their decryption (the simulation can look into both sides; a deployment cannot)."""
        if self.result is None:
            return None
        if self.result.learned_by == LEARNED_BY_KEY_HOLDERS:
            return self.key_holder_result[0] if self.key_holder_result is not None else None
        return np.asarray(self.result.mean, dtype=np.float64)

    @property
    def survivors(self) -> tuple[int, ...]:
        """Clients whose input is in the result (the protocol's contributors)."""
        return self.result.survivors if self.result is not None else ()

    @property
    def completed(self) -> tuple[int, ...]:
        """Clients that took part in every phase of a round that produced a result (none dropped or rejected).

        Differs from :attr:`survivors` when a client drops after its input is in the sum: in SecAgg a client that
        vanishes after uploading its masked input stays in the sum (excluding it would unmask it), so it is a
        contributor but not a survivor of the round.
        """
        if self.result is None:
            return ()
        return tuple(c for c in self.participants if c not in self.dropped and c not in self.rejected)

    def upload_total(self, client_id: int) -> int:
        return sum(self.upload_bytes.get(client_id, {}).values())

    def download_total(self, client_id: int) -> int:
        return sum(self.download_bytes.get(client_id, {}).values())

    def mean_over(self, clients: tuple[int, ...], per_client: Callable[[int], float]) -> float:
        return sum(per_client(c) for c in clients) / len(clients) if clients else 0.0

    def summary(self) -> dict[str, Any]:
        """Per-round figures in plain types (for rounds.jsonl and bench JSON).

        ``survivors`` counts the clients that completed the round, ``contributors`` those whose input is in the
        result. Per-client means are over the clients that completed the round (they did all of its work).
        """
        counted = self.completed or self.survivors or self.participants
        return {
            "protection": self.protection,
            "round": self.round_id,
            "participants": len(self.participants),
            "survivors": len(self.completed),
            "contributors": len(self.survivors),
            "aborted": self.aborted,
            "dropped": {str(k): v for k, v in self.dropped.items()},
            "rejected": {str(k): v for k, v in self.rejected.items()},
            "upload_bytes_per_client": self.mean_over(counted, self.upload_total),
            "download_bytes_per_client": self.mean_over(counted, self.download_total),
            "upload_bytes_by_phase": _by_phase(self.upload_bytes),
            "download_bytes_by_phase": _by_phase(self.download_bytes),
            "client_seconds": self.mean_over(counted, lambda c: self.client_seconds.get(c, 0.0)),
            "server_seconds": self.server_seconds,
            "total_seconds": self.total_seconds,
            "error_bound": self.result.error_bound if self.result is not None else None,
            "learned_by": self.result.learned_by if self.result is not None else None,
        }


def _by_phase(table: Mapping[int, Mapping[str, int]]) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for per_phase in table.values():
        for phase, size in per_phase.items():
            out[phase] += size
    return dict(out)


def _entry(phase: str, sender: str, recipient: str, payload: bytes) -> TranscriptEntry:
    try:
        kind = peek_header(payload)[1]
    except MessageError:
        kind = "<malformed>"
    return TranscriptEntry(phase, sender, recipient, kind, len(payload), hashlib.sha256(payload).hexdigest())


def run_round(protocol: AggregationProtocol, round_id: int, updates: Mapping[int, ClientUpdate], *,
              drops: Mapping[int, str] | None = None,
              client_states: MutableMapping[int, MutableMapping[str, Any]] | None = None,
              client_overrides: Mapping[int, Callable[[ClientStateMachine], ClientStateMachine]] | None = None,
              tamper: Tamper | None = None,
              transcript: bool = True,
              record_server_view: bool = False) -> RoundReport:
    """Run one round in-process and report it. Never raises for a peer's misbehaviour: an abort is reported in
    ``RoundReport.aborted`` with ``result`` None.

    ``drops`` maps client id -> drop point; ``client_overrides`` wraps a client's machine (tests play malicious
    clients with it); ``tamper(phase, client, reply)`` may rewrite or suppress a reply on the wire.
    """
    started = time.perf_counter()
    ids = tuple(sorted(updates))
    dims = {u.vector.size for u in updates.values()}
    if len(dims) != 1:
        raise MessageError(f"clients hold vectors of different lengths {sorted(dims)}")
    (dim,) = dims
    report = RoundReport(protocol.name, round_id, ids)
    stop_at = {cid: protocol.resolve_drop_phase(point) for cid, point in (drops or {}).items()}
    states = client_states if client_states is not None else {}
    machines: dict[int, ClientStateMachine] = {}
    gone: dict[int, dict[str, str]] = {}

    clock = time.perf_counter()
    try:
        server = protocol.server(round_id, ids, dim)
        outgoing = server.start()
    finally:
        report.server_seconds += time.perf_counter() - clock

    while True:
        phase = outgoing.phase
        report.phases.append(phase)
        for cid, payload in outgoing.messages.items():
            if cid not in updates:
                raise ProtocolAbort(f"server addressed unknown client {cid}")
            if cid in gone:
                continue
            if stop_at.get(cid) == phase:
                gone[cid] = report.dropped[cid] = {"phase": phase, "reason": "injected dropout"}
                continue
            report.download_bytes[cid][phase] += len(payload)
            if transcript:
                report.transcript.append(_entry(phase, SERVER, str(cid), payload))
            clock = time.perf_counter()
            try:
                if cid not in machines:
                    machine = protocol.client(cid, round_id, updates[cid], states.setdefault(cid, {}))
                    if client_overrides and cid in client_overrides:
                        machine = client_overrides[cid](machine)
                    machines[cid] = machine
                reply = machines[cid].handle(payload)
            except PrivfedError as exc:
                gone[cid] = report.dropped[cid] = {"phase": phase, "reason": f"client stopped: {exc}"}
                continue
            finally:
                report.client_seconds[cid] += time.perf_counter() - clock
            if tamper is not None and reply is not None:
                reply = tamper(phase, cid, reply)
            if reply is None:
                continue
            report.upload_bytes[cid][phase] += len(reply)
            if transcript:
                report.transcript.append(_entry(phase, str(cid), SERVER, reply))
            if record_server_view:
                report.server_view.append((phase, cid, reply))
            clock = time.perf_counter()
            try:
                server.receive(cid, reply)
            except MessageError as exc:
                reason = {"phase": phase, "reason": str(exc)}
                gone[cid] = report.rejected[cid] = reason
            finally:
                report.server_seconds += time.perf_counter() - clock
        clock = time.perf_counter()
        try:
            step = server.advance()
        except ProtocolAbort as exc:
            report.aborted = str(exc)
            break
        finally:
            report.server_seconds += time.perf_counter() - clock
        if isinstance(step, AggregateResult):
            report.result = step
            break
        outgoing = step
    if report.result is not None and report.result.learned_by == LEARNED_BY_KEY_HOLDERS:
        report.key_holder_result = _key_holder_result(report.result, states, round_id)
    report.total_seconds = time.perf_counter() - started
    return report


#: where key-holding clients keep what they decrypted: ``state[slot][round_id] = (mean, total_weight)``
KEY_HOLDER_RESULTS = "privfed.he.results"


def _key_holder_result(result: AggregateResult, states: Mapping[int, Mapping[str, Any]], round_id: int,
                       ) -> tuple[np.ndarray, float] | None:
    for cid in result.info.get("decrypted_by", result.survivors):
        found = states.get(cid, {}).get(KEY_HOLDER_RESULTS, {}).get(round_id)
        if found is not None:
            mean, weight = found
            return np.asarray(mean, dtype=np.float64), float(weight)
    return None
