"""FedAvg of an LSTM/GRU over Flower: the global model rides with each round's first protocol request, nodes train
and answer that phase in one reply, and evaluation runs on the nodes' own validation splits.

Each round: the server runs one protected aggregation round (:func:`train_and_aggregate` over
:func:`~privfed.runtime.flower.driver.run_round_on_grid`) whose first request to every node also carries the global
parameters (flat float32, in the clear, as in any FedAvg); the node rebuilds the model, trains it on **its own
data** with privfed.fl's trainer (the protocol's ``client_training``: standard or DP-SGD), clips the update to
``protection.clip``, keeps it in ``context.state`` and answers the protocol's first phase in the same reply (one
message exchange fewer than a separate ``train`` message; a node whose training fails refuses that phase and is a
dropout there, with the reason). The server applies ``global += server_lr * mean`` when the round completes, then
evaluates the new model on the nodes (:func:`privfed.apps.flower.secure_eval.evaluate_round`): in the clear when
the round's protection shows per-client figures anyway, else through a secure sum of the round's family, so the
server learns only totals (:mod:`privfed.apps.flower.evaluation`).

Where data lives (:class:`Task`): with a public task schema (run-config ``schema``, from ``privfed schema``) the
server builds the model from the schema alone and never opens any data; each node reads only node-config
``data-path`` and cuts it with the schema (:func:`privfed.fl.schema.node_split`). A node whose data does not fit the
schema refuses the round (it counts as dropped with the reason). Without a schema every node rebuilds one simulated
federation from the seed and trains on its ``partition-id`` (a simulation, kept for tests and benchmarks).

Threat model: the global model is public to the nodes; the update leaves a node only inside the protocol's upload.
A DP-SGD node's reply also carries its public accounting parameters. Evaluation: see
:mod:`privfed.apps.flower.evaluation` (clear sums only under plaintext and central DP; totals through a secure sum
otherwise, not DP-noised).
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid

from protocols.base import LEARNED_BY_SERVER, AggregationProtocol, ClientUpdate
from protocols.errors import ConfigError, MessageError, PrivfedError
from privfed.runtime.flower.driver import run_round_on_grid

from .config import FlowerRunConfig
from .evaluation import EVAL_KEYS as _EVAL_KEYS, disclosure_note
from .report import report_record
from .secure_eval import evaluate_round

__all__ = ["Task", "task_for", "experiment", "protocol_base_options", "round_recheck", "run_training", "client_train",
           "node_data", "node_evaluate", "server_evaluation", "model_records", "model_message", "train_and_aggregate", "TRAIN_MESSAGE_TYPE",
           "EVAL_MESSAGE_TYPE", "EVALUATION_DISCLOSURE"]

log = logging.getLogger("flwr.privfed.training")
TRAIN_MESSAGE_TYPE = "train"
EVAL_MESSAGE_TYPE = "evaluate"
_MODEL, _VECTOR, _ROUND = "privfed-model", "vector", "privfed-train"
#: what federated evaluation reveals in the clear path (a round's note: privfed.apps.flower.evaluation.disclosure_note)
EVALUATION_DISCLOSURE = disclosure_note("plaintext")

RoundSink = Callable[[dict[str, Any], Any, np.ndarray], None]


@dataclass(frozen=True)
class Task:
    """What both sides agree on: the experiment configuration, the model, the public weight bound; the schema when
    nodes hold their own data, else the simulated federation (``data``)."""

    config: Any
    schema: Any
    layout: Any
    template: Any
    max_weight: float
    data: Any
    schema_json: str

    @property
    def node_local(self) -> bool:
        return self.schema is not None


@functools.lru_cache(maxsize=4)
def _build_task(experiment_json: str, overrides: str, schema_json: str, seed: int, plan: tuple[str, ...]) -> Task:
    from protocols import registry
    from privfed.fl.config import config_from_table, load_config
    from privfed.fl.models import ParamLayout, build_model

    if experiment_json:
        try:
            table = json.loads(experiment_json)
        except ValueError as exc:
            raise ConfigError(f"run-config experiment is not JSON: {exc}") from None
        config = config_from_table(table)
    else:
        config = load_config(None, [o.strip() for o in overrides.split(";") if o.strip()], seed=seed)
    dp_compatible = any(getattr(registry.protocol_class(p), "client_training", "standard") == "dp-sgd"
                        for p in set(plan))
    schema, data = None, None
    if schema_json:
        from privfed.fl.schema import TaskSchema

        try:
            schema = TaskSchema.from_json(json.loads(schema_json))
        except ValueError as exc:
            raise ConfigError(f"run-config schema is not a schema: {exc}") from None
        spec, max_weight = schema.model_spec(dp_compatible), float(schema.max_weight)
    else:
        from privfed.fl.data import build_federated

        data = build_federated(config.data, config.seed)
        spec, max_weight = data.model_spec(config.model, dp_compatible), float(data.max_weight)
    template = build_model(spec, config.seed)
    return Task(config, schema, ParamLayout.of(template), template, max_weight, data, schema_json)


def task_for(run: FlowerRunConfig) -> Task:
    return _build_task(run.experiment, run.fl_overrides, run.schema, run.seed, run.plan)


def experiment(overrides: str, seed: int) -> tuple[Any, Any, Any, Any, Any]:
    """(config, dataset, None, layout, template) of the simulated federation (tests, without a schema)."""
    task = _build_task("", overrides, "", seed, ())
    return task.config, task.data, None, task.layout, task.template


def protocol_base_options(run: FlowerRunConfig, protection: str) -> dict[str, Any]:
    """The options privfed's FedAvg loop gives ``protection``, from its one home
    (:func:`privfed.experiment.fedavg.protection_options`): the public max_weight, clip, option table and the
    distributed-DP guards (``colluders``, ``min_noise_survivors``, ``expected_clients``) for ``run.clients`` nodes —
    the same on the server and on every node."""
    from privfed.experiment.fedavg import protection_options

    task = task_for(run)
    return protection_options(task.config, protection, task.max_weight, run.clients)


def round_recheck(run: FlowerRunConfig, round_id: int, clients: int) -> str | None:
    """The FedAvg loop's per-round re-check (:func:`privfed.experiment.fedavg.recheck_round`) for the ``clients``
    nodes invited: None when the round's protection still meets the declared threat model, else the reason
    the round is aborted."""
    from privfed.experiment.fedavg import recheck_round

    name = run.protection_for(round_id)
    return recheck_round(task_for(run).config, name, clients, protocol_base_options(run, name))


def _vector_record(vector: np.ndarray) -> ArrayRecord:
    vector = np.ascontiguousarray(vector, dtype=np.float32)
    return ArrayRecord({_VECTOR: Array(dtype="float32", shape=(vector.size,), stype="privfed.raw",
                                       data=vector.tobytes())})


@functools.lru_cache(maxsize=2)
def _node_split(schema_json: str, path: str, seed: int) -> Any:
    from privfed.fl.schema import TaskSchema, node_split

    return node_split(TaskSchema.from_json(json.loads(schema_json)), path, seed, name="this node")


def node_data(task: Task, context: Context) -> Any:
    """This node's ClientSplit: its own data-path cut with the schema, or (simulation) its partition."""
    if task.node_local:
        from privfed.fl.schema import DataMismatchError

        path = context.node_config.get("data-path")
        if not isinstance(path, str) or not path:
            raise DataMismatchError("this node has no node-config data-path (its own data)")
        return _node_split(task.schema_json, path, task.config.seed)
    partition = context.node_config.get("partition-id", -1)
    if not isinstance(partition, int) or isinstance(partition, bool) or not 0 <= partition < len(task.data.clients):
        raise ConfigError("without a schema, local training needs node-config partition-id in "
                          f"[0, {len(task.data.clients)}) (a simulated partition)")
    return task.data.clients[partition]


