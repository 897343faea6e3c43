"""In-process runtime: drives one round of any protocol pair with exact byte counts and per-party clocks.

Every message crosses as the bytes the protocol produced, so byte counts are the real ones, per client, per phase
and per direction. Client compute (creating the client machine and every ``handle`` call) and server compute
(``start``/``receive``/``advance``) are timed separately with ``time.perf_counter``. Dropouts are injected at a
named point (``before-upload``, ``after-upload`` or one of the protocol's phases): from that phase on the client
receives nothing and answers nothing. A reply the server rejects (any ``PrivfedError``, normally ``MessageError``)
or a client that refuses (any ``PrivfedError``) makes that client a dropout with the reason recorded.

Nothing a peer sends makes :func:`run_round` raise. Protocols validate every reply before touching their state, so
a foreign exception (``ValueError``, ``TypeError`` ...) out of a server step is a protocol bug; as a last resort the
runtime still contains it: the client is recorded as rejected with a reason that starts with
:data:`INTERNAL_ERROR` and names the exception type, and — because a server step that failed half-way may have
changed its state — the round is aborted with that reason rather than risk a wrong aggregate. A foreign exception
in a client's own machine only affects that client: it is recorded as that client's dropout (same prefix). The
contract fuzz asserts the prefix never appears. The transcript is simply what each party received: kind, size and
keyed digest (HMAC-SHA256 under a per-run key that is never written, see :mod:`privfed.runtime.transcript`) of every
delivered message, never the content.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, MutableMapping

import numpy as np

from protocols.base import (LEARNED_BY_KEY_HOLDERS, AggregateResult, AggregationProtocol, ClientStateMachine,
                            ClientUpdate, Outgoing)
from protocols.errors import MessageError, PrivfedError, ProtocolAbort

from .transcript import TranscriptEntry, TranscriptKey, transcript_entry

__all__ = ["RoundReport", "TranscriptEntry", "TranscriptKey", "ServerSide", "run_round", "transcript_entry", "SERVER",
           "INTERNAL_ERROR"]

SERVER = "server"
#: prefix of a recorded reason when a protocol step raised something other than a PrivfedError (a protocol bug
#: contained by the runtime; the contract fuzz asserts it never appears)
INTERNAL_ERROR = "internal error"
Tamper = Callable[[str, int, bytes], "bytes | None"]


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
    server_view: list[tuple[str, int, bytes | memoryview]] = field(default_factory=list)
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


class ServerSide:
    """The server half of one round, shared by every runtime (in-process here, Flower in ``privfed.runtime.flower``):
    it creates and drives the protocol's server machine with its clock, and keeps the report's books — which
    clients are gone and why, the bytes each request and reply carried, the transcript and the server's view.
    Runtimes only move the bytes between :meth:`deliverable` and :meth:`accept`."""

    def __init__(self, protocol: AggregationProtocol, round_id: int, ids: tuple[int, ...], dim: int,
                 report: RoundReport, drops: Mapping[int, str] | None, transcript: bool,
                 record_server_view: bool, transcript_key: TranscriptKey | None = None) -> None:
        self.report, self.transcript, self.record_server_view = report, transcript, record_server_view
        # keyed digests only: the run's key, or a fresh one for this round (never written either way)
        self.key = transcript_key if transcript_key is not None else TranscriptKey()
        self.ids = set(ids)
        self.stop_at = {cid: protocol.resolve_drop_phase(point) for cid, point in (drops or {}).items()}
        self.gone: dict[int, dict[str, str]] = {}
        #: set when a server step failed with a foreign exception: the round aborts at the next advance
        self.broken: str | None = None
        clock = time.perf_counter()
        try:
            self.server = protocol.server(round_id, ids, dim)
            self.outgoing: Outgoing | None = self.server.start()
        finally:
            report.server_seconds += time.perf_counter() - clock

    def deliverable(self) -> tuple[str, dict[int, bytes]]:
        """The current phase and the requests to deliver (clients gone or dropping here get none)."""
        assert self.outgoing is not None
        phase = self.outgoing.phase
        self.report.phases.append(phase)
        sending: dict[int, bytes] = {}
        for cid, payload in self.outgoing.messages.items():
            if cid not in self.ids:
                raise ProtocolAbort(f"server addressed unknown client {cid}")
            if cid in self.gone:
                continue
            if self.stop_at.get(cid) == phase:
                self.drop(cid, phase, "injected dropout")
                continue
            self.report.download_bytes[cid][phase] += len(payload)
            if self.transcript:
                self.report.transcript.append(transcript_entry(phase, SERVER, str(cid), payload, self.key))
            sending[cid] = payload
        return phase, sending

    def drop(self, cid: int, phase: str, reason: str) -> None:
        self.gone[cid] = self.report.dropped[cid] = {"phase": phase, "reason": reason}

    def reject(self, cid: int, phase: str, reason: str) -> None:
        self.gone[cid] = self.report.rejected[cid] = {"phase": phase, "reason": reason}

    def accept(self, phase: str, cid: int, payload: bytes | memoryview) -> None:
        """Count, record and hand one reply to the server; a reply it refuses makes the client a rejected one."""
        self.report.upload_bytes[cid][phase] += len(payload)
        if self.transcript:
            self.report.transcript.append(transcript_entry(phase, str(cid), SERVER, payload, self.key))
        if self.record_server_view:
            self.report.server_view.append((phase, cid, payload))
        clock = time.perf_counter()
        try:
            self.server.receive(cid, payload)
        except PrivfedError as exc:
            self.reject(cid, phase, str(exc) or type(exc).__name__)
        except Exception as exc:  # last resort: a protocol bug, contained (see the module docstring)
            reason = _internal(exc, "the server could not process this reply")
            self.reject(cid, phase, reason)
            self.broken = f"{reason}; round aborted rather than risk a wrong aggregate"
        finally:
            self.report.server_seconds += time.perf_counter() - clock

    def advance(self) -> bool:
        """Close the phase. True while the round goes on; False once it has a result or has aborted."""
        if self.broken is not None:
            self.report.aborted, self.outgoing = self.broken, None
            return False
        clock = time.perf_counter()
        try:
            step = self.server.advance()
        except PrivfedError as exc:
            self.report.aborted, self.outgoing = str(exc) or type(exc).__name__, None
            return False
        except Exception as exc:  # last resort, as in accept()
            self.report.aborted, self.outgoing = _internal(exc, "the server could not close the phase"), None
            return False
        finally:
            self.report.server_seconds += time.perf_counter() - clock
        if isinstance(step, AggregateResult):
            self.report.result, self.outgoing = step, None
            return False
        self.outgoing = step
        return True


def run_round(protocol: AggregationProtocol, round_id: int, updates: Mapping[int, ClientUpdate], *,
              drops: Mapping[int, str] | None = None,
              client_states: MutableMapping[int, MutableMapping[str, Any]] | None = None,
              client_overrides: Mapping[int, Callable[[ClientStateMachine], ClientStateMachine]] | None = None,
              tamper: Tamper | None = None,
              transcript: bool = True,
              record_server_view: bool = False,
              transcript_key: TranscriptKey | None = None) -> RoundReport:
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
    states = client_states if client_states is not None else {}
    machines: dict[int, ClientStateMachine] = {}
    side = ServerSide(protocol, round_id, ids, dim, report, drops, transcript, record_server_view, transcript_key)
    while True:
        phase, sending = side.deliverable()
        for cid, payload in sending.items():
            clock = time.perf_counter()
            try:
                if cid not in machines:
                    machine = protocol.client(cid, round_id, updates[cid], states.setdefault(cid, {}))
                    if client_overrides and cid in client_overrides:
                        machine = client_overrides[cid](machine)
                    machines[cid] = machine
                reply = machines[cid].handle(payload)
            except PrivfedError as exc:
                side.drop(cid, phase, f"client stopped: {exc}")
                continue
            except Exception as exc:  # last resort: a client-side protocol bug only ends that client's round
                side.drop(cid, phase, "client stopped: " + _internal(exc, "the client could not process the request"))
                continue
            finally:
                report.client_seconds[cid] += time.perf_counter() - clock
            if tamper is not None and reply is not None:
                reply = tamper(phase, cid, bytes(reply))  # tamper sees the wire bytes (a slot's view copied)
            if reply is not None:
                side.accept(phase, cid, reply)
        if not side.advance():
            break
    if report.result is not None and report.result.learned_by == LEARNED_BY_KEY_HOLDERS:
        report.key_holder_result = _key_holder_result(report.result, states, round_id)
    report.total_seconds = time.perf_counter() - started
    return report


def _internal(exc: Exception, what: str) -> str:
    """The recorded reason for a foreign exception: its type only (its text could quote secret state)."""
    return f"{INTERNAL_ERROR}: {what} ({type(exc).__name__})"


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
