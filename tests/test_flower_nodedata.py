"""Node-local data over Flower (in-memory Grid, real ClientApp handlers): each node trains only on its own folder
cut with the public schema, the server builds the model from the schema alone, a node whose data does not fit
refuses and counts as dropped, and the ServerApp writes a run directory that ``privfed audit`` reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.flower
pytest.importorskip("flwr")
pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402
from flwr.app import Context, RecordDict  # noqa: E402

from privfed.apps.flower import server_app, training  # noqa: E402
from privfed.apps.flower.config import parse_run_config  # noqa: E402
from privfed.apps.flower.updates import train_update  # noqa: E402
from privfed.cli import main as cli  # noqa: E402
from privfed.fl import sources  # noqa: E402
from privfed.fl.config import load_config  # noqa: E402
from privfed.fl.schema import schema_from_text  # noqa: E402
from privfed.fl.config import ModelConfig  # noqa: E402
from test_flower_driver import NODE_IDS, MemoryGrid, _task_identity  # noqa: E402,F401 (autouse fixture)

PUBLIC = "a federation of small language models learns from text that never leaves its owner. " * 30
TEXTS = ["the nodes keep their own data and only send protected updates. " * 12,
         "secure aggregation hides each update from the server, only the sum is learned. " * 12,
         "differential privacy adds noise so that no single record stands out in the model. " * 12]


def write_nodes(root: Path, texts: list[str], public: str) -> Any:
    """A schema made from ``public`` (``root/schema.json``) and one data folder per text (``root/node-i``): the
    node-local layout every Flower test with training uses. Returns the schema."""
    (root / "public.txt").write_text(public)
    schema = schema_from_text(root / "public.txt", seq_len=12, model=ModelConfig(hidden=8, embedding=4),
                              max_unknown_fraction=0.05)
    schema.save(root / "schema.json")
    for i, text in enumerate(texts):
        (root / f"node-{i}").mkdir()
        (root / f"node-{i}" / "notes.txt").write_text(text)
    return schema


@pytest.fixture()
def deployment(tmp_path: Path) -> dict[str, Any]:
    schema = write_nodes(tmp_path, TEXTS, PUBLIC + " ".join(TEXTS) + " completely different")
    config = load_config(None, ["data.source=text", f"data.schema={tmp_path / 'schema.json'}", "fl.rounds=2",
                                "train.max_batches=2"])
    run_config = {"protection": "plaintext", "rounds": 2, "clients": 3, "reply-timeout": 1.0, "update-source": "train",
                  "experiment": json.dumps(config.to_table()), "schema": json.dumps(schema.to_json()),
                  "run-dir": str(tmp_path / "run")}
    return {"root": tmp_path, "run_config": run_config,
            "node_config": lambda p: {"partition-id": p, "data-path": str(tmp_path / f"node-{p}")}}


def _context(deployment: dict[str, Any], partition: int) -> Context:
    return Context(run_id=1, node_id=NODE_IDS[partition], node_config=deployment["node_config"](partition),
                   state=RecordDict(), run_config=deployment["run_config"])


def _train_message(deployment: dict[str, Any]) -> RecordDict:
    from privfed.fl.models import flatten

    task = training.task_for(parse_run_config(deployment["run_config"]))
    return training._message(flatten(task.template), 1, NODE_IDS[0], training.TRAIN_MESSAGE_TYPE).content


def test_server_needs_the_schema_and_no_data(deployment: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    training._build_task.cache_clear()

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"the server opened data: {args}")

    monkeypatch.setattr(sources, "text_files", forbidden)
    monkeypatch.setattr(sources, "stdlib_docstrings", forbidden)
    task = training.task_for(parse_run_config(deployment["run_config"]))
    assert task.node_local and task.data is None and task.layout.size > 0


def test_each_update_depends_only_on_its_own_folder(deployment: dict[str, Any],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    config = parse_run_config(deployment["run_config"])
    content = _train_message(deployment)
    opened: list[str] = []
    real = sources.text_files
    monkeypatch.setattr(sources, "text_files", lambda path, *a: opened.append(str(path)) or real(path, *a))
    training._node_split.cache_clear()
    first, *_ = train_update(content, _context(deployment, 0), config, 0)
    assert opened == [str(deployment["root"] / "node-0")]  # node 0 read its own folder only
    (deployment["root"] / "node-1" / "notes.txt").write_text("completely different text for node one. " * 20)
    training._node_split.cache_clear()
    again, *_ = train_update(content, _context(deployment, 0), config, 0)
    assert np.array_equal(first.vector, again.vector) and first.weight == again.weight
    (deployment["root"] / "node-0" / "notes.txt").write_text(TEXTS[2])
    training._node_split.cache_clear()
    changed, *_ = train_update(content, _context(deployment, 0), config, 0)
    assert not np.array_equal(first.vector, changed.vector)


def test_run_directory_with_a_refusing_node_that_audit_reads(deployment: dict[str, Any]) -> None:
    root = deployment["root"]
    (root / "node-2" / "notes.txt").write_text("数据不符合模式。" * 40)  # outside the schema's vocabulary
    training._node_split.cache_clear()
    grid = MemoryGrid(deployment["run_config"], node_config=deployment["node_config"])
    server_app.main(grid, Context(run_id=1, node_id=0, node_config={}, state=RecordDict(),
                                  run_config=deployment["run_config"]))
    rounds = [json.loads(line) for line in (root / "run" / "rounds.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rounds] == [1, 2]
    for record in rounds:
        assert record["survivors"] == 2 and record["aborted"] is None
        assert "outside the schema's vocabulary" in record["dropped"]["2"]["reason"]
        # training is folded into the protocol's first phase: the refusal is a dropout there, naming local training
        assert record["dropped"]["2"]["phase"] == record["phases"][0]
        assert "local training" in record["dropped"]["2"]["reason"]
        assert record["metrics"]["evaluated_by"] == 2 and np.isfinite(record["metrics"]["loss"])
        assert (root / "run" / "transcripts" / f"round_{record['round']:03d}.json").exists()
    summary = json.loads((root / "run" / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["runtime"]["kind"] == "flower"
    assert summary["final_metrics"]["loss"] < summary["initial_metrics"]["loss"]
    result = CliRunner().invoke(cli, ["audit", str(root / "run")])
    assert result.exit_code == 0, result.output


def test_node_without_data_path_refuses(deployment: dict[str, Any]) -> None:
    run_config = {**deployment["run_config"], "rounds": 1}
    run_config.pop("run-dir")

    def config(p: int) -> dict[str, Any]:
        return {k: v for k, v in deployment["node_config"](p).items() if p != 1 or k != "data-path"}

    path = deployment["root"] / "report.json"
    run_config["report"] = str(path)
    server_app.main(MemoryGrid(run_config, node_config=config),
                    Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=run_config))
    (record,) = json.loads(path.read_text())["rounds"]
    assert "no node-config data-path" in record["dropped"]["1"]["reason"] and record["survivors"] == 2


def test_dpsgd_nodes_report_their_accounting_to_the_server_ledger(deployment: dict[str, Any]) -> None:
    """DP-SGD over Flower: each node's (noise multiplier, sampling rate, steps) reaches the server's protocol, so
    the run's ledger holds a record-level event per round (not the 'no report: no bound' event)."""
    pytest.importorskip("opacus")
    root = deployment["root"]
    config = load_config(None, ["data.source=text", f"data.schema={root / 'schema.json'}", "fl.rounds=1",
                                "train.max_batches=2", "protection.options.dp-sgd.noise_multiplier=1.0"])
    run_config = {**deployment["run_config"], "protection": "dp-sgd", "rounds": 1,
                  "experiment": json.dumps(config.to_table()), "run-dir": str(root / "dp-run")}
    training._build_task.cache_clear()
    training._node_split.cache_clear()
    server_app.main(MemoryGrid(run_config, node_config=deployment["node_config"]),
                    Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=run_config))
    (record,) = [json.loads(line) for line in (root / "dp-run" / "rounds.jsonl").read_text().splitlines()]
    assert record["survivors"] == 3, record.get("dropped")
    events = json.dumps(record["dp_events"])
    assert "gaussian" in events and "did not report" not in events
    assert record["epsilon_unit"] == "record" and 0 < float(record["epsilon_server"]) < float("inf")


