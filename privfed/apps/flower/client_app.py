"""The privfed ClientApp: a Flower node answering with the protocol's client state machine.

Message types it serves:

* ``query.hello`` — announce this node's partition id (node-config ``partition-id``) so the server can give it the
  same protocol client id as the in-process runtime would; the reply also says whether the node accepts the run's
  protection. Nothing about the node's data leaves it.
* ``train`` — receive the global model (flat float32, an ArrayRecord), train the LSTM/GRU locally on this node's
  own data (node-config ``data-path`` cut with the run's public schema; privfed.fl), and keep the resulting update
  and weight in ``context.state``; only an acknowledgement with the training seconds goes back, or a refusal with the
  reason. privfed's ServerApp no longer sends it (training is folded into the first ``query``, below); kept for
  servers that do.
* ``evaluate`` — receive a global model and return counts and sums on this node's own validation split, in the
  clear: only when the round's protection shows per-client figures anyway; refused otherwise.
* ``query.evaluate`` — one phase of the evaluation secure sum (:mod:`privfed.apps.flower.secure_eval`): the first
  phase carries the model, the node evaluates it and its sums leave it only inside the secure sum.
* ``query`` — one protocol phase: the request's payload bytes go to the client machine's ``handle`` and its reply
  bytes come back (see :mod:`privfed.runtime.flower.envelope`); a round's first request also carries the global
  model, and the node trains on its own data before it answers (the update leaves the node only inside the
  protocol's upload). The machine and the protocol's persistent state are restored from and saved to
  ``context.state`` around every message (:mod:`privfed.runtime.flower.state`).

Threat model: the node trusts itself only. The protection is chosen by the run's submitter, so a node operator
pins what the node accepts with node-config ``protections="ckks,secagg"``; a run asking for anything else is
refused (the node then counts as dropped) rather than letting a server downgrade a client to plaintext. Without
that key the node accepts the run's protection and logs a warning. Client ids, rounds and phases in the envelope
are checked against the machine's own state; payloads are validated strictly by the protocol.
Fault injection (killing this node's SuperNode on request, for the dropout integration test) is honoured only when
the node operator set node-config ``allow-fault-injection=true``.
"""

from __future__ import annotations

import logging
import os
import signal
import time

import numpy as np
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from protocols.base import AFTER_UPLOAD, ClientUpdate
from protocols.errors import MessageError, PrivfedError
from privfed.runtime.local import INTERNAL_ERROR

from .config import FlowerRunConfig, build_protocol, parse_run_config
from .identity import announced_id, hold_identity
from privfed.runtime.flower.envelope import STATUS_NONE, STATUS_REFUSED, STATUS_REPLY, pack_reply, unpack_request
from privfed.runtime.flower.state import NodeState, load_node_state, save_node_state
from .updates import evaluate_update, synthetic_update, train_update

__all__ = ["app", "HELLO_MESSAGE_TYPE"]

HELLO_MESSAGE_TYPE = "query.hello"
log = logging.getLogger("flwr.privfed.client")

app = ClientApp()


def _partition_id(context: Context) -> int:
    value = context.node_config.get("partition-id", -1)
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else -1


def _accepted(context: Context, protections: tuple[str, ...]) -> tuple[bool, str]:
    pinned = context.node_config.get("protections")
    if pinned is None:
        log.warning("node-config sets no 'protections': accepting the run's %s", ", ".join(protections))
        return True, ""
    allowed = {p.strip() for p in str(pinned).split(",") if p.strip()}
    refused = [p for p in protections if p not in allowed]
    if refused:
        return False, f"this node accepts only {sorted(allowed)}, the run asks for {', '.join(refused)}"
    return True, ""


@app.query("hello")
def hello(message: Message, context: Context) -> Message:
    config = parse_run_config(context.run_config)
    accepted, reason = _accepted(context, config.plan)
    node = load_node_state(context.state)
    node.announced = announced_id(context.node_config, _partition_id(context))
    save_node_state(context.state, node)
    return Message(RecordDict({"privfed-hello": ConfigRecord(
        {"partition-id": node.announced, "accepts": accepted, "reason": reason})}), reply_to=message)


def _refusal(message: Message, reason: str) -> Message:
    return Message(RecordDict({"privfed-refused": ConfigRecord({"reason": reason[:500]})}), reply_to=message)


