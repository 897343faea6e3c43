"""Drive one round of any privfed protocol pair over a Flower ``Grid``: one send-and-receive per phase.

This is :func:`privfed.runtime.local.run_round` with the function calls replaced by Flower messages, and it fills
the same :class:`~privfed.runtime.local.RoundReport` with the same semantics so figures are comparable:

* bytes are the protocol payload sizes (``len`` of the bytes the protocol produced), per client, phase and
  direction; Flower's own framing (protobuf, HTTP, the small privfed envelope) is not counted;
* ``server_seconds`` times ``start``/``receive``/``advance``; ``client_seconds`` is what each ClientApp measured
  around creating its machine and ``handle`` (returned in the reply's metrics record); ``total_seconds`` is the
  server's wall clock for the whole round, transport included;
* injected dropouts (``drops``) behave as in the local runtime: from the resolved phase on, the client is sent
  nothing; a reply that does not arrive in time (``reply_timeout``, ``straggler_grace``), a Flower error reply
  (the ClientApp
  crashed) and a refusal (the client's machine raised a PrivfedError) make that client a dropout at that phase;
  a reply that fails the server's validation (or a malformed envelope) is *rejected*, exactly as locally.

Threat model of the transport: in insecure mode nothing is encrypted on the wire; with TLS the channel hides
payloads from the network but the SuperLink still stores and forwards every message, so it sees exactly what the
privfed server sees (the payload bytes of every client). Protections must therefore hold against the server;
privfed's protocols provide that inside the payload, never relying on the channel.
"""

from __future__ import annotations

import time
from typing import Callable, Mapping

from flwr.app import Message, RecordDict
from flwr.serverapp import Grid

from protocols.base import AggregationProtocol
from protocols.errors import MessageError
from privfed.runtime.local import RoundReport, ServerSide
from privfed.runtime.transcript import TranscriptKey

from .envelope import STATUS_NONE, STATUS_REFUSED, Request, pack_request, unpack_reply

__all__ = ["run_round_on_grid", "collect", "PHASE_MESSAGE_TYPE", "POLL_SECONDS"]

#: protocol phases travel as Flower "query" messages (the ClientApp's default query handler)
PHASE_MESSAGE_TYPE = "query"
#: how often the server asks the SuperLink for replies (one small HTTP call; Flower's own loop waits 3 s). A phase
#: ends when its last reply is pulled, so this is added to every phase, on average half of it
POLL_SECONDS = 0.05


def collect(grid: Grid, messages: list[Message], timeout: float, grace: float = 0.0) -> list[Message]:
    """Push ``messages`` and pull their replies until every reply is in, ``timeout`` seconds have passed, or
    (``grace`` > 0) ``grace`` seconds after the first reply arrived. Polls every ``POLL_SECONDS``."""
    if not messages:
        return []
    pending = set(grid.push_messages(messages))
    deadline = time.monotonic() + timeout
    replies: list[Message] = []
    graced = False
    while pending:
        for reply in grid.pull_messages(list(pending)):
            if reply.metadata.reply_to_message_id in pending:
                pending.discard(reply.metadata.reply_to_message_id)
                replies.append(reply)
        now = time.monotonic()
        if not pending or now >= deadline:
            break
        if grace > 0 and replies and not graced:
            deadline, graced = min(deadline, now + grace), True
        time.sleep(POLL_SECONDS)
    return replies


def _request(round_id: int, phase: str, cid: int, payload: bytes, extra: RecordDict | None) -> RecordDict:
    content = pack_request(Request(round_id, phase, cid, payload))
    for key, record in (extra or {}).items():  # application records riding with the request (never the envelope)
        if key not in content:
            content[key] = record
    return content


def _exchange(grid: Grid, round_id: int, phase: str, payloads: Mapping[int, bytes], nodes: Mapping[int, int],
              timeout: float, grace: float = 0.0, message_type: str = PHASE_MESSAGE_TYPE,
              extra: Mapping[int, RecordDict] | None = None) -> dict[int, Message]:
    """Send one phase's requests (with ``extra[cid]``'s records added to client cid's) and collect the replies that
    arrive in time, by client id."""
    messages = [Message(content=_request(round_id, phase, cid, payload, (extra or {}).get(cid)),
                        dst_node_id=nodes[cid], message_type=message_type, group_id=f"{round_id}:{phase}")
                for cid, payload in payloads.items()]
    by_node = {node: cid for cid, node in nodes.items()}
    replies: dict[int, Message] = {}
    for reply in collect(grid, messages, timeout, grace):
        cid = by_node.get(reply.metadata.src_node_id)
        if cid is not None and cid in payloads and cid not in replies:
            replies[cid] = reply
    return replies


