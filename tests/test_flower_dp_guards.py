"""The FedAvg loop's privacy planning over Flower (in-memory Grid, real ClientApp handlers, node-local data):
an epsilon target calibrated on the submitting side with the in-process loop's function, a run directory whose
ledger spends at most the target, the distributed-DP guards (colluders, min_noise_survivors, expected_clients)
identical on the server and on every node, a round whose noise survivors fall below the floor and a round that
no longer meets the threat model aborted with the reason, and release="key-holders" refused before any round."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.flower
pytest.importorskip("flwr")
pytest.importorskip("torch")
pytest.importorskip("protocols.secagg")

from flwr.app import Context, RecordDict  # noqa: E402

from protocols.errors import ConfigError  # noqa: E402
from privfed.apps.flower import server_app, training  # noqa: E402
from privfed.apps.flower.config import parse_run_config  # noqa: E402
from privfed.apps.flower.submit import FlowerRuntime, _run_config  # noqa: E402
from privfed.apps.flower.target import KEY_HOLDERS_REASON, calibrated_config  # noqa: E402
from privfed.experiment.fedavg import declared_threat, protection_options  # noqa: E402
from privfed.fl.config import load_config  # noqa: E402
from privfed.runtime.flower.state import load_node_state  # noqa: E402
from privfed.threat.budget import calibrate, runtime_options  # noqa: E402
from test_flower_driver import NODE_IDS, MemoryGrid, _task_identity  # noqa: E402,F401 (autouse fixture)
from test_flower_nodedata import write_nodes  # noqa: E402

TEXTS = ["the nodes keep their own data and only send protected updates. " * 12,
         "secure aggregation hides each update from the server, only the sum is learned. " * 12,
         "differential privacy adds noise so that no single record stands out in the model. " * 12]
TARGET = 30.0


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    write_nodes(tmp_path, TEXTS, " ".join(TEXTS) * 3 + " completely different")
    training._build_task.cache_clear()
    training._node_split.cache_clear()
    return tmp_path


def _config(root: Path, *overrides: str) -> Any:
    return load_config(None, ["data.source=text", f"data.schema={root / 'schema.json'}", "fl.rounds=2",
                              "fl.clients_per_round=3", "train.max_batches=1", *overrides])


def _nodes(root: Path, without_data: tuple[int, ...] = ()):
    return lambda p: {"partition-id": p, **({} if p in without_data else {"data-path": str(root / f"node-{p}")})}


def _serve(run_config: dict[str, Any], node_config) -> MemoryGrid:
    grid = MemoryGrid({**run_config, "reply-timeout": 1.0}, node_config=node_config)
    try:
        server_app.main(grid, Context(run_id=1, node_id=0, node_config={}, state=RecordDict(),
                                      run_config={**run_config, "reply-timeout": 1.0}))
    except RuntimeError:
        pass  # the run directory's summary holds the error
    return grid


def _rounds(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]


TARGETED = ("plan=secagg+dp", f"threat.epsilon={TARGET}", "threat.delta=1e-5", "threat.server=honest-but-curious")


def test_epsilon_target_is_calibrated_on_the_submitting_side_and_the_ledger_stays_under_it(root: Path) -> None:
    config = _config(root, *TARGETED)
    run_config = _run_config(config, FlowerRuntime(kind="flower"), root / "RUN")
    calibrated = json.loads(run_config["calibrated"])
    experiment = json.loads(run_config["experiment"])
    z = experiment["protection"]["options"]["secagg+dp"]["noise_multiplier"]
    assert calibrated == {"secagg+dp": z} and z > 0.05  # a real calibration, not the search's floor
    # the multiplier is budget.calibrate's for the planned rounds (the function the in-process loop calls)
    from privfed.apps.flower.target import _model_size
    assert z == calibrate(["secagg+dp"], [(1, "secagg+dp"), (2, "secagg+dp")], declared_threat(config), 3,
                          {k: dict(v) for k, v in config.protection.options.items()}, _model_size(config))
    grid = _serve(run_config, _nodes(root))
    rounds = _rounds(root / "RUN")
    assert [r["survivors"] for r in rounds] == [3, 3], [r.get("aborted") for r in rounds]
    summary = json.loads((root / "RUN" / "summary.json").read_text())
    assert summary["noise_multiplier_from_target"] == calibrated and summary["delta"] == 1e-5
    assert 0 < summary["epsilon_server"] <= TARGET and 0 < summary["epsilon_model"] <= TARGET
    # the guards: the server's options and every node's are the in-process loop's, from the one function
    run = parse_run_config(run_config)
    server = training.protocol_base_options(run, "secagg+dp")
    assert server == protection_options(training.task_for(run).config, "secagg+dp", training.task_for(run).max_weight, 3)
    threat = declared_threat(config)
    assert {k: server[k] for k in ("colluders", "min_noise_survivors", "expected_clients")} == \
        runtime_options("secagg+dp", server, threat, 3) == {"colluders": 0, "min_noise_survivors": 3,
                                                            "expected_clients": 3}
    for node in NODE_IDS:
        assert load_node_state(grid.contexts[node].state).protocol_options == server
    from click.testing import CliRunner
    from privfed.cli import main as cli

    audit = CliRunner().invoke(cli, ["audit", str(root / "RUN")])  # the audit re-reads the ledger it spends
    assert audit.exit_code == 0, audit.output


def test_a_round_below_the_noise_floor_is_aborted_with_the_reason(root: Path) -> None:
    """Target mode promises the noise of 3 survivors: a node that drops before its upload leaves 2, so the round
    aborts (nothing spent) rather than release a sum with less noise than planned; the next round completes."""
    run_config = {**_run_config(_config(root, *TARGETED), FlowerRuntime(kind="flower"), root / "RUN"),
                  "drops": "1/1:before-upload"}
    _serve(run_config, _nodes(root))
    first, second = _rounds(root / "RUN")
    assert first["aborted"] and "noise" in first["aborted"] and first.get("dp_events") is None
    assert second["aborted"] is None and second["survivors"] == 3
    summary = json.loads((root / "RUN" / "summary.json").read_text())
    assert 0 < summary["epsilon_server"] <= TARGET


def test_round_recheck_aborts_a_round_that_no_longer_meets_the_threat_model(root: Path) -> None:
    """collusion=1 holds with 3 nodes (2 honest) at the plan check; when node 2 cannot train, 2 nodes remain and
    one honest client would be left: the round is aborted with the FedAvg loop's re-check reason."""
    config = _config(root, "plan=secagg", "fl.rounds=1", "threat.server=honest-but-curious", "threat.collusion=1")
    run_config = _run_config(config, FlowerRuntime(kind="flower"), root / "RUN")
    _serve(run_config, _nodes(root, without_data=(2,)))
    (record,) = _rounds(root / "RUN")
    assert record["aborted"].startswith("round re-check with 2 clients: secagg no longer meets the threat model")
    # training rides with the first protocol phase: the node that could not train drops out there, and the
    # re-check for the two that trained aborts the round before any later phase
    assert record["dropped"]["2"]["phase"] == "advertise-keys" and record["phases"] == ["advertise-keys"]


