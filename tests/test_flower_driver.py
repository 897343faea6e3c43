"""The Flower runtime's apps against an in-memory Grid (no SuperLink, no processes): fast checks that the ServerApp
and ClientApp reproduce the in-process runtime — survivors, means, exact byte counts, injected dropouts — and that
silent nodes, tampered replies, malformed envelopes and refused protections are handled as the local runtime
handles them. Every message goes through the real ClientApp handlers and ``context.state`` (pickled node state), as
on a SuperNode where each message runs in a fresh process. The real multi-process deployment is tests/test_flower.py.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import pytest

pytestmark = pytest.mark.flower
pytest.importorskip("flwr")

from flwr.app import Context, Message, RecordDict  # noqa: E402
from flwr.serverapp import Grid  # noqa: E402

from protocols import registry  # noqa: E402
from privfed.bench.aggregation import MAX_WEIGHT, VALUE_RANGE, synthetic_updates  # noqa: E402
from privfed.apps.flower import client_app, server_app
from privfed.runtime.flower import driver  # noqa: E402
from privfed.apps.flower.config import build_protocol, parse_run_config  # noqa: E402
from privfed.runtime.flower.envelope import unpack_reply, pack_reply  # noqa: E402
from privfed.runtime.local import run_round  # noqa: E402

CLIENTS, PARAMS, SEED = 3, 24, 5


@pytest.fixture(autouse=True)
def _task_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flower stamps new messages with the running task's identity; outside a ServerApp process, set one."""
    from flwr.supercore.task_identity import TaskIdentity

    for name, value in (("_run_id", 1), ("_node_id", 0), ("_task_id", 1)):
        monkeypatch.setattr(TaskIdentity, name, value)

NODE_IDS = (9001, 4242, 777)  # node ids unrelated to partition ids, as on a real SuperLink


class MemoryGrid(Grid):
    """Delivers each pushed message to the node's ClientApp at once; ``silent`` nodes never reply and
    ``tamper(node, reply) -> reply`` rewrites replies on the way back."""

    def __init__(self, run_config: Mapping[str, Any], node_config: Callable[[int], dict] | None = None,
                 silent: Iterable[int] = (), tamper: Callable[[int, Message], Message] | None = None) -> None:
        self.contexts = {node: Context(run_id=1, node_id=node, node_config=(node_config or _node_config)(p),
                                       state=RecordDict(), run_config=dict(run_config))
                         for p, node in enumerate(NODE_IDS)}
        self.silent, self.tamper = set(silent), tamper
        self._replies: dict[str, Message] = {}
        self._ids = itertools.count(1)

    def set_run(self, run_id: int) -> None:  # pragma: no cover - not used
        pass

    @property
    def run(self) -> Any:  # pragma: no cover - not used
        return None

    def create_message(self, *args: Any, **kwargs: Any) -> Message:  # pragma: no cover - not used
        raise NotImplementedError

    def get_node_ids(self) -> list[int]:
        return list(NODE_IDS)

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        ids = []
        for message in messages:
            message_id = f"m{next(self._ids)}"
            message.metadata.__dict__["_message_id"] = message_id  # the SuperLink assigns ids
            ids.append(message_id)
            node = message.metadata.dst_node_id
            if node in self.silent:
                continue
            reply = client_app.app(message, self.contexts[node])
            self._replies[message_id] = self.tamper(node, reply) if self.tamper else reply
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        return [self._replies.pop(i) for i in list(message_ids) if i in self._replies]

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        return self.pull_messages(self.push_messages(messages))


def _node_config(partition: int) -> dict[str, Any]:
    return {"partition-id": partition, "num-partitions": CLIENTS}


def _run_config(protection: str, **extra: Any) -> dict[str, Any]:
    return {"protection": protection, "params": PARAMS, "seed": SEED, "clients": CLIENTS, "reply-timeout": 1.0,
            **extra}


def _server_round(grid: MemoryGrid, run_config: Mapping[str, Any], drops: Mapping[int, str] | None = None):
    config = parse_run_config(run_config)
    protocol = build_protocol(config, key_dir=config.key_dir)
    nodes = server_app.enrol(grid, list(NODE_IDS), config)
    return driver.run_round_on_grid(grid, protocol, 1, nodes, PARAMS, drops=drops, reply_timeout=1.0)


def _local(protection: str, drops: Mapping[int, str] | None = None, tamper=None):
    protocol = registry.create(protection, {"max_weight": MAX_WEIGHT, "clip": VALUE_RANGE})
    return run_round(protocol, 1, synthetic_updates(CLIENTS, PARAMS, SEED), drops=dict(drops or {}),
                     tamper=tamper)


def _assert_same(flower, local) -> None:
    assert flower.result is not None and local.result is not None
    assert flower.survivors == local.survivors
    assert flower.phases == local.phases
    assert np.allclose(flower.result.mean, local.result.mean, rtol=0, atol=2 * local.result.error_bound + 1e-12)
    assert flower.dropped == local.dropped and flower.rejected.keys() == local.rejected.keys()
    for cid in local.participants:
        assert dict(flower.upload_bytes.get(cid, {})) == dict(local.upload_bytes.get(cid, {}))
        assert dict(flower.download_bytes.get(cid, {})) == dict(local.download_bytes.get(cid, {}))