def _model_from(content: RecordDict, task: Task) -> tuple[Any, int]:
    from privfed.fl.models import load_flat

    try:
        array = content.array_records[_MODEL][_VECTOR]
        round_id = int(content.config_records[_ROUND]["round"])
    except (KeyError, TypeError, ValueError):
        raise MessageError("malformed train or evaluate message") from None
    if array.dtype != "float32" or len(array.data) != 4 * task.layout.size:
        raise MessageError(f"global model of {len(array.data)} bytes, the layout needs {4 * task.layout.size}")
    vector = np.frombuffer(array.data, dtype=np.float32).copy()
    if not np.isfinite(vector).all():
        raise MessageError("global model holds non-finite values")
    model = copy.deepcopy(task.template)
    load_flat(model, vector, task.layout)
    return model, round_id


def client_train(content: RecordDict, split: Any, task: Task, client_training: str, client_id: int,
                 extra: Mapping[str, Any] | None = None) -> tuple[ClientUpdate, dict[str, float]]:
    """Train the received global model on this node's split; returns the clipped update (weight capped at the
    public bound) and metrics."""
    from privfed.fl.train import select_trainer

    model, round_id = _model_from(content, task)
    config = task.config
    seed = int(np.random.default_rng([config.seed, 13, round_id, client_id]).integers(2**62))  # data order only
    trainer = select_trainer(client_training)
    options = {"seed": seed, "round": round_id, "client_id": client_id, **(extra or {})}
    update, n_samples, metrics = trainer(model, split.train, config.train, options)
    update = np.asarray(update, dtype=np.float32)
    if update.shape != (task.layout.size,) or not np.isfinite(update).all():
        raise MessageError("local training produced no finite update of the model's size")
    update = np.clip(update, -config.protection.clip, config.protection.clip)
    plain = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and k != "samples"}
    return ClientUpdate(update, float(min(n_samples, task.max_weight))), plain


