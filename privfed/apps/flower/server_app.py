"""The privfed ServerApp: runs privfed rounds over Flower's deployment engine (SuperLink + SuperNodes).

``main`` reads the run configuration (:mod:`privfed.apps.flower.config`), waits for ``clients`` nodes, asks
each for its partition id (``query.hello``: the protocol client id becomes the partition id, so survivors can be
compared with the in-process runtime), then runs ``rounds`` rounds with
:func:`~privfed.runtime.flower.driver.run_round_on_grid`, one send-and-receive per protocol phase. With
``update-source = "train"`` each round starts with a ``train`` message carrying the global model, and the
protected mean update is added to it afterwards (FedAvg). With ``report`` set, it writes a JSON report of every
round: the same summary the local runtime gives (bytes, seconds, survivors, dropouts), per-client and per-phase
byte tables, the transport overhead, and the aggregate itself.

Threat model: see :mod:`privfed.runtime.flower.driver` (the SuperLink sees what the server sees) and
:mod:`privfed.apps.flower.client_app` (nodes pin the protections they accept). The report holds only what the
server learned anyway (the aggregate, when the protocol delivers it to the server) and public figures; per-client
figures that a round's protection hides (the nodes' training seconds) are left out by
:func:`privfed.threat.disclosure.redact_round`, the rule every run record follows.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp

from protocols.base import AggregationProtocol
from protocols.errors import PrivfedError, ProtocolAbort

from .client_app import HELLO_MESSAGE_TYPE
from .config import FlowerRunConfig, build_protocol, parse_run_config, protocol_options
from privfed.runtime.flower.driver import collect, run_round_on_grid
from privfed.runtime.flower.objects import quicken_object_pulls

from .report import report_record

__all__ = ["app", "wait_for_nodes", "enrol"]

log = logging.getLogger("flwr.privfed.server")  # under Flower's logger: shown by `flwr run --stream`

app = ServerApp()


def wait_for_nodes(grid: Grid, config: FlowerRunConfig) -> list[int]:
    """Node ids once at least ``config.clients`` are connected (bounded by ``connect_timeout``)."""
    deadline = time.monotonic() + config.connect_timeout
    while True:
        node_ids = sorted(grid.get_node_ids())
        if len(node_ids) >= config.clients:
            return node_ids
        if time.monotonic() > deadline:
            raise ProtocolAbort(f"{len(node_ids)} nodes connected within {config.connect_timeout:g} s, "
                                f"{config.clients} needed")
        time.sleep(0.5)


def enrol(grid: Grid, node_ids: list[int], config: FlowerRunConfig) -> dict[int, int]:
    """Ask every node for its partition id; returns protocol client id -> node id for the nodes that accept.

    Client ids are the announced partition ids when they are distinct and non-negative, else the nodes' ranks."""
    messages = [Message(RecordDict({"privfed-hello": ConfigRecord({"plan": config.protection})}),
                        dst_node_id=node, message_type=HELLO_MESSAGE_TYPE) for node in node_ids]
    announced: dict[int, int] = {}
    for reply in collect(grid, messages, config.reply_timeout):
        if reply.has_error():
            log.warning("node %s failed to enrol: %s", reply.metadata.src_node_id, reply.error.reason)
            continue
        record = reply.content.config_records.get("privfed-hello")
        if record is None or not record.get("accepts", False):
            log.warning("node %s declined: %s", reply.metadata.src_node_id,
                        record.get("reason", "") if record is not None else "malformed hello")
            continue
        partition = record.get("partition-id", -1)
        announced[reply.metadata.src_node_id] = partition if isinstance(partition, int) else -1
    values = list(announced.values())
    if all(v >= 0 for v in values) and len(set(values)) == len(values):
        return {partition: node for node, partition in sorted(announced.items(), key=lambda item: item[1])}
    return {rank: node for rank, node in enumerate(sorted(announced))}


def _write_json(path: str, data: Mapping[str, Any]) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=target.name, suffix=".tmp")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        json.dump(data, out)
    os.replace(temporary, target)


