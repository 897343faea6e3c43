"""Batched local training (privfed.fl.batched) gives the sequential trainer's result within float tolerance."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from protocols.errors import ConfigError
from privfed.experiment.fedavg import run_fedavg
from privfed.fl.batched import supports, train_batched
from privfed.fl.config import DataConfig, TrainConfig, load_config
from privfed.fl.data import build_federated
from privfed.fl.models import ModelSpec, ParamLayout, build_model, flatten
from privfed.fl.train import train_standard

SMALL = dict(hidden=8, embedding=4)


def _data(task: str):
    if task == "forecast":
        config = DataConfig(source="synthetic-series", task="forecast", series_clients=5, series_length=60,
                            seq_len=8)
    else:
        config = DataConfig(task=task, modules=("json", "re", "difflib", "argparse", "typing"),
                            max_chars_per_client=1200, seq_len=12, partition="iid", clients=7)
    return build_federated(config, seed=3)


def _compare(data, spec: ModelSpec, local: TrainConfig, atol: float) -> None:
    model = build_model(spec, 0)
    clients = [c.train for c in data.clients]
    seeds = [1000 + i for i in range(len(clients))]
    sequential = [train_standard(copy.deepcopy(model), c, local, {"seed": s}) for c, s in zip(clients, seeds)]
    batched = train_batched(spec, ParamLayout.of(model), flatten(model), clients, local, seeds, chunk=3)
    assert len(batched) == len(sequential)
    moved = max(float(np.abs(u).max()) for u, _, _ in sequential)
    assert moved > 10 * atol  # the clients really trained: the comparison below can fail
    for (u1, n1, m1), (u2, n2, m2) in zip(sequential, batched):
        assert n1 == n2 and m1["steps"] == m2["steps"]
        np.testing.assert_allclose(u2, u1, atol=atol, rtol=0)
        assert m2["train_loss"] == pytest.approx(m1["train_loss"], abs=1e-4)


@pytest.mark.parametrize("cell,optimizer,layers", [("lstm", "adam", 1), ("gru", "sgd", 2), ("lstm", "sgd", 2),
                                                   ("gru", "adam", 1)])
def test_next_token_matches_sequential(cell: str, optimizer: str, layers: int) -> None:
    data = _data("next-token")
    spec = data.model_spec(load_config(None, [f"model.cell={cell}", f"model.layers={layers}", "model.hidden=8",
                                              "model.embedding=4"]).model)
    local = TrainConfig(epochs=2, batch_size=4, optimizer=optimizer, lr=0.05, momentum=0.9 if optimizer == "sgd"
                        else 0.0, weight_decay=0.01, max_batches=3)
    # Adam divides by sqrt(v): a near-zero gradient entry makes the step sensitive to summation order
    _compare(data, spec, local, atol=2e-4 if optimizer == "adam" else 1e-5)


@pytest.mark.parametrize("task", ["classification", "forecast"])
def test_other_tasks_match_sequential(task: str) -> None:
    data = _data(task)
    spec = data.model_spec(load_config(None, ["model.hidden=8", "model.embedding=4"]).model)
    _compare(data, spec, TrainConfig(epochs=1, batch_size=5, optimizer="sgd", lr=0.1, max_batches=2), atol=1e-5)


def test_fedavg_rounds_equal_with_and_without_batching() -> None:
    config = load_config(None, ["model.hidden=8", "model.embedding=4", "data.modules=['json','re']",
                                "fl.rounds=2", "fl.clients_per_round=6", "train.max_batches=2",
                                "fl.transcripts=false"])
    data = build_federated(config.data, config.seed)
    batched = run_fedavg(config, None, dataset=data, batched_training=True)
    sequential = run_fedavg(config, None, dataset=data)
    np.testing.assert_allclose(batched.vector, sequential.vector, atol=5e-4)
    assert not np.allclose(batched.vector, flatten(build_model(data.model_spec(config.model), config.seed)))
    for a, b in zip(batched.rounds, sequential.rounds):
        assert a["sampled"] == b["sampled"]
        assert a["metrics"]["loss"] == pytest.approx(b["metrics"]["loss"], abs=1e-3)


def test_refuses_what_it_does_not_cover() -> None:
    spec = ModelSpec("next-token", vocab_size=5, output_size=5, layers=2, dropout=0.5, **SMALL)
    assert not supports(spec) and not supports(ModelSpec("next-token", vocab_size=5, output_size=5,
                                                         dp_compatible=True, **SMALL))
    good = ModelSpec("next-token", vocab_size=5, output_size=5, **SMALL)
    model = build_model(good, 0)
    data = _data("next-token").clients[0].train
    with pytest.raises(ConfigError, match="seeds"):
        train_batched(good, ParamLayout.of(model), flatten(model), [data], TrainConfig(), [])
    with pytest.raises(ConfigError, match="vector"):
        train_batched(good, ParamLayout.of(model), np.zeros(3), [data], TrainConfig(), [0])
    with pytest.raises(ConfigError, match="dropout"):
        train_batched(spec, ParamLayout.of(model), flatten(model), [data], TrainConfig(), [0])
