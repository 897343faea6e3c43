"""FedAvg of an LSTM/GRU over Flower: ``train`` messages carry the global model, protocol rounds carry the updates.

Each round: the server sends the global parameters (flat float32, in the clear, as in any FedAvg) to every enrolled
node in a ``train`` message; each node rebuilds the model, trains it on its own partition with privfed.fl's trainer
(the protocol's ``client_training``: standard or DP-SGD), clips the update to ``protection.clip``, keeps it in
``context.state`` and answers with an acknowledgement (its training seconds). Then one protected
aggregation round runs over the nodes that trained (:func:`~privfed.runtime.flower.driver.run_round_on_grid`) and
the server applies ``global += server_lr * mean`` when the round completes.

Both sides build the experiment from the same privfed.fl configuration (embedded default <- run-config
``fl-overrides`` "key=value;key=value") and seed, so they agree on the model layout and on the protocol's
``max_weight``/``clip`` without any extra message. The server builds the dataset only for the model's shape and the
pooled evaluation split; a node trains on ``data.clients[partition-id]``.

Threat model: the global model is public to the nodes; the update leaves a node only inside the protocol's upload.
The acknowledgement carries only the training seconds (not the loss, step or sample count: the sample count is the
weight the protocol protects); the server evaluates the global model on the pooled evaluation split instead.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import time
from typing import Any, Callable, Mapping

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

from protocols.base import LEARNED_BY_SERVER, AggregationProtocol, ClientUpdate
from protocols.errors import ConfigError, MessageError

from .config import FlowerRunConfig
from privfed.runtime.flower.driver import collect, run_round_on_grid

__all__ = ["experiment", "protocol_base_options", "run_training", "client_train"]

log = logging.getLogger("flwr.privfed.training")
TRAIN_MESSAGE_TYPE = "train"
_MODEL, _VECTOR, _ROUND = "privfed-model", "vector", "privfed-train"


@functools.lru_cache(maxsize=4)
def experiment(overrides: str, seed: int) -> tuple[Any, Any, Any, Any, Any]:
    """(config, dataset, model spec, layout, template model) for privfed.fl overrides and seed."""
    from privfed.fl.config import load_config
    from privfed.fl.data import build_federated
    from privfed.fl.models import ParamLayout, build_model

    config = load_config(None, [o.strip() for o in overrides.split(";") if o.strip()], seed=seed)
    data = build_federated(config.data, config.seed)
    spec = data.model_spec(config.model)
    template = build_model(spec, config.seed)
    return config, data, spec, ParamLayout.of(template), template


def protocol_base_options(run: FlowerRunConfig, protection: str) -> dict[str, Any]:
    """The options privfed.fl's FedAvg loop would give ``protection`` (max_weight from the data, clip, table)."""
    config, data, *_ = experiment(run.fl_overrides, run.seed)
    return config.protection.for_protection(protection, float(data.max_weight))


def _vector_record(vector: np.ndarray) -> ArrayRecord:
    vector = np.ascontiguousarray(vector, dtype=np.float32)
    return ArrayRecord({_VECTOR: Array(dtype="float32", shape=(vector.size,), stype="privfed.raw",
                                       data=vector.tobytes())})


