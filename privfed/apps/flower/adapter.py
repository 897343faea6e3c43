"""privfed's protected aggregation inside an existing Flower app: a ClientApp mod and a server-side round.

An existing Flower Message-API app keeps its own ``@app.train()`` (it returns the trained ``ArrayRecord`` and a
``num-examples`` metric, as Flower's quickstarts do) and switches its aggregation to privfed by changing a few lines:

* client: ``app = ClientApp(mods=[privfed_mod(accept=("secagg",))])`` and ``app.query()(privfed_phases)`` (Flower
  routes a message only to a registered function, so the protocol phases need their handler). The mod lets the
  app train as usual, then
  keeps the update (trained minus received arrays, clipped to the declared range) and the weight in the node's
  ``context.state`` and replies with an acknowledgement only: the trained arrays never leave the node in the clear.
  Protocol phases (``query`` messages carrying privfed's envelope) are answered by privfed's client state machine.
* server: ``arrays, report = privfed_round(grid, arrays, node_ids, round_id, "secagg", {"max_weight": 1000})``
  sends the ``train`` messages, runs the protocol phase by phase (:func:`privfed.runtime.flower.driver.run_round_on_grid`)
  and returns ``arrays + mean update`` (FedAvg) with the round's report (bytes, survivors, dropouts).

Threat model: that of the chosen protocol (SecAgg hides each update from the server; see its module), with the
same transport caveats as :mod:`privfed.runtime.flower`. The node pins what it accepts (``accept``): a server asking
for anything else is refused, so it cannot downgrade the node to plaintext. ``max_weight`` (public bound on
``num-examples``; larger weights are capped) and ``clip`` (update range) are public protocol options.
"""

from __future__ import annotations

import json
import time
from typing import Any, Iterable, Mapping

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid

from protocols.base import LEARNED_BY_SERVER, ClientUpdate
from protocols.errors import ConfigError, MessageError, PrivfedError
from privfed.runtime.flower.driver import collect, run_round_on_grid
from privfed.runtime.flower.envelope import STATUS_NONE, STATUS_REFUSED, STATUS_REPLY, pack_reply, unpack_request
from privfed.runtime.flower.state import load_node_state, save_node_state
from privfed.runtime.local import INTERNAL_ERROR, RoundReport

__all__ = ["privfed_mod", "privfed_phases", "privfed_round", "flatten_arrays", "unflatten_arrays"]

_ADAPTER, _ACK = "privfed-adapter", "privfed-adapter-ack"
_DEFAULTS = {"max_weight": 10000.0, "clip": 1.0}


def flatten_arrays(record: ArrayRecord) -> np.ndarray:
    """All arrays of a record as one float64 vector (record order)."""
    return np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in record.to_numpy_ndarrays()]) \
        if len(record) else np.zeros(0)


def unflatten_arrays(vector: np.ndarray, like: ArrayRecord) -> ArrayRecord:
    """A record shaped like ``like`` (same keys, shapes and dtypes) holding ``vector``."""
    arrays, offset = [], 0
    for array in like.to_numpy_ndarrays():
        arrays.append(vector[offset:offset + array.size].reshape(array.shape).astype(array.dtype))
        offset += array.size
    out = ArrayRecord()
    for key, array in zip(like.keys(), arrays):
        out[key] = ArrayRecord([array])["0"]
    return out


def _protocol(protection: str, options: Mapping[str, Any]) -> Any:
    from protocols import registry

    return registry.create(protection, {**_DEFAULTS, **dict(options)})


def privfed_mod(accept: Iterable[str] = ("secagg",)) -> Any:
    """The ClientApp mod (see the module docstring); ``accept`` pins the protections this node agrees to."""
    accepted = frozenset(accept)

    def mod(message: Message, context: Context, call_next: Any) -> Message:
        kind = message.metadata.message_type
        if kind.startswith("train") and _ADAPTER in message.content.config_records:
            return _train(message, context, call_next, accepted)
        if kind.startswith("query") and "privfed" in message.content.config_records:
            return _phase(message, context)
        return call_next(message, context)

    return mod


def _refuse(message: Message, reason: str) -> Message:
    return Message(RecordDict({_ACK: ConfigRecord({"ok": False, "reason": reason[:300]})}), reply_to=message)