def test_key_holders_release_is_refused_before_any_round(root: Path, tmp_path_factory) -> None:
    pytest.importorskip("tenseal")
    config = _config(root, "plan=ckks", "protection.options.ckks.release=key-holders")
    with pytest.raises(ConfigError, match="no node-to-node channel"):
        calibrated_config(config, 3)
    from privfed.runtime.flower.keys import deal

    nodes_dir, server_dir = deal(tmp_path_factory.mktemp("keys"))
    run_config = {"protection": "ckks", "rounds": 1, "clients": 3, "update-source": "train",
                  "experiment": json.dumps(config.to_table()), "schema": (root / "schema.json").read_text(),
                  "run-dir": str(root / "RUN"), "key-dir": str(server_dir)}
    grid = MemoryGrid(run_config, node_config=lambda p: {**_nodes(root)(p), "key-dir": str(nodes_dir)})
    with pytest.raises(RuntimeError, match="no node-to-node channel"):
        server_app.main(grid, Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=run_config))
    assert not (root / "RUN" / "rounds.jsonl").exists()  # refused before the first round, not after it
    assert all(not ctx.state.config_records for ctx in grid.contexts.values())  # no node was even asked to train


def test_dpsgd_target_is_refused_with_the_reason(root: Path) -> None:
    config = _config(root, "plan=dp-sgd", "threat.epsilon=8", "threat.delta=1e-5", "threat.dp_unit=record")
    with pytest.raises(ConfigError, match="node's data size"):
        calibrated_config(config, 3)


def test_threshold_paillier_is_refused_over_flower_with_the_reason(root: Path) -> None:
    """Threshold Paillier's shares would have to be dealt to each node before the run; the Flower dealer deals a
    shared key only, so the run is refused before any round (submit side and ServerApp), naming why."""
    from privfed.apps.flower.target import THRESHOLD_REASON

    config = _config(root, "plan=paillier", "protection.options.paillier.decryption=threshold")
    with pytest.raises(ConfigError, match="decryption='threshold' is refused over Flower"):
        calibrated_config(config, 3)
    run_config = {"protection": "paillier", "rounds": 1, "clients": 3, "options": json.dumps(
        {"decryption": "threshold", "key_bits": 1024, "insecure_test_keys": True})}
    grid = MemoryGrid(run_config, node_config=_nodes(root))
    with pytest.raises(RuntimeError, match="threshold"):
        server_app.main(grid, Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=run_config))
    assert "in-process" in THRESHOLD_REASON
