"""Federated datasets: tokenised, windowed samples split into clients, each with train and validation parts, plus a
global evaluation set.

Pipeline (:func:`build_federated`): a source gives natural units (a module's docstrings, a file, a CSV key, a
LEAF user; :mod:`privfed.fl.sources`, :mod:`privfed.fl.userdata`); text is tokenised (characters or words,
vocabulary built from the data with ``<unk>`` at index 0) and cut into windows of ``data.seq_len``; the partitioner
(:mod:`privfed.fl.partition`) assigns samples to clients; each client's samples are shuffled and split into test
(pooled into the global evaluation set), validation and train. The test and validation splits are drawn at the
sample level across clients (:func:`_split_counts`): ``round(total × fraction)`` samples, each client giving its
proportional share, so thousands of one- or two-sample clients still leave a non-empty evaluation set. Everything
is deterministic given the experiment seed (numpy ``default_rng`` streams derived from it — data only, never a
secret path). The vocabulary covers all text, as when a federation agrees a public character set beforehand.

Sample shapes: next-token ``x, y: int64 (T,)`` (``y`` is ``x`` shifted by one; -100 marks padding);
classification ``x: int64 (T,)`` tokens or ``float32 (T, C + 1)`` padded values with a presence channel,
``y: int64 ()``; forecast ``x: float32 (T, C)``, ``y: float32 (K,)`` (the target columns). The evaluation set
carries the targets' :class:`~privfed.fl.scaling.Scale` so forecast errors are reported in the data's units.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import torch

from protocols.errors import ConfigError

from . import partition as partitioners
from . import corpus, sources, textdata, userdata
from .config import DataConfig, ModelConfig
from .models import ModelSpec
from .scaling import Scale
from .text import PAD, UNK, build_vocab, tokenize

__all__ = ["ClientDataset", "ClientSplit", "FederatedDataset", "build_federated", "tokenize", "build_vocab", "UNK",
           "PAD"]

STREAM_DATA, STREAM_PARTITION, STREAM_SPLIT = 1, 2, 3
#: clients of the IID split used when a CSV names no clients and data.clients is 0
FALLBACK_CLIENTS = 10


@dataclass(frozen=True)
class ClientDataset:
    """Samples as two aligned tensors (``inputs[i]``, ``targets[i]``)."""

    name: str
    task: str
    inputs: torch.Tensor
    targets: torch.Tensor
    scale: Scale | None = None
    target_names: tuple[str, ...] = ()

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
    output_size: int = 0
    pad_index: int = -1
    masked: bool = False
    target_names: tuple[str, ...] = ()

    @property
    def max_weight(self) -> int:
        """Public bound on a client's FedAvg weight: the largest train-set size in the partition."""
        return max(len(c.train) for c in self.clients)

    def model_spec(self, config: ModelConfig, dp_compatible: bool = False) -> ModelSpec:
        output = self.output_size or (self.channels if self.task == "forecast" else
                                      len(self.vocab) if self.task == "next-token" else len(self.classes))
        return ModelSpec.from_config(config, self.task, vocab_size=len(self.vocab), input_channels=self.channels,
                                     output_size=output, dp_compatible=dp_compatible, pad_index=self.pad_index,
                                     masked=self.masked)

    def describe(self) -> dict[str, Any]:
        return {"task": self.task, "clients": len(self.clients), "vocab_size": len(self.vocab),
                "classes": len(self.classes), "channels": self.channels, "eval_samples": len(self.eval),
                "targets": list(self.target_names), "padded": self.masked,
                "train_samples": {c.name: len(c.train) for c in self.clients}, "notes": list(self.notes)}


