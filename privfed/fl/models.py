"""LSTM and GRU sequence models and their flat float32 parameter vectors.

One :class:`SequenceModel` serves three tasks:

* ``next-token`` — token ids ``(B, T)`` -> logits ``(B, T, vocab)``; the target is the input shifted by one;
* ``classification`` — token ids ``(B, T)`` or values ``(B, T, C)`` -> logits ``(B, classes)`` from the last
  hidden state; with ``masked=True`` from each sequence's last *real* step instead (variable-length sequences are
  right-padded: token inputs with ``pad_index``, value inputs carry a final 0/1 presence channel). Because the
  recurrence runs forward, outputs before a sequence's end never see its padding, so this is exact masking and
  works with Opacus' DP layers (which do not accept packed sequences);
* ``forecast`` — values ``(B, T, C)`` -> the next step's target columns ``(B, K)`` from the last hidden state
  (MSE loss).

Next-token targets equal to -100 (padding) are ignored by the loss and the accuracy.

Federated aggregation moves parameters as one flat float32 vector in ``named_parameters()`` order;
:class:`ParamLayout` (names and shapes) is checked whenever a vector is loaded back, so a vector from a model with
another shape or parameter order is refused rather than silently mis-assigned. ``named_parameters`` and not
``state_dict``: Opacus' ``DPLSTM`` exposes each weight twice in ``state_dict``.

With ``dp_compatible=True`` the recurrent layer is Opacus' ``DPLSTM``/``DPGRU`` (per-sample gradients for DP-SGD);
its parameter names differ from ``torch.nn.LSTM``'s, so a run fixes the flavour once, before round 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from protocols.errors import ConfigError

from .config import CELLS, TASKS, ModelConfig

__all__ = ["ModelSpec", "SequenceModel", "ParamLayout", "build_model", "flatten", "load_flat", "task_loss",
           "count_correct"]


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to build a model: the configured shape plus the data's input/output sizes."""

    task: str
    cell: str = "lstm"
    layers: int = 1
    hidden: int = 64
    embedding: int = 16
    dropout: float = 0.0
    vocab_size: int = 0
    input_channels: int = 0
    output_size: int = 0
    dp_compatible: bool = False
    pad_index: int = -1
    masked: bool = False

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"model task must be one of {TASKS}, got {self.task!r}")
        if self.cell not in CELLS:
            raise ConfigError(f"model.cell must be one of {CELLS}, got {self.cell!r}")
        if self.layers < 1 or self.hidden < 1 or self.embedding < 1:
            raise ConfigError("model.layers, model.hidden and model.embedding must be >= 1")
        if not 0 <= self.dropout < 1:
            raise ConfigError("model.dropout must be in [0, 1)")
        if self.task == "forecast":
            if self.input_channels < 1:
                raise ConfigError("a forecasting model needs input_channels >= 1")
        elif self.input_channels < 1 and self.vocab_size < 2:
            raise ConfigError("a token model needs vocab_size >= 2")
        if self.masked and self.task != "classification":
            raise ConfigError("masked (variable-length) inputs are for classification only")
        if self.masked and self.input_channels < 1 and not 0 <= self.pad_index < self.vocab_size:
            raise ConfigError(f"masked token inputs need 0 <= pad_index < vocab_size, got {self.pad_index}")
        if self.masked and self.input_channels == 1:
            raise ConfigError("masked value inputs need a presence channel besides at least one value channel")
        if self.output_size < 1:
            raise ConfigError("output_size must be >= 1")

    @classmethod
    def from_config(cls, config: ModelConfig, task: str, *, vocab_size: int = 0, input_channels: int = 0,
                    output_size: int = 0, dp_compatible: bool = False, pad_index: int = -1,
                    masked: bool = False) -> "ModelSpec":
        return cls(task, config.cell, config.layers, config.hidden, config.embedding, config.dropout, vocab_size,
                   input_channels, output_size, dp_compatible, pad_index, masked)


def _recurrent(spec: ModelSpec, input_size: int) -> nn.Module:
    dropout = spec.dropout if spec.layers > 1 else 0.0
    if spec.dp_compatible:
        from opacus.layers import DPGRU, DPLSTM  # optional dependency, only for DP-SGD
        cls: Any = DPLSTM if spec.cell == "lstm" else DPGRU
    else:
        cls = nn.LSTM if spec.cell == "lstm" else nn.GRU
    return cls(input_size, spec.hidden, num_layers=spec.layers, batch_first=True, dropout=dropout)