@pytest.mark.parametrize("protection,drops", [
    ("plaintext", {}),
    ("plaintext", {0: "before-upload"}),
    ("secagg", {1: "after-upload"}),
    ("secagg", {2: "before-upload"}),
    ("secagg", {0: "share-keys"}),
])
def test_same_round_as_the_local_runtime(protection: str, drops: dict[int, str]) -> None:
    if protection == "secagg":
        pytest.importorskip("protocols.secagg")
    grid = MemoryGrid(_run_config(protection))
    _assert_same(_server_round(grid, _run_config(protection), drops), _local(protection, drops))


def test_enrolment_maps_partition_ids_to_client_ids() -> None:
    grid = MemoryGrid(_run_config("plaintext"))
    nodes = server_app.enrol(grid, list(NODE_IDS), parse_run_config(_run_config("plaintext")))
    assert nodes == {0: NODE_IDS[0], 1: NODE_IDS[1], 2: NODE_IDS[2]}


def test_silent_node_is_a_dropout_at_that_phase() -> None:
    grid = MemoryGrid(_run_config("plaintext"))
    config = parse_run_config(_run_config("plaintext"))
    nodes = server_app.enrol(grid, list(NODE_IDS), config)
    grid.silent = {NODE_IDS[1]}  # enrolled, then stops answering
    report = driver.run_round_on_grid(grid, build_protocol(config), 1, nodes, PARAMS, reply_timeout=1.0)
    assert report.survivors == (0, 2)
    assert report.dropped == {1: {"phase": "upload", "reason": "no reply in time"}}
    assert report.download_bytes[1]["upload"] > 0 and not report.upload_bytes.get(1)


def _flip_last_byte(node: int, reply: Message) -> Message:
    if node != NODE_IDS[2] or reply.metadata.message_type != "query":
        return reply
    parsed = unpack_reply(reply.content)
    if parsed.payload is None:
        return reply
    payload = parsed.payload[:-1] + bytes([parsed.payload[-1] ^ 1])
    reply.content = pack_reply(parsed.status, payload, client_seconds=parsed.client_seconds)
    return reply


def test_tampered_reply_is_rejected_as_locally() -> None:
    pytest.importorskip("protocols.secagg")

    def local_tamper(phase: str, cid: int, reply: bytes) -> bytes:
        return reply[:-1] + bytes([reply[-1] ^ 1]) if cid == 2 else reply

    local = _local("secagg", tamper=local_tamper)
    grid = MemoryGrid(_run_config("secagg"), tamper=_flip_last_byte)
    flower = _server_round(grid, _run_config("secagg"))
    assert flower.rejected.keys() == local.rejected.keys() == {2}
    assert flower.rejected[2]["phase"] == local.rejected[2]["phase"]
    assert flower.survivors == local.survivors


def test_malformed_envelope_is_rejected() -> None:
    def strip(node: int, reply: Message) -> Message:
        if node != NODE_IDS[0] or reply.metadata.message_type != "query":
            return reply
        reply.content = RecordDict()
        return reply

    report = _server_round(MemoryGrid(_run_config("plaintext"), tamper=strip), _run_config("plaintext"))
    assert report.survivors == (1, 2)
    assert "envelope" in report.rejected[0]["reason"]


def test_node_refuses_a_protection_it_did_not_pin() -> None:
    def pinned(partition: int) -> dict[str, Any]:
        return {**_node_config(partition), **({"protections": "secagg,ckks"} if partition == 0 else {})}

    grid = MemoryGrid(_run_config("plaintext"), node_config=pinned)
    config = parse_run_config(_run_config("plaintext"))
    nodes = server_app.enrol(grid, list(NODE_IDS), config)
    assert nodes == {1: NODE_IDS[1], 2: NODE_IDS[2]}  # the node that declined is left out at enrolment
    # and a node asked anyway refuses in the phase itself (counted as that client's dropout)
    report = driver.run_round_on_grid(grid, build_protocol(config), 1, {0: NODE_IDS[0], 1: NODE_IDS[1]}, PARAMS,
                                      reply_timeout=1.0)
    assert report.dropped[0]["reason"].startswith("client stopped: this node accepts only")
    assert report.survivors == (1,)


def test_server_app_main_writes_the_report(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    config = _run_config("plaintext", drops="1:before-upload", report=str(path))
    grid = MemoryGrid(config)
    server_app.main(grid, Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=config))
    report = json.loads(path.read_text())
    (record,) = report["rounds"]
    local = _local("plaintext", {1: "before-upload"})
    assert record["survivor_ids"] == [0, 2]
    assert np.allclose(record["mean"], local.result.mean, rtol=0, atol=1e-12)
    assert record["upload_bytes"] == {str(c): dict(p) for c, p in local.upload_bytes.items()}
    assert record["upload_bytes_per_client"] == local.summary()["upload_bytes_per_client"]


