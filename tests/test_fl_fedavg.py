"""The FedAvg loop through the runtime and the plaintext protocol: equivalence with centralised SGD, loss falls on
the embedded default, dropouts/rejections/aborts recorded, run directory and crash-safe resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from protocols.errors import ConfigError
from privfed.fl.config import load_config
from privfed.fl.data import build_federated
from privfed.experiment.fedavg import StopRun, run_fedavg
from privfed.fl.models import build_model, flatten, load_flat, task_loss
from privfed.experiment.rundir import decode_vector

torch.set_num_threads(1)

TINY = ["data.max_chars_per_client=1500", "data.seq_len=16", "model.hidden=12", "model.embedding=6",
        "train.batch_size=16", "data.modules=['json', 're', 'argparse', 'difflib']", "fl.clients_per_round=3"]


def _centralised_step(config: Any, lr: float) -> np.ndarray:
    """One full-batch SGD step on the union of the clients' train sets, from the same initial model."""
    data = build_federated(config.data, config.seed)
    model = build_model(data.model_spec(config.model), config.seed)
    inputs = torch.cat([c.train.inputs for c in data.clients])
    targets = torch.cat([c.train.targets for c in data.clients])
    model.zero_grad()
    task_loss(data.task, model(inputs), targets).backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= lr * p.grad
    return flatten(model)


@pytest.mark.parametrize("overrides", [
    ["data.source=synthetic-series", "data.task=forecast", "data.series_clients=4", "data.series_length=50",
     "data.seq_len=6", "model.cell=lstm", "model.hidden=8", "fl.server_lr=1.0", "data.partition=dirichlet",
     "data.clients=4", "data.alpha=2.0"],
    ["data.max_chars_per_client=0", "data.seq_len=12", "model.cell=gru", "model.hidden=8", "model.embedding=4",
     "data.modules=['string', 'colorsys', 'pprint']", "fl.server_lr=0.5"],
], ids=["forecast-lstm", "next-token-gru-server-lr"])
def test_fedavg_one_full_batch_step_equals_centralised_step(overrides: list[str]) -> None:
    lr = 0.3
    config = load_config(overrides=[*overrides, "train.optimizer=sgd", f"train.lr={lr}", "train.epochs=1",
                                    "train.batch_size=100000", "fl.rounds=1", "fl.clients_per_round=99",
                                    "protection.clip=1000"])
    data = build_federated(config.data, config.seed)
    sizes = [len(c.train) for c in data.clients]
    assert len(set(sizes)) > 1, "clients should hold different amounts of data so the weights matter"
    result = run_fedavg(config, keep_reports=True)
    record = result.rounds[0]
    assert record["survivors"] == len(data.clients) and record["protection"] == "plaintext"
    assert record["verifier_max_abs_error"] == 0.0 and record["clipped_fraction"] == 0.0
    expected = _centralised_step(config, lr * config.fl.server_lr)
    initial = flatten(build_model(data.model_spec(config.model), config.seed))
    assert np.abs(expected - initial).max() > 1e-4  # the step is not trivially small
    np.testing.assert_allclose(result.vector, expected, rtol=1e-5, atol=2e-7)
    assert len(result.reports) == 1


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_next_token_loss_falls_on_embedded_default(cell: str) -> None:
    config = load_config(overrides=[f"model.cell={cell}"])
    assert (config.fl.rounds, config.fl.clients_per_round, config.data.source) == (5, 5, "stdlib-docstrings")
    result = run_fedavg(config)
    losses = [r["metrics"]["loss"] for r in result.rounds]
    initial = result.summary["initial_metrics"]["loss"]
    assert len(losses) == 5 and all(r["survivors"] == 5 for r in result.rounds)
    assert losses[-1] < losses[0] < initial
    assert losses[-1] < initial - 0.5
    assert result.rounds[-1]["metrics"]["accuracy"] > result.summary["initial_metrics"]["accuracy"]