class SequenceModel(nn.Module):
    """Embedding (token tasks) -> LSTM/GRU -> linear head."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        if spec.input_channels > 0:
            self.embed: nn.Module | None = None
            input_size = spec.input_channels
        else:
            self.embed = nn.Embedding(spec.vocab_size, spec.embedding)
            input_size = spec.embedding
        self.rnn = _recurrent(spec, input_size)
        self.head = nn.Linear(spec.hidden, spec.output_size)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = self.embed(inputs) if self.embed is not None else inputs
        out, _ = self.rnn(x)
        if self.spec.task == "next-token":
            return self.head(out)
        if self.spec.masked:
            real = inputs[..., -1] > 0 if self.embed is None else inputs != self.spec.pad_index
            last = (real.sum(dim=1) - 1).clamp(min=0)
            return self.head(out[torch.arange(out.shape[0]), last, :])
        return self.head(out[:, -1, :])


def build_model(spec: ModelSpec, seed: int) -> SequenceModel:
    """A model initialised deterministically from ``seed`` (the experiment seed, never a secret)."""
    devices: list[Any] = []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        return SequenceModel(spec)


def task_loss(task: str, outputs: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy for token tasks (per token for next-token), mean squared error for forecasting."""
    if task == "next-token":
        return nn.functional.cross_entropy(outputs.reshape(-1, outputs.shape[-1]), targets.reshape(-1),
                                           reduction=reduction)
    if task == "classification":
        return nn.functional.cross_entropy(outputs, targets, reduction=reduction)
    return nn.functional.mse_loss(outputs, targets, reduction=reduction)


def count_correct(task: str, outputs: torch.Tensor, targets: torch.Tensor) -> tuple[int, int]:
    """(correct predictions, predictions) for token tasks; (0, 0) for forecasting."""
    if task == "forecast":
        return 0, 0
    predicted = outputs.argmax(dim=-1)
    real = targets != -100
    return int(((predicted == targets) & real).sum()), int(real.sum())


@dataclass(frozen=True)
class ParamLayout:
    """Names and shapes of a model's parameters in ``named_parameters()`` order."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    @classmethod
    def of(cls, model: nn.Module) -> "ParamLayout":
        named = list(model.named_parameters())
        return cls(tuple(n for n, _ in named), tuple(tuple(p.shape) for _, p in named))

    @property
    def size(self) -> int:
        return int(sum(int(np.prod(s)) for s in self.shapes))

    def to_json(self) -> dict[str, Any]:
        return {"names": list(self.names), "shapes": [list(s) for s in self.shapes]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ParamLayout":
        return cls(tuple(data["names"]), tuple(tuple(int(d) for d in s) for s in data["shapes"]))


def flatten(model: nn.Module) -> np.ndarray:
    """All parameters as one float32 vector in ``named_parameters()`` order (a copy)."""
    with torch.no_grad():
        parts = [p.detach().reshape(-1).to(torch.float32).cpu() for _, p in model.named_parameters()]
        return torch.cat(parts).numpy().copy() if parts else np.zeros(0, dtype=np.float32)


def load_flat(model: nn.Module, vector: np.ndarray, layout: ParamLayout | None = None) -> None:
    """Write ``vector`` into the model's parameters, after checking the layout and the length."""
    own = ParamLayout.of(model)
    if layout is not None and layout != own:
        mismatch = next((f"{a}{list(sa)} vs {b}{list(sb)}" for a, sa, b, sb
                         in zip(layout.names, layout.shapes, own.names, own.shapes) if (a, sa) != (b, sb)),
                        f"{len(layout.names)} vs {len(own.names)} parameters")
        raise ConfigError(f"parameter layout does not match the model: {mismatch}")
    vector = np.asarray(vector)
    if vector.ndim != 1 or vector.size != own.size:
        raise ConfigError(f"parameter vector has shape {vector.shape}, the model needs ({own.size},)")
    if not np.isfinite(vector).all():
        raise ConfigError("parameter vector holds NaN or infinite entries")
    flat = torch.from_numpy(np.ascontiguousarray(vector, dtype=np.float32))
    offset = 0
    with torch.no_grad():
        for _, param in model.named_parameters():
            n = param.numel()
            param.copy_(flat[offset:offset + n].view_as(param))
            offset += n
