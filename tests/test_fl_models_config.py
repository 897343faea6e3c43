"""privfed.fl models (flat vectors and layouts) and configuration (TOML, overrides, validation)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from protocols.errors import ConfigError
from privfed.fl.config import ExperimentConfig, config_from_table, default_table, load_config
from privfed.fl.models import ModelSpec, ParamLayout, build_model, flatten, load_flat, task_loss

torch.set_num_threads(1)


def _spec(task: str = "next-token", cell: str = "lstm", **kw: object) -> ModelSpec:
    base: dict[str, object] = dict(task=task, cell=cell, layers=2, hidden=8, embedding=4)
    if task == "forecast":
        base.update(input_channels=3, output_size=3)
    else:
        base.update(vocab_size=11, output_size=11 if task == "next-token" else 4)
    base.update(kw)
    return ModelSpec(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("task", ["next-token", "classification", "forecast"])
def test_flatten_round_trip_and_shapes(cell: str, task: str) -> None:
    model = build_model(_spec(task, cell), seed=1)
    vector = flatten(model)
    layout = ParamLayout.of(model)
    assert vector.dtype == np.float32 and vector.shape == (layout.size,)
    assert layout.names == tuple(n for n, _ in model.named_parameters())
    other = build_model(_spec(task, cell), seed=2)
    assert not np.array_equal(flatten(other), vector)
    load_flat(other, vector, layout)
    assert np.array_equal(flatten(other), vector)
    for (name, p), (name2, q) in zip(model.named_parameters(), other.named_parameters()):
        assert name == name2 and torch.equal(p, q)
    assert ParamLayout.from_json(layout.to_json()) == layout
    inputs = torch.randn(2, 5, 3) if task == "forecast" else torch.randint(0, 11, (2, 5))
    out = model(inputs)
    expected = {"next-token": (2, 5, 11), "classification": (2, 4), "forecast": (2, 3)}[task]
    assert tuple(out.shape) == expected


def test_build_model_is_deterministic_and_leaves_global_rng_alone() -> None:
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = flatten(build_model(_spec(), seed=7))
    after = torch.rand(1)
    assert np.array_equal(a, flatten(build_model(_spec(), seed=7)))
    assert torch.equal(before, after)


def test_layout_and_length_are_checked() -> None:
    lstm, gru = build_model(_spec(cell="lstm"), 0), build_model(_spec(cell="gru"), 0)
    with pytest.raises(ConfigError, match="layout"):
        load_flat(gru, flatten(gru), ParamLayout.of(lstm))
    with pytest.raises(ConfigError, match="shape"):
        load_flat(lstm, flatten(lstm)[:-1])
    with pytest.raises(ConfigError, match="shape"):
        load_flat(lstm, flatten(gru))
    bad = flatten(lstm)
    bad[3] = np.nan
    with pytest.raises(ConfigError, match="NaN"):
        load_flat(lstm, bad)
    wider = build_model(_spec(hidden=9), 0)
    with pytest.raises(ConfigError):
        load_flat(wider, flatten(lstm), ParamLayout.of(lstm))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_opacus_layers_flatten_by_named_parameters(cell: str) -> None:
    pytest.importorskip("opacus")
    model = build_model(_spec(cell=cell, dp_compatible=True), 0)
    plain = build_model(_spec(cell=cell), 0)
    layout = ParamLayout.of(model)
    assert layout.size == ParamLayout.of(plain).size  # same parameter count, different names
    assert len(model.state_dict()) >= len(layout.names)
    vector = np.arange(layout.size, dtype=np.float32) / layout.size
    load_flat(model, vector, layout)
    assert np.array_equal(flatten(model), vector)
    out = model(torch.randint(0, 11, (2, 5)))
    assert torch.isfinite(task_loss("next-token", out, torch.randint(0, 11, (2, 5))))


def test_model_spec_validates() -> None:
    with pytest.raises(ConfigError):
        _spec(cell="rnn")
    with pytest.raises(ConfigError):
        _spec(task="forecast", input_channels=0)
    with pytest.raises(ConfigError):
        _spec(vocab_size=1)


def test_default_config_loads_and_round_trips() -> None:
    config = load_config()
    assert config.data.source == "stdlib-docstrings" and config.plan == "plaintext"
    assert config_from_table(config.to_table()) == config
    assert "data" in default_table()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.seed = 3  # type: ignore[misc]


def test_overrides_and_seed(tmp_path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('plan = "plaintext"\n[fl]\nrounds = 4\n[model]\ncell = "gru"\n')
    config = load_config(path, ["fl.rounds=3", "model.hidden=32", "protection.options.plaintext.min_clients=2",
                                "data.modules=['re', 'json']", "threat.server=trusted"], seed=9)
    assert (config.fl.rounds, config.model.cell, config.model.hidden, config.seed) == (3, "gru", 32, 9)
    assert config.protection.options == {"plaintext": {"min_clients": 2}}
    assert config.protection.for_protection("plaintext", 7) == {"max_weight": 7.0, "clip": 1.0, "min_clients": 2}
    assert config.data.modules == ("re", "json")
    assert config.threat == {"server": "trusted"}
    assert isinstance(load_config(overrides=["fl.server_lr=1"]).fl.server_lr, float)


@pytest.mark.parametrize("override, key", [
    ("fl.rounds=0", "fl.rounds"), ("model.cell=rnn", "model.cell"), ("fl.bogus=1", "fl.bogus"),
    ("train.lr=fast", "train.lr"), ("train.epochs=1.5", "train.epochs"), ("bogus=1", "bogus"),
    ("data.partition=iid", "data.clients"), ("protection.options.plaintext.clip=2", "protection.options.plaintext.clip"),
    ("fl.sampling=poisson", "fl.sample_rate"), ("data.task=forecast", "data.task"), ("noequals", "override"),
])
def test_bad_config_names_the_key(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(overrides=[override])


def test_bad_toml_file(tmp_path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[fl\nrounds = 2")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    assert isinstance(ExperimentConfig(), ExperimentConfig)