@app.main()
def main(grid: Grid, context: Context) -> None:
    # replies whose objects are still in flight are asked for again within 0.01-0.05 s, not after Flower's 1-10 s
    quicken_object_pulls("flwr.superlink.grid.http_grid", "flwr.supercore.inflatable.inflatable_utils")
    config = parse_run_config(context.run_config)
    output: dict[str, Any] = {"protection": config.protection, "runtime": "flower", "rounds": []}
    recorder = None
    try:
        protocols: dict[str, AggregationProtocol] = {}
        for name in dict.fromkeys(config.plan):  # validate every protection of the plan before any round
            base = None
            if config.update_source == "train":
                from .training import protocol_base_options
                base = protocol_base_options(config, name)
            from .target import refuse_key_holders
            # refused before any round, not after the first: threshold decryption always, key-holder release when
            # training (the synthetic bench only sums)
            refuse_key_holders(name, {"decryption": protocol_options(config, name, base).get("decryption")})
            protocols[name] = build_protocol(config, name, key_dir=config.key_dir, secret=False, base=base)
            if config.update_source == "train":
                refuse_key_holders(name, {"release": getattr(protocols[name], "release", "server")})
        output["protocols"] = {name: {k: v for k, v in protocol.describe().items()
                                      if isinstance(v, (str, int, float, bool, type(None)))}
                               for name, protocol in protocols.items()}

        def protocol_for(round_id: int) -> AggregationProtocol:
            return protocols[config.protection_for(round_id)]

        if config.run_dir:
            from .rundir import FlowerRunRecorder
            from .training import task_for
            recorder = FlowerRunRecorder(config.run_dir, task_for(config),
                                         [config.protection_for(r) for r in range(1, config.rounds + 1)],
                                         config.plan_reasons.split("|") if config.plan_reasons else [],
                                         resume=config.resume, calibrated=config.calibrated)
        nodes = enrol(grid, wait_for_nodes(grid, config), config)
        if len(nodes) < config.clients:
            raise ProtocolAbort(f"{len(nodes)} nodes enrolled, {config.clients} needed")
        nodes = dict(sorted(nodes.items())[:config.clients])  # the run's clients: the lowest client ids
        output["nodes"] = {str(cid): node for cid, node in nodes.items()}
        if config.update_source == "train":
            from privfed.fl.models import flatten

            from .secure_eval import evaluate_round
            from .training import run_training, server_evaluation, task_for
            if recorder is not None and recorder.first_round == 1:  # through round 1's protection when it hides
                start = flatten(task_for(config).template)
                initial = evaluate_round(grid, config, start, 0, nodes)
                if config.server_eval:  # the server's own public test file, when it has one
                    initial = {**initial, "server_metrics": server_evaluation(config, start)}
                recorder.initial(nodes, initial)
            output["rounds"] = run_training(grid, protocol_for, nodes, config,
                                            sink=recorder.round if recorder is not None else None,
                                            transcript_key=recorder.key if recorder is not None else None,
                                            first_round=recorder.first_round if recorder is not None else 1,
                                            start=recorder.vector if recorder is not None else None)
        else:
            for round_id in range(1, config.rounds + 1):
                overhead: dict[str, Any] = {}
                report = run_round_on_grid(grid, protocol_for(round_id), round_id, nodes, config.params,
                                           drops=config.drops_for(round_id), reply_timeout=config.reply_timeout,
                                           straggler_grace=config.straggler_grace, overhead=overhead)
                log.info("privfed round %d: %s", round_id, json.dumps(report.summary()))
                output["rounds"].append(report_record(report, overhead, nodes))
    except (PrivfedError, ProtocolAbort) as exc:
        output["error"] = f"{type(exc).__name__}: {exc}"
        log.error("privfed run failed: %s", exc)
    finally:
        if recorder is not None:
            recorder.finish(output.get("error"))
        if config.report:  # the report is shareable: per-client figures a round's protection hides stay out
            from privfed.threat.disclosure import redact_round  # the app layer (DESIGN: privfed/apps)
            output["rounds"] = [redact_round(record) for record in output["rounds"]]
            _write_json(config.report, output)
    if "error" in output:
        raise RuntimeError(output["error"])
