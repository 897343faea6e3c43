"""Federated datasets: tokenised, windowed samples split into clients, each with train and validation parts, plus a
global evaluation set.

Pipeline (:func:`build_federated`): a source (:mod:`privfed.fl.sources`) gives natural units (a module's
docstrings, a file, a CSV key); text is tokenised (characters or words, vocabulary built from the data with
``<unk>`` at index 0) and cut into windows of ``data.seq_len``; the partitioner (:mod:`privfed.fl.partition`) assigns
samples to clients; each client's samples are shuffled and split into test (pooled into the global evaluation set),
validation and train. Everything is deterministic given the experiment seed (numpy ``default_rng`` streams derived
from it — data only, never a secret path). The vocabulary covers all text, as when a federation agrees a public
character set beforehand.

Sample shapes: next-token ``x, y: int64 (T,)`` (``y`` is ``x`` shifted by one); classification ``x: int64 (T,)``,
``y: int64 ()`` (the unit the window came from); forecast ``x: float32 (T, C)``, ``y: float32 (C,)``.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import torch

from protocols.errors import ConfigError

from . import partition as partitioners
from . import sources
from .config import DataConfig, ModelConfig
from .models import ModelSpec

__all__ = ["ClientDataset", "ClientSplit", "FederatedDataset", "build_federated", "tokenize", "build_vocab", "UNK"]

UNK = "<unk>"
_WORD = re.compile(r"\w+|[^\w\s]")
STREAM_DATA, STREAM_PARTITION, STREAM_SPLIT = 1, 2, 3


@dataclass(frozen=True)
class ClientDataset:
    """Samples as two aligned tensors (``inputs[i]``, ``targets[i]``)."""

    name: str
    task: str
    inputs: torch.Tensor
    targets: torch.Tensor

    def __post_init__(self) -> None:
        if self.inputs.shape[0] != self.targets.shape[0]:
            raise ConfigError(f"{self.name}: {self.inputs.shape[0]} inputs but {self.targets.shape[0]} targets")

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def batches(self, batch_size: int, generator: torch.Generator | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Mini-batches in a shuffled order (``generator``) or in order (``None``)."""
        n = len(self)
        order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
        for start in range(0, n, batch_size):
            index = order[start:start + batch_size]
            yield self.inputs[index], self.targets[index]

    def tensor_dataset(self) -> torch.utils.data.TensorDataset:
        """For ``torch.utils.data.DataLoader`` (and Opacus' Poisson-sampling ``DPDataLoader``)."""
        return torch.utils.data.TensorDataset(self.inputs, self.targets)


@dataclass(frozen=True)
class ClientSplit:
    """One federated client: its train and validation parts."""

    client_id: int
    name: str
    train: ClientDataset
    val: ClientDataset


@dataclass(frozen=True)
class FederatedDataset:
    """The clients, the global evaluation set and what the model needs to know about the data."""

    task: str
    clients: tuple[ClientSplit, ...]
    eval: ClientDataset
    vocab: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()
    channels: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def max_weight(self) -> int:
        """Public bound on a client's FedAvg weight: the largest train-set size in the partition."""
        return max(len(c.train) for c in self.clients)

    def model_spec(self, config: ModelConfig, dp_compatible: bool = False) -> ModelSpec:
        if self.task == "forecast":
            return ModelSpec.from_config(config, self.task, input_channels=self.channels, output_size=self.channels,
                                         dp_compatible=dp_compatible)
        output = len(self.vocab) if self.task == "next-token" else len(self.classes)
        return ModelSpec.from_config(config, self.task, vocab_size=len(self.vocab), output_size=output,
                                     dp_compatible=dp_compatible)

    def describe(self) -> dict[str, Any]:
        return {"task": self.task, "clients": len(self.clients), "vocab_size": len(self.vocab),
                "classes": len(self.classes), "channels": self.channels, "eval_samples": len(self.eval),
                "train_samples": {c.name: len(c.train) for c in self.clients}, "notes": list(self.notes)}


def tokenize(text: str, unit: str) -> list[str]:
    """Characters, or words and punctuation marks."""
    return list(text) if unit == "char" else _WORD.findall(text)


def build_vocab(token_lists: list[list[str]], unit: str, vocab_size: int) -> tuple[str, ...]:
    """``<unk>`` then every character (sorted), or the ``vocab_size - 1`` most frequent words (ties by name)."""
    counts = Counter(token for tokens in token_lists for token in tokens)
    if unit == "char":
        return (UNK, *sorted(counts))
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:vocab_size - 1]
    return (UNK, *sorted(word for word, _ in ranked))