def _train(message: Message, context: Context, call_next: Any, accepted: frozenset[str]) -> Message:
    node = load_node_state(context.state)
    node.update = node.protocol_options = None
    try:
        setup = message.content.config_records[_ADAPTER]
        protection, options = str(setup["protection"]), json.loads(str(setup["options"]))
        if protection not in accepted:
            raise ConfigError(f"this node accepts only {sorted(accepted)}, the server asks for {protection!r}")
        protocol = _protocol(protection, options)
        (received,) = message.content.array_records.values()
        before = flatten_arrays(received)
        reply = call_next(message, context)  # the app's own training
        if reply.has_error():
            raise MessageError(f"the app's training failed: {reply.error.reason[:200]}")
        (trained,) = reply.content.array_records.values()
        after = flatten_arrays(trained)
        if after.shape != before.shape or not np.isfinite(after).all():
            raise MessageError("the app returned arrays of another shape, or non-finite values")
        (metrics,) = reply.content.metric_records.values()
        weight = min(float(metrics["num-examples"]), float(protocol.max_weight))
        update = np.clip(after - before, -protocol.clip, protocol.clip).astype(np.float32)
        node.update = (update.tobytes(), weight)
        node.protocol_options = {"protection": protection, **options}
        save_node_state(context.state, node)
    except PrivfedError as exc:
        return _refuse(message, str(exc))
    except Exception as exc:  # noqa: BLE001 - last resort: the node sits the round out, it does not crash
        return _refuse(message, f"{INTERNAL_ERROR}: training ({type(exc).__name__})")
    return Message(RecordDict({_ACK: ConfigRecord({"ok": True})}), reply_to=message)


def privfed_phases(message: Message, context: Context) -> Message:
    """The ClientApp handler of privfed's protocol phases (register it with ``app.query()(privfed_phases)``)."""
    return _phase(message, context)


def _phase(message: Message, context: Context) -> Message:
    node = load_node_state(context.state)
    clock = time.perf_counter()
    try:
        request = unpack_request(message.content)
        if node.update is None or node.protocol_options is None:
            raise MessageError("no local update: the server asked for a protocol phase before training")
        options = dict(node.protocol_options)
        protection = options.pop("protection")
        if node.round_id != request.round_id:
            node.round_id, node.client_id, node.machine = request.round_id, request.client_id, None
        if request.client_id != node.client_id:
            raise MessageError(f"request addressed to client {request.client_id}, this node is {node.client_id}")
        if node.machine is None:
            vector, weight = node.update
            node.machine = _protocol(protection, options).client(
                request.client_id, request.round_id, ClientUpdate(np.frombuffer(vector, dtype=np.float32).copy(),
                                                                  weight), node.persistent.setdefault(protection, {}))
        reply = node.machine.handle(request.payload)
        save_node_state(context.state, node)
    except Exception as exc:  # noqa: BLE001 - a PrivfedError is a refusal; anything else is contained
        reason = str(exc) if isinstance(exc, PrivfedError) else f"{INTERNAL_ERROR}: client machine ({type(exc).__name__})"
        node.machine = None
        save_node_state(context.state, node)
        return Message(pack_reply(STATUS_REFUSED, None, reason=reason, client_seconds=time.perf_counter() - clock),
                       reply_to=message)
    return Message(pack_reply(STATUS_NONE if reply is None else STATUS_REPLY, reply,
                              client_seconds=time.perf_counter() - clock), reply_to=message)


def privfed_round(grid: Grid, arrays: ArrayRecord, node_ids: Iterable[int], round_id: int,
                  protection: str = "secagg", options: Mapping[str, Any] | None = None,
                  config: ConfigRecord | None = None, timeout: float = 120.0) -> tuple[ArrayRecord, RoundReport | None]:
    """One FedAvg round whose aggregation is privfed's ``protection``: returns the new arrays (unchanged when the
    round aborted) and the round's report (None when no node trained)."""
    options = dict(options or {})
    protocol = _protocol(protection, options)  # validates the options before any message
    nodes = {cid: node for cid, node in enumerate(sorted(node_ids))}
    setup = ConfigRecord({"protection": protection, "options": json.dumps(options), "round": round_id})
    content = {"arrays": arrays, _ADAPTER: setup, **({"config": config} if config is not None else {})}
    messages = [Message(RecordDict(dict(content)), dst_node_id=node, message_type="train",
                        group_id=f"{round_id}:train") for node in nodes.values()]
    by_node = {node: cid for cid, node in nodes.items()}
    trained = {}
    for reply in collect(grid, messages, timeout):
        ack = reply.content.config_records.get(_ACK) if not reply.has_error() else None
        if ack is not None and ack.get("ok") is True and reply.metadata.src_node_id in by_node:
            trained[by_node[reply.metadata.src_node_id]] = reply.metadata.src_node_id
    if not trained:
        return arrays, None
    vector = flatten_arrays(arrays)
    report = run_round_on_grid(grid, protocol, round_id, trained, vector.size, reply_timeout=timeout)
    if report.result is None or report.result.learned_by != LEARNED_BY_SERVER:
        return arrays, report
    return unflatten_arrays(vector + np.asarray(report.result.mean, dtype=np.float64), arrays), report