def run_round_on_grid(grid: Grid, protocol: AggregationProtocol, round_id: int, nodes: Mapping[int, int],
                      dim: int, *, drops: Mapping[int, str] | None = None, reply_timeout: float = 60.0,
                      straggler_grace: float = 0.0, transcript: bool = True, record_server_view: bool = False,
                      overhead: dict | None = None, transcript_key: TranscriptKey | None = None,
                      message_type: str = PHASE_MESSAGE_TYPE, first_extra: Mapping[int, RecordDict] | None = None,
                      inspect: Callable[[str, int, Message], str | None] | None = None,
                      after_first: Callable[[tuple[int, ...]], str | None] | None = None) -> RoundReport:
    """Run one round over Flower. ``nodes`` maps protocol client id -> Flower node id. Never raises for a peer's
    misbehaviour: an abort is reported in ``RoundReport.aborted`` with ``result`` None. A phase closes when every
    reply is in, ``reply_timeout`` seconds after its requests were sent, or — with ``straggler_grace`` > 0 —
    that many seconds after its first reply arrived (so one dead node does not cost the whole timeout).

    ``overhead``, when given, receives what the Flower deployment adds on top of the protocol: the wall seconds of
    each phase's send-and-receive (``exchange_seconds``) and each client's seconds spent restoring and saving its
    state in ``context.state`` (``state_seconds``).

    Fewer round trips: ``first_extra[cid]`` holds records that ride with client cid's *first* request (the
    application's input for the round, e.g. the global model the node trains on before answering the first phase),
    so the round needs no separate message exchange before it. ``inspect(phase, cid, reply)``, when given, sees every
    reply before the protocol does; a string it returns drops that client at that phase with that reason (e.g. an
    application report that fails validation). ``message_type`` lets one application run several protocol rounds
    side by side, each routed to its own ClientApp handler. ``after_first(alive)``, when given, sees the clients
    still in after the first phase; a string it returns aborts the round with that reason."""
    started = time.perf_counter()
    ids = tuple(sorted(nodes))
    report = RoundReport(protocol.name, round_id, ids)
    exchange_seconds: list[tuple[str, float]] = []
    state_seconds: dict[int, float] = {}
    side = ServerSide(protocol, round_id, ids, dim, report, drops, transcript, record_server_view, transcript_key)
    pending_extra = dict(first_extra or {})
    while True:
        phase, sending = side.deliverable()
        clock = time.perf_counter()
        extra = {cid: pending_extra.pop(cid) for cid in sending if cid in pending_extra}
        replies = _exchange(grid, round_id, phase, sending, nodes, reply_timeout, straggler_grace, message_type,
                            extra)
        exchange_seconds.append((phase, time.perf_counter() - clock))
        for cid in sending:
            message = replies.get(cid)
            if message is None:
                side.drop(cid, phase, "no reply in time")
                continue
            if message.has_error():
                side.drop(cid, phase, f"client failed: {message.error.reason[:200]}")
                continue
            refused = inspect(phase, cid, message) if inspect is not None else None
            if refused is not None:
                side.drop(cid, phase, refused)
                continue
            try:
                reply = unpack_reply(message.content)
            except MessageError as exc:
                side.reject(cid, phase, str(exc))
                continue
            report.client_seconds[cid] += reply.client_seconds
            state_seconds[cid] = state_seconds.get(cid, 0.0) + reply.state_seconds
            if reply.status == STATUS_REFUSED:
                side.drop(cid, phase, f"client stopped: {reply.reason}")
                continue
            if reply.status == STATUS_NONE or reply.payload is None:
                continue
            side.accept(phase, cid, reply.payload)
        if after_first is not None and len(exchange_seconds) == 1 and side.broken is None:
            # the application's check of who is still in after the first phase (e.g. the FedAvg loop's re-check
            # of the clients that trained): a reason aborts the round before any later phase reveals anything
            side.broken = after_first(tuple(c for c in ids if c not in side.gone))
        if not side.advance():
            break
    report.total_seconds = time.perf_counter() - started
    if overhead is not None:
        overhead.update(exchange_seconds=exchange_seconds, state_seconds=state_seconds)
    return report

