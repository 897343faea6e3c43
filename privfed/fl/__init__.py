"""Machine learning only: configs, LSTM/GRU models, datasets and partitioners, local training (standard and DP-SGD).

This layer imports neither the threat layer nor the runtime: the FedAvg loop that combines them with a resolved plan
is an orchestration and lives above, in :mod:`privfed.experiment`. Entry point here: :func:`load_config` (TOML +
``key=value`` overrides). Users' own data: :mod:`~privfed.fl.tabular` (CSV exports), :mod:`~privfed.fl.userdata`
and :mod:`~privfed.fl.textdata` (samples), :mod:`~privfed.fl.leaf` (LEAF JSON), :mod:`~privfed.fl.scaling`
(statistics combined from clients), :mod:`~privfed.fl.metrics` (accuracy, macro-F1, MAE/RMSE in the data's units).
"""

from .config import ExperimentConfig, load_config
from .data import FederatedDataset, build_federated
from .models import ModelSpec, ParamLayout, SequenceModel, build_model, flatten, load_flat

__all__ = [
    "ExperimentConfig",
    "FederatedDataset",
    "ModelSpec",
    "ParamLayout",
    "SequenceModel",
    "build_federated",
    "build_model",
    "flatten",
    "load_config",
    "load_flat",
]