def client_train(content: RecordDict, partition_id: int, run: FlowerRunConfig, client_training: str,
                 extra: Mapping[str, Any] | None = None) -> tuple[ClientUpdate, dict[str, float]]:
    """Train the received global model on this node's partition; returns the clipped update and metrics."""
    from privfed.fl.models import load_flat
    from privfed.fl.train import select_trainer

    config, data, _, layout, template = experiment(run.fl_overrides, run.seed)
    try:
        array = content.array_records[_MODEL][_VECTOR]
        round_id = int(content.config_records[_ROUND]["round"])
    except (KeyError, TypeError, ValueError):
        raise MessageError("malformed train message") from None
    if array.dtype != "float32" or len(array.data) != 4 * layout.size:
        raise MessageError(f"global model of {len(array.data)} bytes, the layout needs {4 * layout.size}")
    if not 0 <= partition_id < len(data.clients):
        raise ConfigError(f"partition-id {partition_id} outside the {len(data.clients)} clients of the dataset")
    model = copy.deepcopy(template)
    load_flat(model, np.frombuffer(array.data, dtype=np.float32).copy(), layout)
    seed = int(np.random.default_rng([config.seed, 13, round_id, partition_id]).integers(2**62))  # data order only
    trainer = select_trainer(client_training)
    options = {"seed": seed, "round": round_id, "client_id": partition_id, **(extra or {})}
    update, n_samples, metrics = trainer(model, data.clients[partition_id].train, config.train, options)
    update = np.clip(np.asarray(update, dtype=np.float32), -config.protection.clip, config.protection.clip)
    plain = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and k != "samples"}
    return ClientUpdate(update, float(n_samples)), plain


def run_training(grid: Grid, protocol_for: Callable[[int], AggregationProtocol], nodes: Mapping[int, int],
                 run: FlowerRunConfig) -> list[dict[str, Any]]:
    """``run.rounds`` FedAvg rounds over Flower (``protocol_for(round)`` gives each round's protocol); returns one
    report record per round."""
    from privfed.fl.models import flatten, load_flat
    from privfed.fl.train import evaluate

    from .report import report_record

    config, data, _, layout, template = experiment(run.fl_overrides, run.seed)
    vector = flatten(template).astype(np.float32)
    records: list[dict[str, Any]] = []
    for round_id in range(1, run.rounds + 1):
        clock = time.perf_counter()
        messages = [Message(RecordDict({_MODEL: _vector_record(vector),
                                        _ROUND: ConfigRecord({"round": round_id})}),
                            dst_node_id=node, message_type=TRAIN_MESSAGE_TYPE, group_id=f"{round_id}:train")
                    for node in nodes.values()]
        by_node = {node: cid for cid, node in nodes.items()}
        trained: dict[int, int] = {}
        train_metrics: dict[str, dict[str, float]] = {}
        for reply in collect(grid, messages, run.reply_timeout):
            cid = by_node.get(reply.metadata.src_node_id)
            if cid is None or reply.has_error():
                continue
            trained[cid] = reply.metadata.src_node_id
            metrics = reply.content.metric_records.get("metrics")
            train_metrics[str(cid)] = dict(metrics) if metrics is not None else {}
        train_seconds = time.perf_counter() - clock
        failed = {str(cid): {"phase": "local-training", "reason": "no training acknowledgement"}
                  for cid in nodes if cid not in trained}
        overhead: dict[str, Any] = {}
        if trained:
            report = run_round_on_grid(grid, protocol_for(round_id), round_id, trained, layout.size,
                                       drops=run.drops_for(round_id), reply_timeout=run.reply_timeout,
                                       straggler_grace=run.straggler_grace, overhead=overhead)
            record = report_record(report, overhead, trained)
            if report.result is not None:
                if report.result.learned_by != LEARNED_BY_SERVER:
                    raise ConfigError("FedAvg over Flower needs the server to learn each round's mean; "
                                      f"{report.protection!r} delivers it to the key holders only "
                                      "(use release='server')")
                vector = (vector + config.fl.server_lr * np.asarray(report.result.mean, dtype=np.float64)
                          ).astype(np.float32)
            record.pop("mean", None)
        else:
            record = {"round": round_id, "aborted": "no node trained", "survivors": 0}
        model = copy.deepcopy(template)
        load_flat(model, vector, layout)
        record.update(local_training_wall_seconds=train_seconds, train_metrics=train_metrics,
                      dropped={**failed, **record.get("dropped", {})}, metrics=evaluate(model, data.eval))
        log.info("privfed training round %d: %s", round_id, json.dumps(
            {k: record.get(k) for k in ("survivors", "metrics", "upload_bytes_per_client", "total_seconds")}))
        records.append(record)
    return records