def test_dropouts_rejections_and_aborts_are_recorded(tmp_path: Path) -> None:
    config = load_config(overrides=[*TINY, "fl.rounds=3", "fl.clients_per_round=4", "fl.drop_prob=0.4"])

    def tamper(phase: str, client: int, reply: bytes) -> bytes:
        return b"garbage" if client == 2 else reply

    result = run_fedavg(config, tmp_path / "run", tamper=tamper)
    lines = [json.loads(x) for x in (tmp_path / "run" / "rounds.jsonl").read_text().splitlines()]
    assert [r["round"] for r in lines] == [1, 2, 3] and lines == result.rounds
    dropped = [(r["round"], cid, v) for r in lines for cid, v in r["dropped"].items()]
    assert dropped, "drop_prob=0.4 over 12 client-rounds dropped nobody"
    assert all(v["reason"] == "injected dropout" and v["phase"] == "upload" for _, _, v in dropped)
    for r in lines:
        if "2" not in r["dropped"]:
            assert r["rejected"]["2"]["phase"] == "upload" and r["rejected"]["2"]["reason"]
        assert "2" not in map(str, r["survivor_ids"])
        assert r["survivors"] == 4 - len(r["dropped"]) - len(r["rejected"])
        assert r["verifier_max_abs_error"] == 0.0
    transcript = json.loads((tmp_path / "run" / "transcripts" / "round_001.json").read_text())
    entry = transcript["messages"][0]
    assert set(entry) == {"phase", "sender", "recipient", "kind", "size", "hmac_sha256"}

    aborted = run_fedavg(load_config(overrides=[*TINY, "fl.rounds=2",
                                                "protection.options.plaintext.min_clients=99"]))
    assert all(r["aborted"] and "needed" in r["aborted"] and r["survivors"] == 0 for r in aborted.rounds)
    data = build_federated(aborted.config.data, aborted.config.seed)
    initial = flatten(build_model(data.model_spec(aborted.config.model), aborted.config.seed))
    assert np.array_equal(aborted.vector, initial)  # an aborted round leaves the model unchanged
    assert aborted.rounds[-1]["metrics"]["loss"] == pytest.approx(aborted.summary["initial_metrics"]["loss"])


def test_resume_after_kill_gives_every_round_once_and_the_same_model(tmp_path: Path) -> None:
    config = load_config(overrides=[*TINY, "fl.rounds=6"])
    straight = run_fedavg(config, tmp_path / "straight")

    killed = tmp_path / "killed"
    first = run_fedavg(config, killed, stop_after=3)
    assert [r["round"] for r in first.rounds] == [1, 2, 3] and first.summary["status"] == "stopped"
    rounds_file = killed / "rounds.jsonl"
    # a kill between writing round 4's line and its checkpoint, then a torn write of round 5's line
    fourth = json.dumps({**first.rounds[-1], "round": 4})
    with rounds_file.open("a") as handle:
        handle.write(fourth + "\n" + '{"round": 5, "protec')
    with pytest.raises(ConfigError, match="already holds a run"):
        run_fedavg(config, killed)
    with pytest.raises(ConfigError, match="differs"):
        run_fedavg(load_config(overrides=[*TINY, "fl.rounds=6", "train.lr=0.02"]), killed, resume=True)

    resumed = run_fedavg(config, killed, resume=True)
    lines = [json.loads(x) for x in rounds_file.read_text().splitlines()]
    assert [r["round"] for r in lines] == [1, 2, 3, 4, 5, 6]
    assert resumed.summary["status"] == "complete" and resumed.summary["resumed_from_round"] == 3
    np.testing.assert_array_equal(resumed.vector, straight.vector)
    assert [r["metrics"] for r in lines] == [r["metrics"] for r in straight.rounds]
    assert [r["sampled"] for r in lines] == [r["sampled"] for r in straight.rounds]
    checkpoint = json.loads((killed / "checkpoint.json").read_text())
    assert checkpoint["round"] == 6
    np.testing.assert_array_equal(decode_vector(checkpoint["vector"]), straight.vector)
    summary = json.loads((killed / "summary.json").read_text())
    assert summary["seed"] == config.seed and summary["versions"]["torch"] and summary["rounds_completed"] == 6

    again = run_fedavg(config, killed, resume=True)  # nothing left to do: no duplicate lines
    assert [r["round"] for r in again.rounds] == [1, 2, 3, 4, 5, 6]
    model = again.model()
    load_flat(model, again.vector)


def test_on_round_hook_can_stop_and_sees_reports(tmp_path: Path) -> None:
    seen: list[int] = []

    def hook(record: dict[str, Any], report: Any) -> None:
        seen.append(record["round"])
        assert report is not None and report.server_view and report.upload_total(report.participants[0]) > 0
        if record["round"] == 2:
            raise StopRun

    result = run_fedavg(load_config(overrides=[*TINY, "fl.rounds=4"]), tmp_path / "r", on_round=hook,
                        record_server_view=True)
    assert seen == [1, 2] and len(result.rounds) == 2