def _windows_text(ids: np.ndarray, seq_len: int, task: str, label: int) -> tuple[np.ndarray, np.ndarray]:
    if task == "next-token":
        n = (ids.size - 1) // seq_len
        x = np.stack([ids[i * seq_len:(i + 1) * seq_len] for i in range(n)]) if n else np.zeros((0, seq_len))
        y = np.stack([ids[i * seq_len + 1:(i + 1) * seq_len + 1] for i in range(n)]) if n else np.zeros((0, seq_len))
        return x.astype(np.int64), y.astype(np.int64)
    n = ids.size // seq_len
    x = ids[:n * seq_len].reshape(n, seq_len)
    return x.astype(np.int64), np.full(n, label, dtype=np.int64)


def _windows_series(series: np.ndarray, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    n = series.shape[0] - seq_len
    x = np.stack([series[i:i + seq_len] for i in range(n)]).astype(np.float32)
    return x, series[seq_len:seq_len + n].astype(np.float32)


def _samples(config: DataConfig, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """All samples (inputs, targets) with the natural key index of each, plus vocabulary/classes/channels."""
    meta: dict[str, Any] = {"vocab": (), "classes": (), "channels": 0}
    xs, ys, keys = [], [], []
    if config.source in ("stdlib-docstrings", "text"):
        units = (sources.stdlib_docstrings(config.modules, config.max_chars_per_client)
                 if config.source == "stdlib-docstrings" else sources.text_files(config.path, config.max_chars_per_client))
        token_lists = [tokenize(text, config.tokens) for _, text in units]
        vocab = build_vocab(token_lists, config.tokens, config.vocab_size)
        if config.schema:  # public task schema (issue 15): the agreed vocabulary, not one built from client data
            from .schema import schema_vocab
            vocab = schema_vocab(config.schema, config.tokens)
        index = {token: i for i, token in enumerate(vocab)}
        meta.update(vocab=vocab, classes=tuple(name for name, _ in units), names=[name for name, _ in units])
        for k, tokens in enumerate(token_lists):
            ids = np.array([index.get(t, 0) for t in tokens], dtype=np.int64)
            x, y = _windows_text(ids, config.seq_len, config.task, k)
            xs.append(x), ys.append(y), keys.append(np.full(len(x), k))
    else:
        rng = np.random.default_rng([seed, STREAM_DATA])
        units_s = (sources.synthetic_series(config.series_clients, config.series_length, config.channels, rng)
                   if config.source == "synthetic-series"
                   else sources.csv_series(config.path, config.key_column, config.time_column))
        meta.update(channels=int(units_s[0][1].shape[1]), names=[name for name, _ in units_s])
        for k, (_, series) in enumerate(units_s):
            if series.shape[0] <= config.seq_len:
                continue
            x, y = _windows_series(series, config.seq_len)
            xs.append(x), ys.append(y), keys.append(np.full(len(x), k))
    if not xs or sum(len(x) for x in xs) == 0:
        raise ConfigError(f"data.seq_len = {config.seq_len} leaves no samples: the data is too short")
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(keys), meta


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array))


def build_federated(config: DataConfig, seed: int) -> FederatedDataset:
    """Load, tokenise, window, partition and split, deterministically from ``seed``."""
    x, y, keys, meta = _samples(config, seed)
    labels = y if config.task == "classification" else keys
    parts = partitioners.partition(config.partition, keys, labels, config.clients, config.alpha,
                                   np.random.default_rng([seed, STREAM_PARTITION]))
    names = meta["names"]
    split_rng = np.random.default_rng([seed, STREAM_SPLIT])
    clients: list[ClientSplit] = []
    tests: list[np.ndarray] = []
    notes: list[str] = []
    for position, part in enumerate(parts):
        name = names[int(keys[part[0]])] if config.partition == "natural" and part.size else f"client-{position}"
        order = part[split_rng.permutation(part.size)]
        n_test, n_val = int(part.size * config.test_fraction), int(part.size * config.val_fraction)
        test, val, train = order[:n_test], order[n_test:n_test + n_val], np.sort(order[n_test + n_val:])
        tests.append(test)
        if train.size == 0:
            notes.append(f"{name}: no training samples, left out of the federation")
            continue
        cid = len(clients)
        clients.append(ClientSplit(cid, name,
                                   ClientDataset(f"{name}/train", config.task, _tensor(x[train]), _tensor(y[train])),
                                   ClientDataset(f"{name}/val", config.task, _tensor(x[np.sort(val)]),
                                                 _tensor(y[np.sort(val)]))))
    if not clients:
        raise ConfigError("the partition leaves no client with training data")
    test_index = np.sort(np.concatenate(tests)) if tests else np.zeros(0, dtype=int)
    if test_index.size == 0:
        raise ConfigError("data.test_fraction leaves an empty global evaluation set; raise it or add data")
    evaluation = ClientDataset("global/eval", config.task, _tensor(x[test_index]), _tensor(y[test_index]))
    return FederatedDataset(config.task, tuple(clients), evaluation, tuple(meta["vocab"]), tuple(meta["classes"]),
                            int(meta["channels"]), tuple(notes))