def _dataset_sums(model: Any, dataset: Any) -> dict[str, float]:
    """Counts and sums of ``model`` on one dataset: what a node reports and what the server's own file gives."""
    from privfed.fl.train import evaluate

    if len(dataset) == 0:
        return {key: 0.0 for key in _EVAL_KEYS}
    metrics = evaluate(model, dataset)
    units = float(dataset.targets.numel()) if dataset.task != "forecast" else float(len(dataset))
    predictions = units if dataset.task != "classification" else float(len(dataset))
    accuracy = metrics.get("accuracy", 0.0)
    return {"loss_sum": float(metrics["loss"]) * units, "units": units,
            "correct": float(accuracy) * predictions if math.isfinite(accuracy) else 0.0,
            "predictions": predictions if dataset.task != "forecast" else 0.0, "samples": float(len(dataset))}


def node_evaluate(content: RecordDict, split: Any, task: Task) -> dict[str, float]:
    """Counts and sums of the received model on this node's validation split (added up by the server)."""
    model, _ = _model_from(content, task)
    return _dataset_sums(model, split.val)


def server_evaluation(run: FlowerRunConfig, vector: np.ndarray) -> dict[str, Any]:
    """The global model's metrics on the server's own evaluation file (run-config ``server-eval``: public test data
    the server may read, cut with the run's schema; all of it, no split), or {} without one. Never node data."""
    if not run.server_eval:
        return {}
    from privfed.fl.models import load_flat

    from .evaluation import metrics_from_totals

    task = task_for(run)
    if not task.node_local:
        raise ConfigError("run-config server-eval needs the run's schema (privfed schema) to cut the file")
    split = _node_split(task.schema_json, run.server_eval, run.seed)
    model = copy.deepcopy(task.template)
    load_flat(model, np.asarray(vector, dtype=np.float32), task.layout)
    parts = [_dataset_sums(model, split.train), _dataset_sums(model, split.val)]
    metrics = metrics_from_totals({k: sum(p[k] for p in parts) for k in _EVAL_KEYS}, 0)
    metrics.pop("evaluated_by", None)
    return {**metrics, "file": run.server_eval}


def model_records(vector: np.ndarray, round_id: int) -> RecordDict:
    """The global model and its round, as records (a message of their own, or riding with a protocol request)."""
    return RecordDict({_MODEL: _vector_record(vector), _ROUND: ConfigRecord({"round": round_id})})


def model_message(vector: np.ndarray, round_id: int, node: int, kind: str) -> Message:
    return Message(model_records(vector, round_id), dst_node_id=node, message_type=kind,
                   group_id=f"{round_id}:{kind}")


_message = model_message


def federated_evaluation(grid: Grid, vector: np.ndarray, round_id: int, nodes: Mapping[int, int],
                         timeout: float) -> dict[str, Any]:
    """The clear path of federated evaluation (kept for callers without a run config; see
    :func:`privfed.apps.flower.secure_eval.evaluate_round`, which picks the path by the round's protection)."""
    from .secure_eval import clear_evaluation

    return clear_evaluation(grid, vector, round_id, nodes, timeout)


def _account_dpsgd(protocol: AggregationProtocol, round_id: int, cid: int, record: Any) -> None:
    """A DP-SGD node's report (noise multiplier, sampling rate, steps: public parameters) goes to the server's
    protocol instance, which builds the round's ledger event from the survivors' reports exactly as in-process (a
    survivor without a report makes the event 'none': epsilon infinite, never a silent figure)."""
    if getattr(protocol, "client_training", "standard") != "dp-sgd":
        return
    if record is None:
        return  # no report: the protocol itself records no bound for this round
    try:
        z, q, steps = float(record["noise_multiplier"]), float(record["sample_rate"]), record["steps"]
    except (KeyError, TypeError, ValueError):
        raise MessageError("malformed DP-SGD report") from None
    if isinstance(steps, bool) or not isinstance(steps, int):
        raise MessageError("malformed DP-SGD report: steps must be an integer")
    protocol.report_training(round_id, cid, z, q, steps)  # validates (ConfigError on nonsense)