@app.train()
def train(message: Message, context: Context) -> Message:
    started = time.perf_counter()
    try:
        config = parse_run_config(context.run_config)
        node = load_node_state(context.state)
        node.update, node.protocol_options = None, None
        client_id = _partition_id(context)
        update, info, options, dp_report = train_update(message.content, context, config,
                                                        client_id if client_id >= 0 else context.node_id % 2**31)
        node.update = (update.vector.tobytes(), float(update.weight))
        node.protocol_options = options
        save_node_state(context.state, node)
    except PrivfedError as exc:  # e.g. data that does not fit the schema: this node sits the round out
        log.warning("refusing the round: %s", exc)
        return _refusal(message, str(exc))
    except Exception as exc:  # noqa: BLE001 - last resort, as privfed.runtime.local.run_round contains it
        log.error("contained %s in local training", type(exc).__name__)
        return _refusal(message, f"{INTERNAL_ERROR}: local training ({type(exc).__name__})")
    # the node's own training metrics stay in its log: a loss or a step count would hint at its data and sample count
    # (the weight the protocol protects); the acknowledgement carries only the time the server could observe anyway
    log.info("local training: %s", {k: round(v, 6) for k, v in info.items()})
    metrics = {"train-seconds": time.perf_counter() - started}
    content = RecordDict({"metrics": MetricRecord(metrics)})
    if dp_report is not None:  # DP-SGD's public parameters, for the server's privacy ledger
        content["privfed-dpsgd"] = ConfigRecord(dict(dp_report))
    return Message(content, reply_to=message)


@app.evaluate()
def evaluate(message: Message, context: Context) -> Message:
    """Evaluation counts and sums of the received model on this node's own validation split, in the clear: only for
    rounds whose protection shows per-client figures anyway (privfed.apps.flower.evaluation), refused otherwise."""
    try:
        from .secure_eval import check_clear_evaluation

        config = parse_run_config(context.run_config)
        check_clear_evaluation(message.content, config)
        sums = evaluate_update(message.content, context, config)
    except PrivfedError as exc:
        return _refusal(message, str(exc))
    except Exception as exc:  # noqa: BLE001 - last resort
        return _refusal(message, f"{INTERNAL_ERROR}: evaluation ({type(exc).__name__})")
    return Message(RecordDict({"privfed-eval": MetricRecord(sums)}), reply_to=message)


def _update_for(node: NodeState, context: Context, config: FlowerRunConfig) -> ClientUpdate:
    if config.update_source == "train":
        if node.update is None:
            raise MessageError("no local update: the server asked for a protocol phase before training")
        vector, weight = node.update
        return ClientUpdate(np.frombuffer(vector, dtype=np.float32).copy(), weight)
    return synthetic_update(_partition_id(context), config)