def test_a_protocol_bug_in_a_node_is_contained(monkeypatch: pytest.MonkeyPatch) -> None:
    """A foreign exception in a node's client machine (a protocol bug) does not crash the node: that client drops
    out with an INTERNAL_ERROR reason naming only the exception type, and the round goes on without it."""
    from protocols.plaintext import PlaintextProtocol

    from privfed.runtime.local import INTERNAL_ERROR
    from test_flower_driver import _run_config, _server_round

    real = PlaintextProtocol.client

    def buggy(self: Any, client_id: int, *args: Any, **kwargs: Any) -> Any:
        machine = real(self, client_id, *args, **kwargs)
        if client_id == 1:
            def handle(payload: bytes) -> bytes:
                raise ValueError("secret state 1234")
            machine.handle = handle
        return machine

    monkeypatch.setattr(PlaintextProtocol, "client", buggy)
    report = _server_round(MemoryGrid(_run_config("plaintext")), _run_config("plaintext"))
    assert report.survivors == (0, 2) and report.result is not None
    reason = report.dropped[1]["reason"]
    assert INTERNAL_ERROR in reason and "ValueError" in reason and "1234" not in reason


def test_paillier_with_dealt_keys_over_flower(tmp_path: Path) -> None:
    """Paillier over Flower: keys dealt to files (factors to the nodes, the modulus to the server), one round on the
    in-memory Grid matching the exact weighted mean within the declared bound; the server's authority has no
    secret."""
    pytest.importorskip("phe")
    from protocols.errors import ConfigError
    from privfed.apps.flower.config import build_protocol
    from privfed.bench.aggregation import synthetic_updates
    from privfed.runtime.flower.keys import deal, load_paillier_authority
    from test_flower_driver import CLIENTS, PARAMS, SEED, _node_config, _run_config, _server_round

    options = {"key_bits": 1024, "insecure_test_keys": True}
    nodes_dir, server_dir = deal(tmp_path / "keys", "paillier", options)
    assert not (server_dir / "paillier.secret").exists()
    config = _run_config("paillier", **{"key-dir": str(server_dir), "options": json.dumps(options)})
    grid = MemoryGrid(config, node_config=lambda p: {**_node_config(p), "key-dir": str(nodes_dir)})
    report = _server_round(grid, config)
    assert report.survivors == (0, 1, 2) and report.result is not None, (report.dropped, report.rejected)
    updates = synthetic_updates(CLIENTS, PARAMS, SEED)
    updates = [updates[c] for c in range(CLIENTS)]
    weights = np.array([u.weight for u in updates])
    exact = weights @ np.stack([u.vector.astype(np.float64) for u in updates]) / weights.sum()
    assert np.max(np.abs(report.result.mean - exact)) <= report.result.error_bound + 1e-12
    with pytest.raises(ConfigError, match="public key material only"):
        load_paillier_authority(server_dir, secret=False, key_bits=1024).client_bundle()
    with pytest.raises(ConfigError):  # a node's key directory is needed for the factors
        build_protocol(parse_run_config(config), key_dir=str(server_dir), secret=True)


