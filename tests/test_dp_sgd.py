"""DP-SGD inside a client: Opacus per-sample gradients on a tiny DPLSTM, update over named_parameters."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("opacus")
torch = pytest.importorskip("torch")

from privfed.fl.config import TrainConfig  # noqa: E402
from privfed.fl.data import ClientDataset  # noqa: E402
from privfed.fl.dpsgd import train_dpsgd  # noqa: E402
from privfed.fl.models import ModelSpec, ParamLayout, build_model  # noqa: E402
from privfed.runtime.local import run_round  # noqa: E402
from protocols import registry  # noqa: E402
from protocols.base import ClientUpdate  # noqa: E402
from protocols.errors import ConfigError  # noqa: E402


def _data(n: int = 24) -> ClientDataset:
    generator = torch.Generator().manual_seed(0)  # test data only
    inputs = torch.randint(0, 12, (n, 6), generator=generator)
    return ClientDataset("c0", "next-token", inputs, torch.roll(inputs, -1, 1))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_dpsgd_update_is_over_named_parameters_and_reported(cell: str) -> None:
    model = build_model(ModelSpec("next-token", cell, 1, 8, 4, 0.0, 12, 0, 12, True), seed=0)
    layout = ParamLayout.of(model)
    if cell == "lstm":  # DPLSTM reports its RNN weights twice in state_dict(): never aggregate over it
        assert sum(v.numel() for v in model.state_dict().values()) > layout.size
    protocol = registry.create("dp-sgd", {"max_weight": 24.0, "clip": 1.0, "noise_multiplier": 1.0,
                                          "clip_norm": 1.0})
    update, n, metrics = train_dpsgd(model, _data(), TrainConfig(epochs=1, batch_size=8),
                                     {"seed": 1, "round": 1, "client_id": 0, "protocol": protocol})
    assert update.dtype == np.float32 and update.shape == (layout.size,) and np.isfinite(update).all()
    assert n == 24 and metrics["steps"] == 3 and metrics["sample_rate"] == pytest.approx(8 / 24)
    assert metrics["dp_event"]["level"] == "record" and metrics["epsilon_round_rdp"] > 0
    assert np.any(update != 0)
    result = run_round(protocol, 1, {0: ClientUpdate(update, float(n)),
                                     1: ClientUpdate(np.zeros_like(update), 5.0)}).result
    event = result.info["dp_events"]["model"]["record"]
    assert event["mechanism"] == "none"  # client 1 never reported DP-SGD training: no bound, said so
    protocol.report_training(1, 1, 1.0, 0.5, 2)
    event = protocol.round_events(1, (0, 1))["model"]["record"]
    assert event["sample_rate"] == 0.5 and event["count"] == 3 and event["noise_multiplier"] == 1.0


def test_plain_lstm_is_refused() -> None:
    model = build_model(ModelSpec("next-token", "lstm", 1, 8, 4, 0.0, 12, 0, 12, False), seed=0)
    with pytest.raises(ConfigError, match="DPLSTM"):
        train_dpsgd(model, _data(), TrainConfig(epochs=1, batch_size=8),
                    {"seed": 1, "round": 1, "client_id": 0, "noise_multiplier": 1.0, "clip_norm": 1.0})


def test_dpsgd_accepts_a_model_handed_over_in_eval_mode() -> None:
    """The FedAvg loop copies the global model after evaluating it (eval mode); DP-SGD must still train it."""
    model = build_model(ModelSpec("next-token", "gru", 1, 8, 4, 0.0, 12, 0, 12, True), seed=0)
    model.eval()
    protocol = registry.create("dp-sgd", {"max_weight": 24.0, "clip": 1.0})
    update, _, _ = train_dpsgd(model, _data(), TrainConfig(epochs=1, batch_size=8),
                               {"seed": 1, "round": 1, "client_id": 0, "protocol": protocol})
    assert np.any(update != 0)