def train_and_aggregate(grid: Grid, protocol: AggregationProtocol, round_id: int, vector: np.ndarray,
                        nodes: Mapping[int, int], run: FlowerRunConfig, overhead: dict[str, Any],
                        transcript_key: Any = None) -> Any:
    """One protected FedAvg aggregation with local training folded into its first phase: the global model rides
    with each node's first protocol request, the node trains on its own data and answers that phase in the same
    reply (one message exchange less than a separate ``train`` message). A node whose training fails refuses the
    first phase (a dropout there, with its reason); a DP-SGD node's accounting report rides with that reply and
    goes to the server's protocol before the phase closes."""
    first_extra = {cid: model_records(vector, round_id) for cid in nodes}

    def inspect(phase: str, cid: int, reply: Message) -> str | None:
        try:
            _account_dpsgd(protocol, round_id, cid, reply.content.config_records.get("privfed-dpsgd"))
        except PrivfedError as exc:
            return f"DP-SGD report refused: {exc}"
        return None

    def recheck(alive: tuple[int, ...]) -> str | None:
        """The FedAvg loop's re-check for the nodes that trained (they answered the first phase), as in-process for
        the clients that reached the round: too few left for the threat model aborts before anything is unmasked."""
        if len(alive) == len(nodes):
            return None
        return round_recheck(run, round_id, len(alive)) if alive else "no node trained"

    return run_round_on_grid(grid, protocol, round_id, nodes, task_for(run).layout.size,
                             drops=run.drops_for(round_id), reply_timeout=run.reply_timeout,
                             straggler_grace=run.straggler_grace, overhead=overhead, transcript_key=transcript_key,
                             first_extra=first_extra, inspect=inspect, after_first=recheck)


def run_training(grid: Grid, protocol_for: Callable[[int], AggregationProtocol], nodes: Mapping[int, int],
                 run: FlowerRunConfig, sink: RoundSink | None = None, transcript_key: Any = None,
                 first_round: int = 1, start: np.ndarray | None = None) -> list[dict[str, Any]]:
    """``run.rounds`` FedAvg rounds over Flower (``protocol_for(round)`` gives each round's protocol); returns one
    report record per round and hands each (record, report, new global vector) to ``sink``."""
    from privfed.fl.models import flatten

    task = task_for(run)
    config = task.config
    vector = (flatten(task.template) if start is None else start).astype(np.float32)
    records: list[dict[str, Any]] = []
    for round_id in range(first_round, run.rounds + 1):
        clock = time.perf_counter()
        protocol = protocol_for(round_id)
        overhead: dict[str, Any] = {}
        report = None
        # the round's re-check (as in-process) for the nodes invited; training rides with phase 1, so a node whose
        # training fails is a phase-1 dropout the protocol itself handles (thresholds, the noise-survivor floor)
        aborted = round_recheck(run, round_id, len(nodes)) if nodes else "no node enrolled"
        if aborted is None:
            try:
                report = train_and_aggregate(grid, protocol, round_id, vector, nodes, run, overhead, transcript_key)
            except ConfigError as exc:  # invalid for this round's actual clients: an aborted round, as in-process
                aborted = f"round re-check with {len(nodes)} clients: {exc}"
        if report is not None:
            record = report_record(report, overhead, nodes)
            if report.result is not None:
                if report.result.learned_by != LEARNED_BY_SERVER:
                    raise ConfigError("FedAvg over Flower needs the server to learn each round's mean; "
                                      f"{report.protection!r} delivers it to the key holders only "
                                      "(use release='server')")
                vector = (vector + config.fl.server_lr * np.asarray(report.result.mean, dtype=np.float64)
                          ).astype(np.float32)
                record["learned_by"] = report.result.learned_by
                record["error_bound"] = float(report.result.error_bound)
            record.pop("mean", None)
            first = record["exchange_seconds"][0] if record.get("exchange_seconds") else [None, 0.0]
            record.update(local_training=f"folded into phase {first[0]}", local_training_wall_seconds=first[1],
                          local_training_seconds_per_client=first[1])
        else:
            record = {"round": round_id, "protection": run.protection_for(round_id), "participants": 0,
                      "survivors": 0, "aborted": aborted}
        record.update(sampled=sorted(nodes))
        eval_clock = time.perf_counter()
        record["metrics"] = evaluate_round(grid, run, vector, round_id, nodes)
        if run.server_eval:
            record["server_metrics"] = server_evaluation(run, vector)
        record["evaluation"] = disclosure_note(run.protection_for(round_id))
        record["evaluation_seconds"] = time.perf_counter() - eval_clock
        record["round_seconds"] = time.perf_counter() - clock
        log.info("privfed training round %d: %s", round_id, json.dumps(
            {k: record.get(k) for k in ("survivors", "metrics", "upload_bytes_per_client", "round_seconds")}))
        if sink is not None:
            sink(record, report, vector)
        records.append(record)
        if run.stop_after and round_id >= run.stop_after:
            break
    return records
