"""Flower's own SecAgg+ (``SecAggPlusWorkflow`` + ``secaggplus_mod``) driven in one process, for side-by-side timing.

``DirectGrid`` is a Flower ``Grid`` whose ``send_and_receive`` hands each message straight to the addressed node's
``ClientApp`` (with that node's persistent ``Context``) and returns the replies: no SuperLink, no Ray, no sockets,
no polling. Everything else is Flower 1.41's code as shipped: the legacy ``FedAvg`` strategy, the SecAgg+
workflow's four stages on the server, ``secaggplus_mod`` on every client around a ``NumPyClient`` whose ``fit``
returns the benchmark's vector and weight. Upload bytes are the serialized protobuf size of every reply a client
sends (``flwr.common.serde.message_to_proto``), i.e. what the gRPC transport would carry, before framing.

Benchmark helper only (imported by ``bench_peers.py``); not part of privfed.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["FlowerRound", "run_flower_secaggplus"]


@dataclass(frozen=True)
class FlowerRound:
    mean: np.ndarray
    seconds: float
    cpu_seconds: float
    upload_bytes_per_client: float
    num_shares: int
    threshold: int


def run_flower_secaggplus(vectors: dict[int, np.ndarray], weights: dict[int, float], num_shares: int,
                          threshold: int, clip: float = 1.0) -> FlowerRound:
    """One Flower SecAgg+ fit round over ``vectors`` (client id -> float32 vector) weighted by ``weights``."""
    from flwr.common.logger import FLOWER_LOGGER
    from flwr.supercore.task_identity import TaskIdentity

    saved_level = FLOWER_LOGGER.level
    saved_identity = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)
    FLOWER_LOGGER.setLevel(logging.ERROR)
    try:
        return _run(vectors, weights, num_shares, threshold, clip)
    finally:  # leave Flower's process-wide state as found
        FLOWER_LOGGER.setLevel(saved_level)
        TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = saved_identity


def _run(vectors: dict[int, np.ndarray], weights: dict[int, float], num_shares: int, threshold: int,
         clip: float) -> FlowerRound:
    from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
    from flwr.client import NumPyClient
    from flwr.client.mod import secaggplus_mod
    from flwr.clientapp import ClientApp
    from flwr.common.constant import SUPERLINK_NODE_ID
    from flwr.common.serde import message_from_proto, message_to_proto
    from flwr.server import ServerConfig
    from flwr.server.client_manager import SimpleClientManager
    from flwr.server.compat.grid_client_proxy import GridClientProxy
    from flwr.server.compat.legacy_context import LegacyContext
    from flwr.server.strategy import FedAvg
    from flwr.server.workflow import SecAggPlusWorkflow
    from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD, Key
    from flwr.serverapp.grid import Grid
    from flwr.supercore.run import Run
    from flwr.supercore.task_identity import TaskIdentity

    run_id = 1
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = run_id, SUPERLINK_NODE_ID, 1
    node_of = {cid: 1000 + cid for cid in vectors}
    client_of = {node: cid for cid, node in node_of.items()}
    upload: dict[int, int] = {node: 0 for node in client_of}

    class _Client(NumPyClient):
        def __init__(self, cid: int) -> None:
            self.cid = cid

        def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple[list[np.ndarray], int, dict]:
            return [vectors[self.cid]], int(weights[self.cid]), {}

    app = ClientApp(client_fn=lambda context: _Client(client_of[context.node_id]).to_client(), mods=[secaggplus_mod])
    contexts = {node: Context(run_id=run_id, node_id=node, node_config={}, state=RecordDict(), run_config={})
                for node in client_of}

    class DirectGrid(Grid):
        """A Grid that calls the ClientApp of the addressed node directly (in-process, synchronous)."""

        def __init__(self) -> None:
            self._run = Run.create_empty(run_id) if hasattr(Run, "create_empty") else None

        def set_run(self, run: Run) -> None:
            self._run = run

        @property
        def run(self) -> Run:
            return self._run

        def create_message(self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str,
                           ttl: float | None = None) -> Message:
            return Message(content=content, dst_node_id=dst_node_id, message_type=message_type, group_id=group_id)

        def get_node_ids(self) -> Iterable[int]:
            return list(client_of)

        def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
            raise NotImplementedError("DirectGrid only supports send_and_receive")

        def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
            raise NotImplementedError("DirectGrid only supports send_and_receive")

        def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
            replies = []
            for message in messages:
                message.metadata.__dict__["_message_id"] = uuid.uuid4().hex  # what the SuperLink assigns
                node = message.metadata.dst_node_id
                # through the wire format both ways, as the transport does (the workflow shares one content
                # object between its messages and the mod mutates what it receives)
                delivered = message_from_proto(message_to_proto(message))
                reply = message_to_proto(app(delivered, contexts[node]))
                upload[node] += reply.ByteSize()
                replies.append(message_from_proto(reply))
            return replies

    grid = DirectGrid()
    manager = SimpleClientManager()
    for node in client_of:
        manager.register(GridClientProxy(node, grid, run_id))
    n = len(vectors)
    strategy = FedAvg(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=n, min_available_clients=n,
                      accept_failures=False)
    context = LegacyContext(context=Context(run_id=run_id, node_id=0, node_config={}, state=RecordDict(),
                                            run_config={}),
                            config=ServerConfig(num_rounds=1), strategy=strategy, client_manager=manager)
    # The fit instruction carries the global parameters to every client. privfed's timed round is the secure
    # aggregation alone (its updates are already computed), so Flower gets a one-value model here: the benchmark's
    # clients ignore the parameters, and Flower's round then does the aggregation's work only (with the full
    # model, ten clients x 1M parameters added ~6 % to Flower's round: broadcast, not aggregation)
    context.state.array_records[MAIN_PARAMS_RECORD] = ArrayRecord([np.zeros(1, dtype=np.float32)])
    context.state.config_records[MAIN_CONFIGS_RECORD] = ConfigRecord({Key.CURRENT_ROUND: 1,
                                                                       Key.START_TIME: time.time()})
    workflow = SecAggPlusWorkflow(num_shares=num_shares, reconstruction_threshold=threshold, clipping_range=clip,
                                  max_weight=1000.0)
    started, cpu_started = time.perf_counter(), time.process_time()
    workflow(grid, context)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    arrays = context.state.array_records[MAIN_PARAMS_RECORD].to_numpy_ndarrays()
    return FlowerRound(mean=np.asarray(arrays[0], dtype=np.float64), seconds=seconds, cpu_seconds=cpu,
                       upload_bytes_per_client=sum(upload.values()) / n, num_shares=num_shares, threshold=threshold)