def test_csv_nodes_forecast_with_the_public_scaling(tmp_path: Path) -> None:
    """A CSV schema (channels and their public mean/std) over Flower: each node's own CSV is scaled with the
    schema's figures and a node whose columns differ is refused."""
    from privfed.fl.schema import schema_from_csv

    t = np.arange(120)
    rows = lambda shift: "\n".join(f"a,{np.sin(i / 5 + shift):.4f},{np.cos(i / 7):.4f}" for i in t)  # noqa: E731
    (tmp_path / "public.csv").write_text("client,x,y\n" + rows(0) + "\n")
    schema = schema_from_csv(tmp_path / "public.csv", seq_len=6, model=ModelConfig(hidden=8))
    for i in range(3):
        header = "client,x,y" if i < 2 else "client,x,z"
        (tmp_path / f"node-{i}.csv").write_text(f"{header}\n" + rows(i) + "\n")
    config = load_config(None, ["data.source=csv", "data.task=forecast", "data.schema=", "data.path=unused.csv",
                                "train.max_batches=2"])
    run_config = {"protection": "plaintext", "rounds": 1, "clients": 3, "reply-timeout": 1.0,
                  "update-source": "train", "experiment": json.dumps(config.to_table()),
                  "schema": json.dumps(schema.to_json()), "report": str(tmp_path / "report.json")}
    training._build_task.cache_clear()
    training._node_split.cache_clear()
    server_app.main(MemoryGrid(run_config, node_config=lambda p: {"partition-id": p,
                                                                 "data-path": str(tmp_path / f"node-{p}.csv")}),
                    Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=run_config))
    (record,) = json.loads((tmp_path / "report.json").read_text())["rounds"]
    assert record["survivor_ids"] == [0, 1] and "channels" in record["dropped"]["2"]["reason"]
    assert np.isfinite(record["metrics"]["loss"]) and record["metrics"]["evaluated_by"] == 2


def test_resume_continues_a_stopped_flower_run(deployment: dict[str, Any]) -> None:
    """A Flower run stopped after round 1 (as if the server were killed) continues from its checkpoint with
    resume: every round appears once, the model continues from the checkpoint, and audit reads the result."""
    root = deployment["root"]
    training._node_split.cache_clear()

    def serve(**extra: Any) -> None:
        run_config = {**deployment["run_config"], **extra}
        server_app.main(MemoryGrid(run_config, node_config=deployment["node_config"]),
                        Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=run_config))

    serve(**{"stop-after": 1})
    summary = json.loads((root / "run" / "summary.json").read_text())
    assert summary["status"] == "stopped" and summary["rounds_completed"] == 1
    with pytest.raises(RuntimeError, match="already holds a run"):
        serve()
    serve(resume=True)
    rounds = [json.loads(line) for line in (root / "run" / "rounds.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rounds] == [1, 2]
    summary = json.loads((root / "run" / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["resumed_from_round"] == 1
    assert summary["initial_metrics"]["loss"] > rounds[-1]["metrics"]["loss"]
    assert CliRunner().invoke(cli, ["audit", str(root / "run")]).exit_code == 0