def _windows_text(ids: np.ndarray, seq_len: int, task: str, label: int) -> tuple[np.ndarray, np.ndarray]:
    if task == "next-token":
        n = (ids.size - 1) // seq_len
        x = np.stack([ids[i * seq_len:(i + 1) * seq_len] for i in range(n)]) if n else np.zeros((0, seq_len))
        y = np.stack([ids[i * seq_len + 1:(i + 1) * seq_len + 1] for i in range(n)]) if n else np.zeros((0, seq_len))
        return x.astype(np.int64), y.astype(np.int64)
    n = ids.size // seq_len
    x = ids[:n * seq_len].reshape(n, seq_len)
    return x.astype(np.int64), np.full(n, label, dtype=np.int64)


def _samples(config: DataConfig, seed: int) -> userdata.Samples:
    """All samples (inputs, targets) with the natural key index of each, plus what the model needs to know."""
    if config.source == "csv":
        if config.task == "forecast":
            return userdata.csv_forecast(config)
        return userdata.csv_sequences(config) if config.sequence_column else textdata.csv_texts(config)
    if config.source == "leaf":
        return textdata.leaf_samples(config)
    if config.source == "synthetic-series":
        rng = np.random.default_rng([seed, STREAM_DATA])
        return userdata.series_samples(sources.synthetic_series(config.series_clients, config.series_length,
                                                                config.channels, rng), config.seq_len)
    if config.source == "text" and config.task == "classification" and sources.has_label_folders(config.path):
        return textdata.label_folders(config)
    if config.source == "stdlib-docstrings":
        units = sources.stdlib_docstrings(config.modules, config.max_chars_per_client)
    elif config.source == "stdlib-users":  # one user per documented class or function (privfed.fl.corpus)
        units = corpus.stdlib_users(config.modules, config.max_chars_per_client)
    else:
        units = sources.text_files(config.path, config.max_chars_per_client)
    token_lists = [tokenize(text, config.tokens) for _, text in units]
    max_unknown, notes = None, []
    if config.schema:  # public task schema: the agreed vocabulary, not one built from client data
        from .schema import DataMismatchError, check_unknown, schema_text
        agreed = schema_text(config.schema, config.tokens)
        vocab, max_unknown = agreed.vocab, agreed.max_unknown_fraction
    else:
        vocab = build_vocab(token_lists, config.tokens, config.vocab_size)
    index = {token: i for i, token in enumerate(vocab)}
    xs, ys, keys, names = [], [], [], []
    for (name, _), tokens in zip(units, token_lists):
        ids = np.array([index.get(t, 0) for t in tokens], dtype=np.int64)
        if max_unknown is not None:  # the schema's <unk> policy, as a Flower node applies it (privfed.fl.schema)
            try:
                check_unknown(ids, max_unknown, name)
            except DataMismatchError as exc:  # this client refuses: it sits out every round, the run says why
                notes.append(f"client refused by the schema: {exc}")
                continue
        x, y = _windows_text(ids, config.seq_len, config.task, len(names))
        xs.append(x), ys.append(y), keys.append(np.full(len(x), len(names))), names.append(name)
    if not names:
        raise ConfigError("data.schema: every client's text breaks the schema's <unk> policy: " + "; ".join(notes[:3]))
    if sum(len(x) for x in xs) == 0:
        raise ConfigError(f"data.seq_len = {config.seq_len} leaves no samples: the data is too short")
    classes = tuple(names) if config.task == "classification" else ()
    return userdata.Samples(np.concatenate(xs), np.concatenate(ys), np.concatenate(keys), names, vocab=vocab,
                            classes=classes, output_size=len(classes) if classes else len(vocab), notes=notes)


