"""The public task schema: what the parties agree on before training, so no party needs another's data.

A schema is made beforehand from public or agreed material (``privfed schema --source text --path PUBLIC ...``) and
handed to every party: the server builds the model from it alone, and each node cuts its own data with it. It holds

* the task and the source kind (``text`` -> next-token prediction; ``csv`` -> forecasting);
* text: the token unit (``char``/``word``), the vocabulary (``<unk>`` first) and the ``<unk>`` policy (the largest
  share of a node's tokens that may fall outside the vocabulary before the node refuses);
* csv: the value columns (channels) in order, their public scaling (mean and standard deviation), the key column;
* the sequence length, the model shape (cell, layers, hidden, embedding, dropout), the validation share each node
  holds out, and ``max_weight``: the public bound on a node's FedAvg weight (its training samples; a node with more
  caps its weight there, as protocols need a public bound for their fixed-point headroom).

The file is JSON (``format = "privfed-schema/1"``); :func:`load_schema` validates every field and raises
:class:`~protocols.errors.ConfigError` naming the field, so a malformed schema is refused before any round.
Applying a schema to a node's data (:func:`node_split`) raises :class:`DataMismatchError` (a PrivfedError, not a
ConfigError: the node refuses the round and counts as dropped, the run goes on) when the data does not fit: too
many unknown tokens, missing or extra channels, too short for one training window.

Threat model: a schema is public. Made from public material it reveals nothing about any node; made from a node's
own data it would reveal that node's character set, scales and size, so ``privfed schema`` should be run on public
or jointly agreed material only.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from protocols.errors import ConfigError, PrivfedError

from . import sources
from .config import ModelConfig
from .data import UNK, ClientDataset, ClientSplit, _windows_text, build_vocab, tokenize
from .userdata import series_samples
from .models import ModelSpec

__all__ = ["TaskSchema", "DataMismatchError", "SCHEMA_FORMAT", "schema_from_text", "schema_from_csv",
           "load_schema", "node_split", "apply_schema_table", "check_unknown", "schema_text"]

SCHEMA_FORMAT = "privfed-schema/1"
SOURCES = {"text": "next-token", "csv": "forecast"}


class DataMismatchError(PrivfedError):
    """A node's data does not fit the run's schema: the node refuses the round (it counts as dropped)."""


def _need(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"schema {key} {message}")


@dataclass(frozen=True)
class TaskSchema:
    """A validated public task schema (see the module docstring)."""

    source: str
    seq_len: int
    model: ModelConfig = field(default_factory=ModelConfig)
    tokens: str = "char"
    vocab: tuple[str, ...] = ()
    max_unknown_fraction: float = 0.05
    columns: tuple[str, ...] = ()
    key_column: str = ""
    time_column: str = ""
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    val_fraction: float = 0.1
    max_weight: int = 100000

    def __post_init__(self) -> None:
        _need(self.source in SOURCES, "source", f"must be one of {sorted(SOURCES)}, got {self.source!r}")
        _need(isinstance(self.seq_len, int) and 2 <= self.seq_len <= 100000, "seq_len", "must be an integer >= 2")
        _need(0 <= self.val_fraction < 1, "val_fraction", "must be in [0, 1)")
        _need(isinstance(self.max_weight, int) and self.max_weight >= 1, "max_weight", "must be an integer >= 1")
        _need(all(isinstance(c, str) and c for c in self.columns), "columns", "must hold non-empty column names")
        if self.source == "text":
            _need(not (self.columns or self.mean or self.std or self.key_column or self.time_column), "columns",
                  "columns, mean, std, key_column and time_column belong to csv schemas, not text ones")
            _need(self.tokens in ("char", "word"), "tokens", f"must be 'char' or 'word', got {self.tokens!r}")
            _need(len(self.vocab) >= 2 and self.vocab[0] == UNK, "vocab", f"must start with {UNK!r} and hold >= 2 tokens")
            _need(all(isinstance(t, str) and t for t in self.vocab), "vocab", "must hold non-empty strings")
            _need(len(set(self.vocab)) == len(self.vocab), "vocab", "holds a token twice")
            _need(0 <= self.max_unknown_fraction <= 1, "max_unknown_fraction", "must be in [0, 1]")
        else:
            _need(len(self.columns) >= 1 and len(set(self.columns)) == len(self.columns), "columns",
                  "must name at least one distinct value column")
            _need(len(self.mean) == len(self.std) == len(self.columns), "mean/std", "must give one value per column")
            _need(all(math.isfinite(v) for v in self.mean), "mean", "must be finite")
            _need(all(math.isfinite(v) and v > 0 for v in self.std), "std", "must be finite and > 0")
            _need(bool(self.key_column) and self.key_column not in self.columns, "key_column",
                  "must name a column other than the value columns")

    @property
    def task(self) -> str:
        return SOURCES[self.source]

    def model_spec(self, dp_compatible: bool = False) -> ModelSpec:
        """The model every party builds: from the schema alone, no data."""
        if self.task == "forecast":
            return ModelSpec.from_config(self.model, self.task, input_channels=len(self.columns),
                                         output_size=len(self.columns), dp_compatible=dp_compatible)
        return ModelSpec.from_config(self.model, self.task, vocab_size=len(self.vocab), output_size=len(self.vocab),
                                     dp_compatible=dp_compatible)

    def to_json(self) -> dict[str, Any]:
        return {"format": SCHEMA_FORMAT, **json.loads(json.dumps(asdict(self)))}

    @classmethod
    def from_json(cls, data: Any) -> "TaskSchema":
        _need(isinstance(data, Mapping), "", "must be a JSON object")
        _need(data.get("format") == SCHEMA_FORMAT, "format", f"must be {SCHEMA_FORMAT!r}, got {data.get('format')!r}")
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known - {"format"})
        _need(not unknown, unknown[0] if unknown else "", "is not a known schema field")
        _need("source" in data and "seq_len" in data, "source/seq_len", "are required")
        values = dict(data)
        values.pop("format")
        model = values.pop("model", {})
        _need(isinstance(model, Mapping), "model", "must be an object")
        try:
            values["model"] = ModelConfig(**dict(model))
        except ConfigError as exc:
            raise ConfigError(f"schema model: {exc}") from None
        except (TypeError, ValueError) as exc:  # unknown keys, or values of the wrong type
            raise ConfigError(f"schema model: {type(exc).__name__}: {exc}") from None
        for key in ("vocab", "columns", "mean", "std"):
            if key in values:
                _need(isinstance(values[key], list), key, "must be a list")
                values[key] = tuple(values[key])
        for key, kind in (("seq_len", int), ("max_weight", int), ("tokens", str), ("source", str),
                          ("key_column", str), ("time_column", str)):
            if key in values:
                _need(isinstance(values[key], kind) and not isinstance(values[key], bool), key,
                      f"must be a {kind.__name__}")
        for key in ("mean", "std"):
            _need(all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values.get(key, ())), key,
                  "must hold numbers")
        for key in ("max_unknown_fraction", "val_fraction"):
            if key in values:
                _need(isinstance(values[key], (int, float)) and not isinstance(values[key], bool), key,
                      "must be a number")
        try:
            return cls(**values)
        except ConfigError:
            raise
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"schema: {type(exc).__name__}: {exc}") from None

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def load_schema(path: str | Path) -> TaskSchema:
    """Read and validate a schema file (ConfigError naming what is wrong)."""
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"data.schema: cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"data.schema: {path} is not valid JSON: {exc}") from None
    return TaskSchema.from_json(data)


def schema_from_text(path: str | Path, *, tokens: str = "char", vocab_size: int = 2000, seq_len: int = 32,
                     model: ModelConfig | None = None, **extra: Any) -> TaskSchema:
    """A text schema whose vocabulary is built from public material at ``path`` (file or folder of .txt)."""
    units = sources.text_files(path)
    vocab = build_vocab([tokenize(text, tokens) for _, text in units], tokens, vocab_size)
    return TaskSchema("text", seq_len, model or ModelConfig(), tokens=tokens, vocab=vocab, **extra)


def _read_csv(path: str | Path) -> tuple[list[str], list[dict[str, str]]]:
    file = Path(path).expanduser()
    try:
        with file.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            header = list(reader.fieldnames or [])
    except OSError as exc:
        raise ConfigError(f"data.path: cannot read {file}: {exc.strerror or exc}") from None
    return header, rows


def schema_from_csv(path: str | Path, *, key_column: str = "client", time_column: str = "", seq_len: int = 32,
                    model: ModelConfig | None = None, **extra: Any) -> TaskSchema:
    """A CSV schema: the value columns of the public CSV at ``path`` and their mean/std as the public scaling."""
    header, rows = _read_csv(path)
    if not rows:
        raise ConfigError(f"schema: {path} holds no data rows")
    columns = [c for c in header if c not in (key_column, time_column)]
    values = _csv_matrix(rows, columns, str(path))
    std = values.std(axis=0)
    std[std == 0] = 1.0
    return TaskSchema("csv", seq_len, model or ModelConfig(), columns=tuple(columns), key_column=key_column,
                      time_column=time_column, mean=tuple(float(v) for v in values.mean(axis=0)),
                      std=tuple(float(v) for v in std), **extra)


def _csv_matrix(rows: list[dict[str, str]], columns: list[str], where: str) -> np.ndarray:
    try:
        values = np.array([[float(row[c]) for c in columns] for row in rows], dtype=np.float64)
    except (TypeError, ValueError, KeyError):
        raise DataMismatchError(f"{where}: a value is missing or not a number") from None
    if not np.isfinite(values).all():
        raise DataMismatchError(f"{where}: a value is not finite")
    return values


def _split(name: str, task: str, x: np.ndarray, y: np.ndarray, val_fraction: float,
           rng: np.random.Generator) -> ClientSplit:
    order = rng.permutation(len(x))
    n_val = int(len(x) * val_fraction)
    val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
    if train.size == 0:
        raise DataMismatchError(f"{name}: no training window of the schema's length")

    def part(index: np.ndarray, what: str) -> ClientDataset:
        return ClientDataset(f"{name}/{what}", task, torch.from_numpy(np.ascontiguousarray(x[index])),
                             torch.from_numpy(np.ascontiguousarray(y[index])))

    return ClientSplit(0, name, part(train, "train"), part(val, "val"))


def node_split(schema: TaskSchema, path: str | Path, seed: int, name: str = "node") -> ClientSplit:
    """This node's train and validation parts, cut from its own data at ``path`` with the schema only.

    Raises :class:`DataMismatchError` when the data does not fit the schema, ConfigError when it cannot be read."""
    rng = np.random.default_rng([seed, 17])  # data order only, never a secret path
    if schema.source == "text":
        units = sources.text_files(path)
        index = {token: i for i, token in enumerate(schema.vocab)}
        tokens = [t for _, text in units for t in tokenize(text, schema.tokens)]
        if not tokens:
            raise DataMismatchError(f"{name}: the data at data-path holds no text")
        ids = np.array([index.get(t, 0) for t in tokens], dtype=np.int64)
        check_unknown(ids, schema.max_unknown_fraction, name)
        x, y = _windows_text(ids, schema.seq_len, schema.task, 0)
    else:
        header, rows = _read_csv(path)
        columns = [c for c in header if c not in (schema.key_column, schema.time_column)]
        if columns != list(schema.columns):
            raise DataMismatchError(f"{name}: its CSV has value columns {columns}, the schema's channels are "
                                    f"{list(schema.columns)}")
        values = _csv_matrix(rows, columns, name)
        if schema.time_column:
            when = _csv_matrix(rows, [schema.time_column], name)[:, 0]
            values = values[np.argsort(when, kind="stable")]
        scaled = ((values - np.array(schema.mean)) / np.array(schema.std)).astype(np.float32)
        if scaled.shape[0] <= schema.seq_len:
            raise DataMismatchError(f"{name}: {scaled.shape[0]} rows, the schema needs more than {schema.seq_len}")
        windows = series_samples([(name, scaled)], schema.seq_len)  # the one windowing of the CSV sources
        x, y = windows.x, windows.y
    if len(x) == 0:
        raise DataMismatchError(f"{name}: too short for one window of {schema.seq_len} tokens")
    return _split(name, schema.task, x, y, schema.val_fraction, rng)


def apply_schema_table(table: dict[str, Any]) -> dict[str, Any]:
    """A config table with ``data.schema`` set gets the schema's sequence length and model (the schema is what the
    parties agreed; a run cannot train another model than the one the nodes were told). Used by
    :func:`privfed.fl.config.load_config`, so the in-process runtime and Flower read the same facts."""
    path = table.get("data", {}).get("schema") if isinstance(table.get("data"), Mapping) else None
    if not path:
        return table
    agreed = load_schema(path)
    out = {**table, "data": {**table["data"], "seq_len": agreed.seq_len},
           "model": {**dict(table.get("model", {})), **asdict(agreed.model)}}
    if agreed.source == "text":
        out["data"].setdefault("tokens", agreed.tokens)
        if out["data"]["tokens"] != agreed.tokens:
            raise ConfigError(f"data.tokens = {out['data']['tokens']!r} but the schema's tokens are {agreed.tokens!r}")
    return out


def check_unknown(ids: np.ndarray, max_unknown_fraction: float, name: str) -> None:
    """The schema's ``<unk>`` policy, one rule for a Flower node and an in-process client: refuse text whose share of
    tokens outside the vocabulary (id 0) exceeds ``max_unknown_fraction``. Raises :class:`DataMismatchError`."""
    unknown = float(np.mean(ids == 0)) if ids.size else 0.0
    if unknown > max_unknown_fraction:
        raise DataMismatchError(f"{name}: {unknown:.1%} of its tokens are outside the schema's vocabulary "
                                f"(the schema's <unk> policy allows {max_unknown_fraction:.1%})")


def schema_text(path: str, tokens: str) -> TaskSchema:
    """The schema of a text source (vocabulary and ``<unk>`` policy), for the in-process data pipeline."""
    agreed = load_schema(path)
    if agreed.source != "text":
        raise ConfigError("data.schema: a csv schema cannot supply a text vocabulary")
    if agreed.tokens != tokens:
        raise ConfigError(f"data.tokens = {tokens!r} but the schema's tokens are {agreed.tokens!r}")
    return agreed