def test_server_app_runs_a_protection_plan(tmp_path: Path) -> None:
    pytest.importorskip("protocols.secagg")
    path = tmp_path / "plan.json"
    config = _run_config("plaintext,secagg", rounds=2, drops="2/1:after-upload", report=str(path))
    server_app.main(MemoryGrid(config), Context(run_id=1, node_id=0, node_config={}, state=RecordDict(),
                                                run_config=config))
    first, second = json.loads(path.read_text())["rounds"]
    assert (first["protection"], second["protection"]) == ("plaintext", "secagg")
    assert first["dropped"] == {} and first["survivor_ids"] == [0, 1, 2]
    local = run_round(registry.create("secagg", {"max_weight": MAX_WEIGHT, "clip": VALUE_RANGE}), 2,
                      synthetic_updates(CLIENTS, PARAMS, SEED), drops={1: "after-upload"})
    assert second["survivor_ids"] == list(local.survivors)
    assert second["dropped"] == {"1": local.dropped[1]}
    assert np.allclose(second["mean"], local.result.mean, rtol=0, atol=2 * local.result.error_bound)
    assert second["upload_bytes"] == {str(c): dict(p) for c, p in local.upload_bytes.items()}


def test_server_app_trains_an_lstm_round(tmp_path: Path) -> None:
    """update-source=train: a train message carries the global model, each node trains on its partition, then the
    protocol round aggregates the updates (plaintext here, to keep the test quick)."""
    pytest.importorskip("torch")
    path = tmp_path / "train.json"
    config = {**_run_config("plaintext", report=str(path), **{"update-source": "train"}),
              "fl-overrides": "model.hidden=8;model.embedding=4;train.max_batches=1;data.max_chars_per_client=1500"}
    server_app.main(MemoryGrid(config), Context(run_id=1, node_id=0, node_config={}, state=RecordDict(),
                                                run_config=config))
    (record,) = json.loads(path.read_text())["rounds"]
    assert record["survivor_ids"] == [0, 1, 2] and record["aborted"] is None
    assert record["metrics"]["evaluated_by"] == 3 and record["metrics"]["samples"] > 0  # federated evaluation
    assert np.isfinite(record["metrics"]["loss"])
    from privfed.apps.flower.training import experiment

    layout = experiment(config["fl-overrides"], SEED)[3]
    assert record["upload_bytes"]["0"]["upload"] > 4 * layout.size  # the float32 update plus the wire header


@pytest.fixture(scope="module")
def dealt_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    pytest.importorskip("tenseal")
    pytest.importorskip("protocols.ckks")
    from privfed.runtime.flower.keys import deal

    return deal(tmp_path_factory.mktemp("keys"))


def test_ckks_with_dealt_keys_matches_the_local_runtime(dealt_keys: tuple[Path, Path]) -> None:
    nodes_dir, server_dir = dealt_keys
    config = _run_config("ckks", **{"key-dir": str(server_dir)})
    grid = MemoryGrid(config, node_config=lambda p: {**_node_config(p), "key-dir": str(nodes_dir)})
    flower, local = _server_round(grid, config), _local("ckks")
    assert flower.survivors == local.survivors == (0, 1, 2)
    updates = synthetic_updates(CLIENTS, PARAMS, SEED)
    weights = np.array([updates[c].weight for c in range(CLIENTS)])
    exact = weights @ np.stack([updates[c].vector.astype(np.float64) for c in range(CLIENTS)]) / weights.sum()
    assert np.max(np.abs(flower.result.mean - exact)) <= flower.result.error_bound
    assert {c: set(p) for c, p in flower.upload_bytes.items()} == {c: set(p) for c, p in local.upload_bytes.items()}


def test_server_side_ckks_authority_holds_no_secret(dealt_keys: tuple[Path, Path]) -> None:
    from protocols.errors import ConfigError

    nodes_dir, server_dir = dealt_keys
    config = parse_run_config(_run_config("ckks"))
    server = build_protocol(config, key_dir=str(server_dir), secret=False).key_authority()
    with pytest.raises(ConfigError):
        server.client_bundle()
    with pytest.raises(ConfigError):  # the public directory has no secret context to load
        build_protocol(config, key_dir=str(server_dir), secret=True)
    node = build_protocol(config, key_dir=str(nodes_dir), secret=True).key_authority()
    assert node.key_id == server.key_id


def test_server_app_takes_the_configured_number_of_clients(tmp_path: Path) -> None:
    path = tmp_path / "two.json"
    config = _run_config("plaintext", clients=2, report=str(path))
    server_app.main(MemoryGrid(config), Context(run_id=1, node_id=0, node_config={}, state=RecordDict(),
                                                run_config=config))
    (record,) = json.loads(path.read_text())["rounds"]
    assert record["participants"] == 2 and record["survivor_ids"] == [0, 1]