def test_plan_and_sampling_checks() -> None:
    with pytest.raises(ConfigError, match="round"):
        run_fedavg(load_config(overrides=[*TINY, "fl.rounds=3", "plan='1-2:plaintext'"]))
    poisson = run_fedavg(load_config(overrides=[*TINY, "fl.rounds=2", "fl.sampling=poisson", "fl.sample_rate=0.5"]))
    assert len(poisson.rounds) == 2
    for r in poisson.rounds:
        assert r["aborted"] == "no client was sampled" if not r["sampled"] else r["survivors"] == len(r["sampled"])


def test_protocol_persists_while_the_protection_stays_and_is_recreated_on_switch(monkeypatch) -> None:
    import privfed.experiment.fedavg as fedavg

    created: list[str] = []
    seen: list[tuple[int, str, int, int]] = []
    real_create, real_run_round = fedavg.registry.create, fedavg.run_round

    def create(name: str, options: Any = None) -> Any:
        created.append(name)
        assert options["max_weight"] >= 1 and options["clip"] == 1.0
        return real_create(name, options)

    def run_round(protocol: Any, round_id: int, updates: Any, **kw: Any) -> Any:
        seen.append((round_id, protocol.name, id(protocol), id(kw["client_states"])))
        return real_run_round(protocol, round_id, updates, **kw)

    monkeypatch.setattr(fedavg.registry, "create", create)
    monkeypatch.setattr(fedavg, "run_round", run_round)
    import privfed.threat.plan as plan  # the plan check builds each protocol once to validate its options

    monkeypatch.setattr(plan, "_invalid_options", lambda name, opts: None)
    result = run_fedavg(load_config(overrides=[*TINY, "fl.rounds=5", "plan='1-2:plaintext,3:dp,4-5:plaintext'"]))
    assert created == ["plaintext", "dp", "plaintext"]
    assert [name for _, name, _, _ in seen] == ["plaintext", "plaintext", "dp", "plaintext", "plaintext"]
    ids = [pid for _, _, pid, _ in seen]
    assert ids[0] == ids[1] and ids[3] == ids[4] and ids[1] != ids[3]  # same instance per stretch, new on switch
    states = [sid for _, _, _, sid in seen]
    assert states[0] == states[1] == states[3] == states[4] != states[2]  # one client_states dict per name
    eps = [r["epsilon_model"] for r in result.rounds]
    assert eps[:2] == [None, None] and eps[2] == "inf"  # DP after un-noised releases: no finite claim
    assert result.rounds[2]["dp_events"]["model"]["user"]["mechanism"] == "gaussian"
    assert result.rounds[2]["dp_events"]["server"]["user"]["mechanism"] == "none"  # central DP: the server sees all


def test_dp_epsilon_grows_and_survives_resume(tmp_path: Path) -> None:
    pytest.importorskip("dp_accounting")
    config = load_config(overrides=[*TINY, "fl.rounds=2", "plan=dp"])
    straight = run_fedavg(config)
    eps = [r["epsilon_model"] for r in straight.rounds]
    assert all(isinstance(e, float) for e in eps) and 0 < eps[0] < eps[1]
    assert all(r["epsilon_unit"] == "user" and r["epsilon_server"] == "inf" for r in straight.rounds)
    run_fedavg(config, tmp_path / "dp", stop_after=1)
    resumed = run_fedavg(config, tmp_path / "dp", resume=True)
    assert [r["epsilon_model"] for r in resumed.rounds] == pytest.approx(eps)


def test_epsilon_target_sets_the_noise_multiplier_over_the_planned_rounds() -> None:
    """Target mode: [threat] epsilon with no noise_multiplier configured -> the run ends at (just under) the target."""
    from privfed.fl.config import load_config
    from privfed.experiment.fedavg import run_fedavg

    config = load_config(None, ["fl.rounds=3", "fl.clients_per_round=3", "plan=dp", "threat.server=trusted",
                                "threat.epsilon=6.0", "model.hidden=8", "model.embedding=4",
                                "data.max_chars_per_client=800", "train.max_batches=1"])
    result = run_fedavg(config)
    z = result.summary["noise_multiplier_from_target"]["dp"]
    assert z > 0.5
    epsilon = result.rounds[-1]["epsilon_model"]
    assert 5.5 < epsilon <= 6.0 + 1e-3
