"""How a privfed protocol message rides inside a Flower ``Message``: bytes in a record, plus a small envelope.

A request carries ``privfed`` (a ConfigRecord: envelope version, round id, phase name, the recipient's protocol
client id) and ``payload`` (an ArrayRecord holding one raw ``uint8`` Array whose ``data`` is exactly the bytes the
protocol produced; ArrayRecords are chunked by Flower, so large HE ciphertexts travel like model weights).
A reply carries ``privfed`` (status ``reply`` | ``none`` | ``refused`` and, when refused, the client's reason),
``payload`` when the status is ``reply``, and ``metrics`` (a MetricRecord with the client's own compute seconds).

Threat model: the envelope is transport metadata in the clear (round, phase, client id, status, seconds); all
protection is inside the payload bytes, which the runtime never inspects beyond their length. A malformed envelope
is a bad reply: :func:`unpack_reply` raises :class:`~protocols.errors.MessageError` and the server rejects it.
"""

from __future__ import annotations

from dataclasses import dataclass

from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from protocols.errors import MessageError

__all__ = ["Request", "Reply", "pack_request", "unpack_request", "pack_reply", "unpack_reply",
           "STATUS_REPLY", "STATUS_NONE", "STATUS_REFUSED", "ENVELOPE_VERSION"]

ENVELOPE_VERSION = 1
STATUS_REPLY, STATUS_NONE, STATUS_REFUSED = "reply", "none", "refused"
_ENVELOPE, _PAYLOAD, _METRICS, _BYTES = "privfed", "payload", "metrics", "bytes"
_STYPE = "privfed.raw"


@dataclass(frozen=True)
class Request:
    round_id: int
    phase: str
    client_id: int
    payload: bytes


@dataclass(frozen=True)
class Reply:
    status: str
    payload: bytes | None
    reason: str
    client_seconds: float
    state_seconds: float


def _bytes_record(payload: bytes) -> ArrayRecord:
    return ArrayRecord({_BYTES: Array(dtype="uint8", shape=(len(payload),), stype=_STYPE, data=bytes(payload))})


def _payload(content: RecordDict) -> bytes:
    try:
        array = content.array_records[_PAYLOAD][_BYTES]
    except KeyError:
        raise MessageError("envelope has no payload") from None
    if array.stype != _STYPE or array.dtype != "uint8" or list(array.shape) != [len(array.data)]:
        raise MessageError("payload is not a raw byte array")
    return bytes(array.data)


def _envelope(content: RecordDict) -> ConfigRecord:
    try:
        envelope = content.config_records[_ENVELOPE]
    except KeyError:
        raise MessageError("message has no privfed envelope") from None
    if envelope.get("v") != ENVELOPE_VERSION:
        raise MessageError(f"unsupported envelope version {envelope.get('v')!r}")
    return envelope


def pack_request(request: Request) -> RecordDict:
    return RecordDict({
        _ENVELOPE: ConfigRecord({"v": ENVELOPE_VERSION, "round": request.round_id, "phase": request.phase,
                                 "client": request.client_id}),
        _PAYLOAD: _bytes_record(request.payload),
    })


def unpack_request(content: RecordDict) -> Request:
    envelope = _envelope(content)
    round_id, phase, client_id = envelope.get("round"), envelope.get("phase"), envelope.get("client")
    if not (isinstance(round_id, int) and isinstance(phase, str) and isinstance(client_id, int)):
        raise MessageError("malformed request envelope")
    return Request(round_id, phase, client_id, _payload(content))


def pack_reply(status: str, payload: bytes | None, *, reason: str = "", client_seconds: float = 0.0,
               state_seconds: float = 0.0) -> RecordDict:
    records: dict = {
        _ENVELOPE: ConfigRecord({"v": ENVELOPE_VERSION, "status": status, "reason": reason}),
        _METRICS: MetricRecord({"client-seconds": float(client_seconds), "state-seconds": float(state_seconds)}),
    }
    if status == STATUS_REPLY:
        records[_PAYLOAD] = _bytes_record(payload or b"")
    return RecordDict(records)


def unpack_reply(content: RecordDict) -> Reply:
    envelope = _envelope(content)
    status, reason = envelope.get("status"), envelope.get("reason", "")
    if status not in (STATUS_REPLY, STATUS_NONE, STATUS_REFUSED) or not isinstance(reason, str):
        raise MessageError("malformed reply envelope")
    metrics = content.metric_records.get(_METRICS)
    seconds = [metrics.get(key, 0.0) if metrics is not None else 0.0 for key in ("client-seconds", "state-seconds")]
    if not all(isinstance(s, (int, float)) and 0.0 <= s < float("inf") for s in seconds):
        raise MessageError("malformed reply metrics")
    payload = _payload(content) if status == STATUS_REPLY else None
    return Reply(status, payload, reason[:500], float(seconds[0]), float(seconds[1]))
