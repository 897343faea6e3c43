"""End to end on users' own data shapes (small fixtures, a few rounds): forecast errors in the data's units fall,
labelled sequences are classified well above chance, LEAF Shakespeare's loss falls, and the metrics reach
``rounds.jsonl`` and ``summary.json``."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from privfed.experiment.fedavg import run_fedavg
from privfed.fl.config import load_config
from userdata_fixtures import air_quality_csv, labelled_sequences_csv, leaf_shakespeare

torch.set_num_threads(1)

SMALL = ["model.hidden=16", "fl.clients_per_round=10"]


def test_air_quality_forecast_reports_mae_rmse_in_units_that_improve(tmp_path: Path) -> None:
    path = air_quality_csv(tmp_path / "air.csv", hours=200)
    config = load_config(overrides=[*SMALL, "data.source=csv", f"data.path={path}", "data.key_column=station",
                                    "data.time_column=No", "data.task=forecast", "data.missing=ffill",
                                    "data.target_columns=['PM2.5']", "data.seq_len=12", "fl.rounds=4"])
    result = run_fedavg(config, tmp_path / "run")
    initial, final = result.summary["initial_metrics"], result.summary["final_metrics"]
    assert final["mae"] < 0.6 * initial["mae"] and final["rmse"] < initial["rmse"]
    std = float(result.dataset.eval.scale.std[0])
    assert abs(final["rmse"] - std * final["loss"] ** 0.5) < 1e-3 * std  # RMSE = std x sqrt(standardised MSE)
    rounds = [json.loads(line) for line in (tmp_path / "run" / "rounds.jsonl").read_text().splitlines()]
    assert all("mae" in r["metrics"] and "rmse" in r["metrics"] for r in rounds)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["final_metrics"]["mae"] == final["mae"] and summary["data"]["targets"] == ["PM2.5"]


def test_labelled_sequences_are_classified_well_above_chance(tmp_path: Path) -> None:
    path = labelled_sequences_csv(tmp_path / "seq.csv", sequences=300)
    config = load_config(overrides=[*SMALL, "data.source=csv", f"data.path={path}", "data.task=classification",
                                    "data.sequence_column=seq", "data.time_column=when", "data.label_column=label",
                                    "train.epochs=3", "fl.rounds=4"])
    result = run_fedavg(config)
    final = result.summary["final_metrics"]
    assert final["accuracy"] > 0.6 and final["macro_f1"] > 0.5  # three balanced classes: chance is 1/3
    assert any("no 'client' column" in n for n in result.summary["data"]["notes"])


def test_leaf_shakespeare_loss_falls(tmp_path: Path) -> None:
    path = leaf_shakespeare(tmp_path / "shakespeare.json")
    config = load_config(overrides=[*SMALL, "data.source=leaf", f"data.path={path}", "fl.rounds=3", "train.epochs=2"])
    result = run_fedavg(config)
    assert result.summary["final_metrics"]["loss"] < result.summary["initial_metrics"]["loss"] - 0.3
    assert result.summary["warnings"] and "only 3 clients" in result.summary["warnings"][0]