def _split_counts(sizes: np.ndarray, fraction: float, taken: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """How many samples each client gives to a split of ``fraction``: ``floor(size * fraction)`` each, plus one more
    for ``round(total * fraction) - sum(floors)`` clients drawn with probability proportional to the remainders
    (clients that would keep at least one training sample first). The split is then ``fraction`` of the data at the
    sample level however many clients there are, and each client's share is proportional in expectation."""
    if fraction <= 0:
        return np.zeros_like(sizes)
    quota = sizes * fraction
    base = np.floor(quota).astype(np.int64)
    extra = int(round(float(sizes.sum()) * fraction)) - int(base.sum())
    if extra <= 0:
        return base
    remainder = quota - base
    spare = sizes - taken - base >= 2
    for pool in (spare & (remainder > 0), remainder > 0):
        candidates = np.flatnonzero(pool & (base + taken < sizes))
        if candidates.size >= extra:
            weights = remainder[candidates] / remainder[candidates].sum()
            chosen = rng.choice(candidates, size=extra, replace=False, p=weights)
            base[chosen] += 1
            return base
    return base


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array))


def build_federated(config: DataConfig, seed: int) -> FederatedDataset:
    """Load, tokenise, window, partition and split, deterministically from ``seed``."""
    samples = _samples(config, seed)
    x, y, keys = samples.x, samples.y, samples.keys
    labels = y if config.task == "classification" else keys
    method, n_clients, notes = config.partition, config.clients, list(samples.notes)
    if method == "natural" and not samples.natural:
        method, n_clients = "iid", config.clients or FALLBACK_CLIENTS
        notes.append(f"the CSV has no {config.key_column!r} column naming clients: samples split IID over "
                     f"{n_clients} clients (set data.key_column, or data.partition and data.clients)")
    parts = partitioners.partition(method, keys, labels, n_clients, config.alpha,
                                   np.random.default_rng([seed, STREAM_PARTITION]))
    names = samples.names
    split_rng = np.random.default_rng([seed, STREAM_SPLIT])
    sizes = np.array([part.size for part in parts], dtype=np.int64)
    n_test = _split_counts(sizes, config.test_fraction, np.zeros_like(sizes), split_rng)
    if config.test_fraction > 0 and n_test.sum() == 0 and sizes.sum() >= 2:
        n_test[int(np.argmax(sizes))] += 1  # fraction x total rounds to 0: still one evaluation sample
    n_val = _split_counts(sizes, config.val_fraction, n_test, split_rng)
    clients: list[ClientSplit] = []
    tests: list[np.ndarray] = []
    empty = []
    for position, part in enumerate(parts):
        name = names[int(keys[part[0]])] if method == "natural" and part.size else f"client-{position}"
        order = part[split_rng.permutation(part.size)]
        a, b = int(n_test[position]), int(n_test[position] + n_val[position])
        test, val, train = order[:a], order[a:b], np.sort(order[b:])
        tests.append(test)
        if train.size == 0:
            empty.append(name)
            continue
        cid = len(clients)
        clients.append(ClientSplit(cid, name,
                                   ClientDataset(f"{name}/train", config.task, _tensor(x[train]), _tensor(y[train])),
                                   ClientDataset(f"{name}/val", config.task, _tensor(x[np.sort(val)]),
                                                 _tensor(y[np.sort(val)]))))
    if empty:
        notes.append(f"{len(empty)} of {len(parts)} clients have no training samples and are left out of the "
                     f"federation (e.g. {empty[0]!r})")
    if not clients:
        raise ConfigError(f"the partition leaves no client with training data ({int(sizes.sum())} samples over "
                          f"{len(parts)} clients)")
    test_index = np.sort(np.concatenate(tests)) if tests else np.zeros(0, dtype=int)
    if test_index.size == 0:
        raise ConfigError(f"data.test_fraction = {config.test_fraction} leaves an empty global evaluation set "
                          f"({int(sizes.sum())} samples in all); raise it or add data")
    evaluation = ClientDataset("global/eval", config.task, _tensor(x[test_index]), _tensor(y[test_index]),
                               samples.scale, samples.target_names)
    return FederatedDataset(config.task, tuple(clients), evaluation, tuple(samples.vocab), tuple(samples.classes),
                            int(samples.channels), tuple(notes), samples.output_size, samples.pad_index,
                            samples.masked, samples.target_names)
