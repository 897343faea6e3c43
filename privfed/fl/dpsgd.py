"""Record-level DP-SGD inside one client: Opacus per-sample gradients, clipping, and CSPRNG noise.

Threat model: protects each *training record* of a client (add/remove one record) against whoever sees that
client's update or any later model — the server, other clients, model users — with (epsilon, delta) from the
Poisson-subsampled Gaussian mechanism composed over the client's steps (dp-accounting, via the privacy ledger). It
does not protect a user's whole data set (use ``dp``/``secagg+dp`` for user-level DP), and it assumes the client runs
this code honestly.

How (Abadi et al. 2016): Opacus' :class:`~opacus.GradSampleModule` computes per-sample gradients (the model must
use ``opacus.layers.DPLSTM``/``DPGRU``: Opacus refuses ``nn.LSTM``/``nn.GRU``); each sample's gradient is clipped
to L2 norm ``clip_norm`` over all parameters; the clipped sum gets Gaussian noise of std ``noise_multiplier *
clip_norm``; the result is divided by the expected batch size. Batches are Poisson samples of the client's records
with rate q = batch_size / n. Two deliberate departures from Opacus' ``make_private``: the Poisson sampling and the
noise come from :class:`protocols.csprng.CSPRNG` (keyed from ``os.urandom``), never a torch generator or the
experiment seed (DESIGN.md section 4; Opacus' own ``secure_mode`` needs torchcsprng); and the update is taken over
the unwrapped model's ``named_parameters()`` (a model holding ``DPLSTM`` reports its RNN weights twice in
``state_dict()``).

Cost: a private step costs several times a plain one (per-sample gradients); the figures are in the run's metrics.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from protocols.csprng import CSPRNG
from protocols.dp.placements import DPOptions
from protocols.errors import ConfigError

from .config import TrainConfig
from .data import ClientDataset
from .models import flatten, task_loss
from .train import TrainResult, make_optimizer

__all__ = ["train_dpsgd", "dp_options_from"]


def dp_options_from(options: Mapping[str, Any]) -> DPOptions:
    """The protocol's validated DP options when the loop passes ``protocol``, else built from the option keys."""
    protocol = options.get("protocol")
    if protocol is not None and isinstance(getattr(protocol, "options", None), DPOptions):
        return protocol.options
    keys = set(DPOptions.__dataclass_fields__)
    return DPOptions(**{k: v for k, v in options.items() if k in keys})


def _per_sample_loss(task: str, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sum over samples of each sample's own mean loss (per-sample gradients are then each sample's gradient)."""
    losses = task_loss(task, outputs, targets, reduction="none")
    return losses.reshape(targets.shape[0], -1).mean(dim=1).sum()


def train_dpsgd(model: nn.Module, data: ClientDataset, local: TrainConfig,
                options: Mapping[str, Any]) -> TrainResult:
    """DP-SGD local training; same signature and return as :func:`privfed.fl.train.train_standard`.

    Metrics add ``dp_event`` (this client's record-level event for the round), ``steps``, ``sample_rate`` and
    ``epsilon_round_rdp`` (this round alone, RDP, at the protocol's delta).
    """
    from opacus import GradSampleModule
    from opacus.validators import ModuleValidator

    n = len(data)
    if n == 0:
        raise ConfigError(f"{data.name}: no training samples")
    dp = dp_options_from(options)
    z, clip = dp.noise_multiplier, dp.clip_norm
    q = min(1.0, local.batch_size / n)
    per_epoch = math.ceil(n / local.batch_size)
    if local.max_batches:
        per_epoch = min(per_epoch, local.max_batches)
    steps = local.epochs * per_epoch
    expected_batch = q * n

    start = flatten(model)
    model.train()  # the loop hands over a copy of the evaluated global model; Opacus validates in training mode
    problems = ModuleValidator.validate(model, strict=False)
    if problems:  # e.g. plain nn.LSTM / nn.GRU: Opacus needs DPLSTM / DPGRU
        raise ConfigError("DP-SGD needs an Opacus-compatible model (DPLSTM/DPGRU): "
                          + "; ".join(str(p) for p in problems))
    try:
        wrapped = GradSampleModule(model, loss_reduction="sum")
    except Exception as exc:  # Opacus names the unsupported layer (e.g. nn.LSTM)
        raise ConfigError(f"DP-SGD needs an Opacus-compatible model (DPLSTM/DPGRU): {exc}") from None
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, local)
    rng = CSPRNG.from_os()
    wrapped.train()
    loss_sum, seen = 0.0, 0
    for _ in range(steps):
        index = torch.from_numpy(np.flatnonzero(rng.uniform(n) < q))
        optimizer.zero_grad(set_to_none=True)
        summed = [torch.zeros_like(p) for p in params]
        if index.numel() > 0:
            inputs, targets = data.inputs[index], data.targets[index]
            loss = _per_sample_loss(data.task, wrapped(inputs), targets)
            with warnings.catch_warnings():  # Opacus' hooks on an embedding input: harmless, noisy
                warnings.filterwarnings("ignore", message="Full backward hook is firing")
                loss.backward()
            grads = [p.grad_sample.reshape(index.numel(), -1) for p in params]
            norms = torch.sqrt(sum((g.double() ** 2).sum(dim=1) for g in grads))
            factors = (clip / (norms + 1e-12)).clamp(max=1.0).to(grads[0].dtype)
            summed = [(factors[:, None] * g).sum(dim=0).reshape(p.shape) for g, p in zip(grads, params)]
            loss_sum += float(loss.detach())
            seen += int(index.numel())
        for p, s in zip(params, summed):
            noise = torch.from_numpy(rng.normal(p.numel(), z * clip).reshape(p.shape)).to(p.dtype)
            p.grad = (s + noise) / expected_batch
            p.grad_sample = None
        optimizer.step()
    wrapped._close()
    update = (flatten(model) - start).astype(np.float32)
    protocol = options.get("protocol")
    if protocol is not None and hasattr(protocol, "report_training"):
        protocol.report_training(int(options["round"]), int(options["client_id"]), z, q, steps)
    event = {"mechanism": "gaussian", "noise_multiplier": z, "sample_rate": q, "count": steps, "level": "record",
             "placement": "dp-sgd"}
    metrics: dict[str, Any] = {"train_loss": loss_sum / seen if seen else math.nan, "steps": steps,
                               "sample_rate": q, "dp_event": event}
    try:
        from protocols.dp.accounting import epsilon_for
        metrics["epsilon_round_rdp"] = epsilon_for(z, q, steps, dp.delta, "rdp")
    except ConfigError:
        pass
    return update, n, metrics
