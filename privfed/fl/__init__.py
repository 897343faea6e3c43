"""Federated learning of LSTM/GRU sequence models: configs, models, datasets and partitioners, local training and
the FedAvg loop that aggregates through any protection of :mod:`protocols` via :mod:`privfed.runtime`.

Entry points: :func:`load_config` (TOML + ``key=value`` overrides) and :func:`run_fedavg` (one run, with a run
directory and ``resume``). ``privfed run`` is the command-line face of the same two calls.
"""

from .config import ExperimentConfig, load_config
from .data import FederatedDataset, build_federated
from .fedavg import FedAvgResult, StopRun, run_fedavg
from .models import ModelSpec, ParamLayout, SequenceModel, build_model, flatten, load_flat

__all__ = [
    "ExperimentConfig",
    "FedAvgResult",
    "FederatedDataset",
    "ModelSpec",
    "ParamLayout",
    "SequenceModel",
    "StopRun",
    "build_federated",
    "build_model",
    "flatten",
    "load_config",
    "load_flat",
    "run_fedavg",
]
