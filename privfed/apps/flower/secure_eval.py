"""The two halves of a round's federated evaluation over Flower (the rule and the encoding are
:mod:`privfed.apps.flower.evaluation`).

Server: :func:`evaluate_round` sends the global model to every node and gets the round's metrics back, in the clear
(one ``evaluate`` exchange) when the round's protection shows per-client figures, else through the secure sum of
:func:`~privfed.apps.flower.evaluation.evaluation_protection` driven by
:func:`~privfed.runtime.flower.driver.run_round_on_grid` with ``query.evaluate`` messages, the model riding with
the first phase's request. Node: :func:`node_evaluation_phase` answers one such message: on the first phase it
evaluates the received model on its own validation split and builds the secure sum's client machine from the sums,
then it hands each phase's payload to that machine. The machine lives in the node's ``context.state`` in its own
slot (``NodeState.evaluation``), apart from the training round's machine.

Threat model: as :mod:`privfed.apps.flower.evaluation`. The node decides the carrier itself from the run's public
plan (never from the server's message), so a server cannot move a protected round's evaluation to the clear path:
a node asked for clear sums under a protection that hides them refuses.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Mapping

import numpy as np
from flwr.app import Context, Message

from protocols.errors import ConfigError, MessageError, PrivfedError
from privfed.runtime.flower.driver import collect, run_round_on_grid
from privfed.runtime.flower.envelope import STATUS_NONE, STATUS_REFUSED, STATUS_REPLY, pack_reply, unpack_request
from privfed.runtime.flower.state import load_node_state, save_node_state

from .config import FlowerRunConfig, build_protocol
from .identity import hold_identity
from .evaluation import (EVAL_KEYS, EVAL_PHASE_TYPE, decode_totals, encode_sums, evaluation_options,
                         evaluation_protection, metrics_from_totals)

__all__ = ["evaluate_round", "clear_evaluation", "node_evaluation_phase", "evaluation_protocol", "plan_protection",
           "check_clear_evaluation"]


def plan_protection(run: FlowerRunConfig, round_id: int) -> str:
    """The protection whose rule governs evaluation after ``round_id`` (round 0, the initial model: round 1's)."""
    return run.protection_for(max(1, round_id))


#: what an active round hands its evaluation secure sum: the mode, the identities and the counts its checks rest on
_ACTIVE_KEYS = ("active", "roster", "roster_size", "colluders", "corruption_fraction", "threshold")


def evaluation_protocol(run: FlowerRunConfig, carrier: str, key_dir: str, secret: bool, round_id: int = 1,
                        node_config: Mapping[str, Any] | None = None) -> Any:
    """The secure sum's protocol instance (the run's option table for ``carrier``, the evaluation's bounds). When the
    round's protection runs in active mode (a malicious server), so does its evaluation: a node's sums are as much
    its own as its update, and a semi-honest secure sum would hand them to a server that forges keys. The node's
    roster and key come from its own node config, as for the round itself (:mod:`privfed.apps.flower.identity`)."""
    from .config import protocol_options
    from .identity import is_active

    base: dict[str, Any] = {}
    protection = plan_protection(run, round_id)
    round_base: Mapping[str, Any] | None = None
    if run.update_source == "train":
        from .training import protocol_base_options

        base = dict(protocol_base_options(run, carrier))
        round_base = protocol_base_options(run, protection)
    round_options = protocol_options(run, protection, round_base)
    active = is_active(round_options)
    if active:
        base.update({k: round_options[k] for k in _ACTIVE_KEYS if k in round_options})
    protocol = build_protocol(run, carrier, key_dir=key_dir, secret=secret, base=evaluation_options(base, carrier),
                              node_config=node_config)
    if active and getattr(protocol, "active", False) is not True:
        raise ConfigError(f"round {round_id} runs {protection!r} in active mode but the run's {carrier!r} options "
                          "turn active mode off for its evaluation secure sum")
    return protocol


def clear_evaluation(grid: Any, vector: np.ndarray, round_id: int, nodes: Mapping[int, int],
                     timeout: float) -> dict[str, Any]:
    """Send the model to every node and add up the evaluation sums that come back (the clear path)."""
    from .training import EVAL_MESSAGE_TYPE, model_message

    totals = dict.fromkeys(EVAL_KEYS, 0.0)
    answered = 0
    messages = [model_message(vector, round_id, n, EVAL_MESSAGE_TYPE) for n in nodes.values()]
    for reply in collect(grid, messages, timeout):
        if reply.has_error():
            continue
        record = reply.content.metric_records.get("privfed-eval")
        if record is None or not all(isinstance(record.get(k), (int, float)) for k in EVAL_KEYS):
            continue
        values = {k: float(record[k]) for k in EVAL_KEYS}
        if not all(math.isfinite(v) and v >= 0 for k, v in values.items() if k != "loss_sum"):
            continue
        answered += 1
        for key in EVAL_KEYS:
            totals[key] += values[key]
    return metrics_from_totals(totals, answered)


def evaluate_round(grid: Any, run: FlowerRunConfig, vector: np.ndarray, round_id: int,
                   nodes: Mapping[int, int]) -> dict[str, Any]:
    """The round's metrics from the nodes' own validation splits, through the protection's secure sum when it
    hides per-client figures (see :mod:`privfed.apps.flower.evaluation`)."""
    from .training import model_records

    carrier = evaluation_protection(plan_protection(run, round_id))
    if carrier is None:
        return clear_evaluation(grid, vector, round_id, nodes, run.reply_timeout)
    protocol = evaluation_protocol(run, carrier, run.key_dir, secret=False, round_id=round_id)
    first = {cid: model_records(vector, round_id) for cid in nodes}
    overhead: dict[str, Any] = {}
    report = run_round_on_grid(grid, protocol, round_id, nodes, len(EVAL_KEYS), reply_timeout=run.reply_timeout,
                               straggler_grace=run.straggler_grace, transcript=False, overhead=overhead,
                               message_type=EVAL_PHASE_TYPE, first_extra=first)
    upload = sum(report.upload_total(c) for c in report.participants)
    if report.result is None:
        return {"loss": math.nan, "samples": 0, "evaluated_by": 0, "evaluation_carrier": carrier,
                "evaluation_aborted": str(report.aborted or "no result")[:300], "evaluation_upload_bytes": upload}
    totals, bounds = decode_totals(report.result)
    metrics = metrics_from_totals(totals, len(report.result.survivors))
    metrics.update(evaluation_carrier=carrier, evaluation_error_bounds=bounds, evaluation_upload_bytes=upload,
                   evaluation_phases=len(report.phases))
    return metrics


def check_clear_evaluation(content: Any, config: FlowerRunConfig) -> None:
    """Node side of the clear path: refuse (MessageError) to send sums in the clear for a round whose protection
    hides per-client figures — a server asking for them deviates from the run's public plan."""
    try:
        round_id = int(content.config_records["privfed-train"]["round"])
    except (KeyError, TypeError, ValueError):
        raise MessageError("malformed evaluate message") from None
    carrier = evaluation_protection(plan_protection(config, round_id))
    if carrier is not None:
        raise MessageError(f"round {round_id}'s protection hides per-client figures: this node sends its evaluation "
                           f"sums only inside the {carrier} secure sum, never in the clear")


def _reply(message: Message, status: str, payload: bytes | None, reason: str = "", seconds: float = 0.0) -> Message:
    return Message(pack_reply(status, payload, reason=reason, client_seconds=seconds), reply_to=message)


def node_evaluation_phase(message: Message, context: Context, config: FlowerRunConfig,
                          accepted: Callable[[Context, tuple[str, ...]], tuple[bool, str]]) -> Message:
    """One phase of the evaluation secure sum on this node (see the module docstring)."""
    from .training import node_data, node_evaluate, task_for

    node = load_node_state(context.state)
    session: dict[str, Any] = dict(node.evaluation or {})
    clock = time.perf_counter()
    try:
        request = unpack_request(message.content)
        protection = plan_protection(config, request.round_id)
        ok, reason = accepted(context, (protection,))
        if not ok:
            raise MessageError(reason)
        carrier = evaluation_protection(protection)
        if carrier is None:
            raise MessageError(f"{protection!r} evaluates in the clear; no secure sum to run")
        if "privfed-model" in message.content.array_records:  # the first phase: evaluate, then build the machine
            if session.get("round") is not None and request.round_id <= session["round"]:
                raise MessageError(f"evaluation of round {request.round_id} after round {session['round']}")
            task = task_for(config)
            sums = node_evaluate(message.content, node_data(task, context), task)
            if int(message.content.config_records["privfed-train"]["round"]) != request.round_id:
                raise MessageError("evaluation model and request name different rounds")
            protocol = evaluation_protocol(config, carrier, str(context.node_config.get("key-dir", "")), secret=True,
                                           round_id=request.round_id, node_config=context.node_config)
            state = node.persistent.setdefault(f"evaluate:{carrier}", {})
            hold_identity(context.node_config, protocol, request.client_id, state)  # active: this node's own key
            session = {"round": request.round_id, "client": request.client_id,
                       "machine": protocol.client(request.client_id, request.round_id, encode_sums(sums), state)}
        elif session.get("round") != request.round_id or session.get("machine") is None:
            raise MessageError("evaluation phase without this round's model")
        if request.client_id != session["client"]:
            raise MessageError(f"request addressed to client {request.client_id}, this node is {session['client']}")
        reply = session["machine"].handle(request.payload)
    except Exception as exc:  # noqa: BLE001 - as the training phase handler: a refusal, contained
        from privfed.runtime.local import INTERNAL_ERROR

        reason = str(exc) if isinstance(exc, PrivfedError) else f"{INTERNAL_ERROR}: evaluation ({type(exc).__name__})"
        node.evaluation = {"round": session.get("round"), "client": session.get("client"), "machine": None}
        save_node_state(context.state, node)
        return _reply(message, STATUS_REFUSED, None, reason, time.perf_counter() - clock)
    node.evaluation = session
    save_node_state(context.state, node)
    status = STATUS_NONE if reply is None else STATUS_REPLY
    return _reply(message, status, reply, seconds=time.perf_counter() - clock)
