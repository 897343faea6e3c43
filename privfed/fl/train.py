"""Local training on one client, and evaluation.

A trainer is a function with this signature (the FedAvg loop picks one per round from the protocol's class
attribute ``client_training``)::

    trainer(model: torch.nn.Module, data: ClientDataset, local: TrainConfig,
            options: Mapping[str, Any]) -> tuple[np.ndarray, int, dict[str, Any]]

* ``model`` already holds the global parameters of the round (a fresh :class:`~privfed.fl.models.SequenceModel`
  per client; with DP-SGD it is built with ``dp_compatible=True``, i.e. Opacus ``DPLSTM``/``DPGRU`` layers). The
  trainer may train it in place (wrapping it in Opacus' ``GradSampleModule`` is fine), but the update must be
  taken over the **unwrapped** model's ``named_parameters()`` so that its layout equals the global vector's.
* ``data`` is the client's train :class:`~privfed.fl.data.ClientDataset` (``inputs``/``targets`` tensors,
  ``batches()``, ``tensor_dataset()`` for a ``DataLoader``); ``data.task`` selects the loss via
  :func:`~privfed.fl.models.task_loss`.
* ``local`` is the ``[train]`` config (epochs, batch size, optimiser, lr, momentum, weight decay, max batches).
* ``options`` always holds ``seed`` (int: data order only, derived from the experiment seed, round and client —
  never use it for noise), ``round`` and ``client_id``; for DP-SGD it also holds ``protocol`` (the protocol
  instance) and every key of ``[protection.options.<name>]`` for the round's protection.
* returns ``(update, n_samples, metrics)``: ``update = local - global`` as a flat float32 vector in
  ``named_parameters()`` order, the FedAvg weight (the client's sample count), and JSON-able metrics
  (``train_loss`` at least; a DP trainer may add its own, e.g. ``dp_event``).

:func:`train_standard` is the plain trainer; ``privfed.fl.dpsgd.train_dpsgd`` (record-level DP-SGD inside each
client) has the same signature and is imported only when a protection with ``client_training = "dp-sgd"`` is used.
"""

from __future__ import annotations

import importlib
import math
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from protocols.errors import ConfigError

from .config import TrainConfig
from .data import ClientDataset
from .metrics import IGNORE, ClassTally, ErrorTally
from .models import flatten, task_loss

__all__ = ["Trainer", "TrainResult", "train_standard", "select_trainer", "evaluate", "make_optimizer"]

TrainResult = tuple[np.ndarray, int, dict[str, Any]]
Trainer = Callable[[nn.Module, ClientDataset, TrainConfig, Mapping[str, Any]], TrainResult]


def make_optimizer(parameters: Any, local: TrainConfig) -> torch.optim.Optimizer:
    """The configured local optimiser (fresh each round: FedAvg carries no optimiser state between rounds)."""
    if local.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=local.lr, momentum=local.momentum, weight_decay=local.weight_decay)
    return torch.optim.Adam(parameters, lr=local.lr, weight_decay=local.weight_decay)


def train_standard(model: nn.Module, data: ClientDataset, local: TrainConfig,
                   options: Mapping[str, Any]) -> TrainResult:
    """Plain local training: ``local.epochs`` passes of shuffled mini-batches; returns (update, n, metrics)."""
    if len(data) == 0:
        raise ConfigError(f"{data.name}: no training samples")
    start = flatten(model)
    generator = torch.Generator().manual_seed(int(options["seed"]))
    optimizer = make_optimizer(model.parameters(), local)
    model.train()
    loss_sum, seen, steps = 0.0, 0, 0
    for _ in range(local.epochs):
        for batch, (inputs, targets) in enumerate(data.batches(local.batch_size, generator)):
            if local.max_batches and batch >= local.max_batches:
                break
            optimizer.zero_grad(set_to_none=True)
            loss = task_loss(data.task, model(inputs), targets)
            loss.backward()
            optimizer.step()
            loss_sum += float(loss.detach()) * len(inputs)
            seen += len(inputs)
            steps += 1
    update = (flatten(model) - start).astype(np.float32)
    return update, len(data), {"train_loss": loss_sum / seen if seen else math.nan, "steps": steps}


def select_trainer(client_training: str) -> Trainer:
    """``"standard"`` -> :func:`train_standard`; ``"dp-sgd"`` -> ``privfed.fl.dpsgd.train_dpsgd``."""
    if client_training == "standard":
        return train_standard
    if client_training == "dp-sgd":
        try:
            module = importlib.import_module("privfed.fl.dpsgd")
        except ModuleNotFoundError as exc:
            if exc.name in ("privfed.fl.dpsgd", "opacus"):
                raise ConfigError(f"DP-SGD client training is unavailable ({exc.name} missing); "
                                  "pip install 'privfed[dp]'") from None
            raise
        return module.train_dpsgd
    raise ConfigError(f"unknown client_training {client_training!r} (standard or dp-sgd)")


def evaluate(model: nn.Module, data: ClientDataset, batch_size: int = 256) -> dict[str, Any]:
    """Mean loss (per real token for next-token) and the task's metrics over ``data``: ``accuracy`` for token
    tasks, plus ``macro_f1`` for classification; ``mae``/``rmse`` for forecasting, in the data's own units when
    ``data.scale`` is set (the standardisation undone), else on the model's scale (see :mod:`privfed.fl.metrics`)."""
    model.eval()
    total, count = 0.0, 0
    classes: ClassTally | None = None
    errors: ErrorTally | None = None
    with torch.no_grad():
        for inputs, targets in data.batches(batch_size):
            outputs = model(inputs)
            if data.task == "forecast":
                units = len(targets)
                if errors is None:
                    std = data.scale.std if data.scale is not None else np.ones(outputs.shape[-1])
                    errors = ErrorTally(std, data.target_names)
                errors.add(outputs.numpy(), targets.numpy())
            else:
                units = int((targets != IGNORE).sum())
                if classes is None:
                    classes = ClassTally(int(outputs.shape[-1]))
                classes.add(outputs.argmax(dim=-1).numpy(), targets.numpy())
            if units:
                total += float(task_loss(data.task, outputs, targets)) * units
                count += units
    metrics: dict[str, Any] = {"loss": total / count if count else math.nan, "samples": len(data)}
    if data.task == "forecast":
        metrics.update(errors.report() if errors is not None else {"mae": math.nan, "rmse": math.nan})
    else:
        metrics["accuracy"] = classes.accuracy() if classes is not None else math.nan
        if data.task == "classification":
            metrics["macro_f1"] = classes.macro_f1() if classes is not None else math.nan
    return metrics