def _stop_this_node() -> None:
    """Fault injection: kill this node's SuperNode (the ClientApp's ancestor) and exit without replying."""
    pid = os.getppid()
    for _ in range(8):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                cmdline = handle.read()
            with open(f"/proc/{pid}/stat", "rb") as handle:
                parent = int(handle.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
        if b"flower-supernode" in cmdline or b"privfed.runtime.flower.fastnode" in cmdline:
            os.kill(pid, signal.SIGKILL)
            break
        pid = parent
    os._exit(1)


@app.query()
def phase(message: Message, context: Context) -> Message:
    config = parse_run_config(context.run_config)
    clock = time.perf_counter()
    node = load_node_state(context.state)
    state_seconds = time.perf_counter() - clock
    client_seconds = 0.0
    try:
        request = unpack_request(message.content)
        protection = config.protection_for(request.round_id)
        accepted, reason = _accepted(context, (protection,))
        if not accepted:
            raise MessageError(reason)
        dp_report = _folded_training(message, context, config, node, request.round_id)
        if config.update_source == "train" and node.protocol_options is None:
            raise MessageError("no local update: the server asked for a protocol phase before training")
        protocol = build_protocol(config, protection, key_dir=str(context.node_config.get("key-dir", "")),
                                  secret=True, base=node.protocol_options if config.update_source == "train" else None,
                                  node_config=context.node_config)
        if (config.stop_after_upload >= 0 and config.stop_after_upload == _partition_id(context)
                and config.stop_round in (0, request.round_id)
                and context.node_config.get("allow-fault-injection") is True
                and request.phase == protocol.resolve_drop_phase(AFTER_UPLOAD)):
            log.warning("fault injection: stopping this node at phase %s", request.phase)
            _stop_this_node()
        if node.round_id != request.round_id:
            if node.round_id is not None and request.round_id < node.round_id:
                raise MessageError(f"request for round {request.round_id} after round {node.round_id}")
            node.round_id, node.client_id, node.machine = request.round_id, request.client_id, None
        if request.client_id != node.client_id:
            raise MessageError(f"request addressed to client {request.client_id}, this node is {node.client_id}")
        update = _update_for(node, context, config) if node.machine is None else None
        clock = time.perf_counter()
        try:
            if node.machine is None:
                state = node.persistent.setdefault(protection, {})  # per protection, as privfed.fl's loop keeps it
                hold_identity(context.node_config, protocol, request.client_id, state)  # active modes: own key
                node.machine = protocol.client(request.client_id, request.round_id, update, state)
            reply = node.machine.handle(request.payload)
        finally:
            client_seconds = time.perf_counter() - clock
    except Exception as exc:  # noqa: BLE001 - last resort, as privfed.runtime.local.run_round contains it
        # a PrivfedError is this client's refusal; anything else is a protocol bug, contained: the node drops out of
        # the round with a reason naming only the exception type (its text could quote secret state)
        reason = str(exc) if isinstance(exc, PrivfedError) else f"{INTERNAL_ERROR}: client machine ({type(exc).__name__})"
        if not isinstance(exc, PrivfedError):
            log.error("contained %s in the client machine", type(exc).__name__)
        node.machine = None
        clock = time.perf_counter()
        save_node_state(context.state, node)
        state_seconds += time.perf_counter() - clock
        return Message(pack_reply(STATUS_REFUSED, None, reason=reason, client_seconds=client_seconds,
                                  state_seconds=state_seconds), reply_to=message)
    clock = time.perf_counter()
    try:
        save_node_state(context.state, node)
    except PrivfedError as exc:
        return Message(pack_reply(STATUS_REFUSED, None, reason=str(exc), client_seconds=client_seconds,
                                  state_seconds=state_seconds), reply_to=message)
    state_seconds += time.perf_counter() - clock
    status = STATUS_NONE if reply is None else STATUS_REPLY
    content = pack_reply(status, reply, client_seconds=client_seconds, state_seconds=state_seconds)
    if dp_report is not None:  # DP-SGD's public parameters, for the server's privacy ledger (folded training)
        content["privfed-dpsgd"] = ConfigRecord(dict(dp_report))
    return Message(content, reply_to=message)


def _folded_training(message: Message, context: Context, config: FlowerRunConfig, node: NodeState,
                     round_id: int) -> dict[str, float] | None:
    """Local training folded into the round's first protocol phase: when the request carries the global model, train
    on this node's own data first (exactly as the ``train`` handler), keep the update in ``node``, and return the
    DP-SGD report for the reply (None otherwise). A training failure refuses the phase (MessageError/PrivfedError
    with the reason), which makes this node a dropout at the first phase."""
    if config.update_source != "train" or "privfed-model" not in message.content.array_records:
        return None
    if node.round_id is not None and round_id <= node.round_id:
        raise MessageError(f"a model for round {round_id} after round {node.round_id}: this node trains once a round")
    node.update, node.protocol_options = None, None
    client_id = _partition_id(context)
    try:
        update, info, options, dp_report = train_update(message.content, context, config,
                                                        client_id if client_id >= 0 else context.node_id % 2**31)
    except PrivfedError as exc:
        log.warning("refusing the round: %s", exc)
        raise MessageError(f"local training: {exc}") from None
    if int(message.content.config_records["privfed-train"]["round"]) != round_id:
        raise MessageError("the model and the protocol request name different rounds")
    log.info("local training: %s", {k: round(v, 6) for k, v in info.items()})
    node.update = (update.vector.tobytes(), float(update.weight))
    node.protocol_options = options
    return dp_report


@app.query("evaluate")
def evaluation_phase(message: Message, context: Context) -> Message:
    """One phase of the evaluation secure sum (privfed.apps.flower.secure_eval): used when the round's protection
    hides per-client figures, so this node's validation sums leave it only inside the secure sum."""
    from .secure_eval import node_evaluation_phase

    return node_evaluation_phase(message, context, parse_run_config(context.run_config), _accepted)

