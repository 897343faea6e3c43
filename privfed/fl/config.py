"""Experiment configuration: frozen, validated dataclasses loaded from TOML with ``key=value`` dotted overrides.

A configuration is the embedded default (``privfed/fl/default.toml``) overlaid by the user's TOML file, then by
``-c section.key=value`` overrides, then by ``--seed``. Every value is checked at construction; an error names the
key (``fl.rounds must be >= 1``) and raises :class:`~protocols.errors.ConfigError`. Unknown keys are errors too, so a
typo never silently falls back to a default.

Sections: ``seed`` and ``plan`` (top level), ``[data]``, ``[model]``, ``[train]`` (local training), ``[fl]`` (the
FedAvg loop), ``[protection]`` (``clip`` and per-protection ``[protection.options.<name>]`` tables) and an optional
``[threat]`` table handed verbatim to :func:`privfed.threat.resolve_plan`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping

from protocols.errors import ConfigError

__all__ = [
    "DataConfig",
    "ModelConfig",
    "TrainConfig",
    "FLConfig",
    "ProtectionConfig",
    "ExperimentConfig",
    "default_table",
    "load_config",
    "config_from_table",
    "apply_overrides",
    "parse_override",
    "sampling_warnings",
]

SOURCES = ("stdlib-docstrings", "stdlib-users", "text", "synthetic-series", "csv", "leaf")
TASKS = ("next-token", "classification", "forecast")
PARTITIONS = ("natural", "iid", "dirichlet")
CELLS = ("lstm", "gru")
OPTIMIZERS = ("sgd", "adam")
SAMPLINGS = ("fixed", "poisson")
MISSING = ("error", "drop", "ffill", "interpolate")


def _check(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{key} {message}")


@dataclass(frozen=True)
class DataConfig:
    """Where client data comes from and how it is cut into samples and clients."""

    source: str = "stdlib-docstrings"
    task: str = "next-token"
    path: str = ""
    modules: tuple[str, ...] = ()
    tokens: str = "char"
    vocab_size: int = 2000
    partition: str = "natural"
    clients: int = 0
    alpha: float = 0.5
    seq_len: int = 32
    max_chars_per_client: int = 10000
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    key_column: str = "client"
    time_column: str = ""
    value_columns: tuple[str, ...] = ()
    categorical_columns: tuple[str, ...] = ()
    target_columns: tuple[str, ...] = ()
    sequence_column: str = ""
    label_column: str = ""
    text_column: str = ""
    missing: str = "error"
    na_values: tuple[str, ...] = ()
    channels: int = 3
    series_clients: int = 8
    series_length: int = 400
    # --- public task schema (issue 15): a JSON file from `privfed schema`; its vocabulary, channels and scaling,
    # sequence length and model are what every party agrees on (privfed.fl.schema). Over Flower the nodes' data
    # lives on the nodes (node-config data-path), so data.path is then not needed.
    schema: str = ""

    def __post_init__(self) -> None:
        _check(self.source in SOURCES, "data.source", f"must be one of {SOURCES}, got {self.source!r}")
        _check(self.task in TASKS, "data.task", f"must be one of {TASKS}, got {self.task!r}")
        _check(self.partition in PARTITIONS, "data.partition", f"must be one of {PARTITIONS}, got {self.partition!r}")
        _check(self.tokens in ("char", "word"), "data.tokens", f"must be 'char' or 'word', got {self.tokens!r}")
        _check(self.vocab_size >= 2, "data.vocab_size", "must be >= 2")
        _check(self.clients >= 0, "data.clients", "must be >= 0 (0: one client per natural key)")
        _check(self.alpha > 0, "data.alpha", "must be > 0")
        _check(self.seq_len >= 2, "data.seq_len", "must be >= 2")
        _check(self.max_chars_per_client >= 0, "data.max_chars_per_client", "must be >= 0 (0: no cap)")
        _check(0 <= self.val_fraction < 1, "data.val_fraction", "must be in [0, 1)")
        _check(0 <= self.test_fraction < 1, "data.test_fraction", "must be in [0, 1)")
        _check(self.val_fraction + self.test_fraction < 1, "data.val_fraction + data.test_fraction", "must be < 1")
        _check(self.channels >= 1, "data.channels", "must be >= 1")
        _check(self.series_clients >= 1, "data.series_clients", "must be >= 1")
        _check(self.series_length > self.seq_len + 1, "data.series_length", "must exceed data.seq_len + 1")
        _check(self.missing in MISSING, "data.missing", f"must be one of {MISSING}, got {self.missing!r}")
        if self.source in ("text", "csv", "leaf") and not self.schema:
            _check(bool(self.path), "data.path", f"is required when data.source = {self.source!r}")
        allowed = {"stdlib-docstrings": ("next-token", "classification"),
                   "stdlib-users": ("next-token", "classification"), "text": ("next-token", "classification"),
                   "synthetic-series": ("forecast",), "csv": ("forecast", "classification"),
                   "leaf": ("next-token", "classification")}[self.source]
        _check(self.task in allowed, "data.task", f"must be one of {allowed} for data.source = {self.source!r}, "
                                                  f"got {self.task!r}")
        if self.source == "csv" and self.task == "classification":
            _check(bool(self.label_column), "data.label_column",
                   "is required for data.task = 'classification' with data.source = 'csv'")
            _check(bool(self.sequence_column) != bool(self.text_column), "data.sequence_column",
                   "or data.text_column (exactly one) is required for classification from a CSV: "
                   "one sequence per sequence_column value, or one document per row's text_column")
        roles = [c for c in (self.key_column, self.time_column, self.sequence_column, self.label_column,
                             self.text_column) if c]
        for name in ("value_columns", "categorical_columns", "target_columns"):
            clash = sorted(set(getattr(self, name)) & set(roles))
            _check(not clash, f"data.{name}", f"lists {clash}, already used as key/time/sequence/label/text column")
        if self.value_columns:
            extra = sorted(set(self.target_columns) - set(self.value_columns) - set(self.categorical_columns))
            _check(not extra, "data.target_columns", f"lists {extra}, which are not in data.value_columns")
        if self.partition != "natural":
            _check(self.clients >= 1, "data.clients", f"must be >= 1 with data.partition = {self.partition!r}")


@dataclass(frozen=True)
class ModelConfig:
    """Recurrent model shape: cell, depth, width, embedding dimension (token tasks)."""

    cell: str = "lstm"
    layers: int = 1
    hidden: int = 64
    embedding: int = 16
    dropout: float = 0.0

    def __post_init__(self) -> None:
        _check(self.cell in CELLS, "model.cell", f"must be one of {CELLS}, got {self.cell!r}")
        _check(1 <= self.layers <= 8, "model.layers", "must be in [1, 8]")
        _check(1 <= self.hidden <= 4096, "model.hidden", "must be in [1, 4096]")
        _check(1 <= self.embedding <= 4096, "model.embedding", "must be in [1, 4096]")
        _check(0 <= self.dropout < 1, "model.dropout", "must be in [0, 1)")


@dataclass(frozen=True)
class TrainConfig:
    """Local training on one client in one round."""

    epochs: int = 1
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float = 0.01
    momentum: float = 0.0
    weight_decay: float = 0.0
    max_batches: int = 0

    def __post_init__(self) -> None:
        _check(self.epochs >= 1, "train.epochs", "must be >= 1")
        _check(self.batch_size >= 1, "train.batch_size", "must be >= 1")
        _check(self.optimizer in OPTIMIZERS, "train.optimizer", f"must be one of {OPTIMIZERS}")
        _check(self.lr > 0, "train.lr", "must be > 0")
        _check(0 <= self.momentum < 1, "train.momentum", "must be in [0, 1)")
        _check(self.weight_decay >= 0, "train.weight_decay", "must be >= 0")
        _check(self.max_batches >= 0, "train.max_batches", "must be >= 0 (0: every batch)")


@dataclass(frozen=True)
class FLConfig:
    """The FedAvg loop: rounds, client sampling, server step, simulated dropouts."""

    rounds: int = 5
    clients_per_round: int = 5
    fraction: float = 0.0
    sampling: str = "fixed"
    sample_rate: float = 0.0
    server_lr: float = 1.0
    drop_prob: float = 0.0
    drop_point: str = "before-upload"
    transcripts: bool = True

    def __post_init__(self) -> None:
        _check(self.rounds >= 1, "fl.rounds", "must be >= 1")
        _check(self.clients_per_round >= 0, "fl.clients_per_round", "must be >= 0")
        _check(0 <= self.fraction <= 1, "fl.fraction", "must be in [0, 1]")
        _check(self.sampling in SAMPLINGS, "fl.sampling", f"must be one of {SAMPLINGS}")
        if self.sampling == "poisson":
            _check(0 < self.sample_rate <= 1, "fl.sample_rate", "must be in (0, 1] with fl.sampling = 'poisson'")
        else:
            _check(self.clients_per_round >= 1 or self.fraction > 0, "fl.clients_per_round",
                   "must be >= 1 unless fl.fraction > 0")
        _check(self.server_lr > 0, "fl.server_lr", "must be > 0")
        _check(0 <= self.drop_prob < 1, "fl.drop_prob", "must be in [0, 1)")
        _check(bool(self.drop_point), "fl.drop_point", "must name a drop point")


@dataclass(frozen=True)
class ProtectionConfig:
    """Standard protocol options and per-protection option tables."""

    clip: float = 1.0
    delta: float = 1e-5
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check(self.clip > 0, "protection.clip", "must be > 0")
        _check(0 < self.delta < 1, "protection.delta", "must be in (0, 1)")
        for name, table in self.options.items():
            _check(isinstance(table, Mapping), f"protection.options.{name}", "must be a table")
            for reserved in ("max_weight", "clip"):
                _check(reserved not in table, f"protection.options.{name}.{reserved}",
                       "is set by the FedAvg loop (use protection.clip)")

    def for_protection(self, name: str, max_weight: float) -> dict[str, Any]:
        """The options ``protocols.registry.create(name, ...)`` receives."""
        return {"max_weight": float(max_weight), "clip": float(self.clip), **dict(self.options.get(name, {}))}


@dataclass(frozen=True)
class ExperimentConfig:
    """One whole experiment."""

    seed: int = 0
    plan: str = "plaintext"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    fl: FLConfig = field(default_factory=FLConfig)
    protection: ProtectionConfig = field(default_factory=ProtectionConfig)
    threat: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        _check(isinstance(self.seed, int) and 0 <= self.seed < 2**63, "seed", "must be an integer in [0, 2**63)")
        _check(isinstance(self.plan, str) and bool(self.plan.strip()), "plan", "must be a non-empty string")

    def to_table(self) -> dict[str, Any]:
        """Plain nested dict (JSON/TOML-able); ``config_from_table(c.to_table()) == c``."""
        table = json.loads(json.dumps(dataclasses.asdict(self)))
        if table.get("threat") is None:
            table.pop("threat", None)
        return table


_SECTIONS: dict[str, type] = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "fl": FLConfig,
                              "protection": ProtectionConfig}


def default_table() -> dict[str, Any]:
    """The embedded default configuration as a nested dict."""
    text = resources.files("privfed.fl").joinpath("default.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def _merge(base: dict[str, Any], extra: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict) and key != "threat":
            out[key] = _merge(out[key], value, f"{prefix}{key}.")
        else:
            out[key] = copy.deepcopy(dict(value) if isinstance(value, Mapping) else value)
    return out


def _coerce(cls: type, key: str, name: str, value: Any) -> Any:
    """Check a value's type against the dataclass field annotation (ints promote to floats)."""
    annotation = {f.name: f.type for f in dataclasses.fields(cls)}[name]
    full = f"{key}.{name}"
    if annotation == "float":
        _check(isinstance(value, (int, float)) and not isinstance(value, bool), full, f"must be a number, got {value!r}")
        return float(value)
    if annotation == "int":
        _check(isinstance(value, int) and not isinstance(value, bool), full, f"must be an integer, got {value!r}")
        return value
    if annotation == "bool":
        _check(isinstance(value, bool), full, f"must be true or false, got {value!r}")
        return value
    if annotation == "str":
        _check(isinstance(value, str), full, f"must be a string, got {value!r}")
        return value
    if annotation.startswith("tuple"):
        _check(isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value), full,
               f"must be a list of strings, got {value!r}")
        return tuple(value)
    return value


def _section(cls: type, key: str, table: Any) -> Any:
    _check(isinstance(table, Mapping), key, "must be a table")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - names)
    _check(not unknown, f"{key}.{unknown[0]}" if unknown else key, f"is not a known key; known: {sorted(names)}")
    if cls is ProtectionConfig:
        options = table.get("options", {})
        _check(isinstance(options, Mapping), "protection.options", "must be a table of tables")
        return ProtectionConfig(clip=_coerce(cls, key, "clip", table.get("clip", 1.0)),
                                delta=_coerce(cls, key, "delta", table.get("delta", 1e-5)),
                                options={str(k): dict(v) if isinstance(v, Mapping) else v
                                         for k, v in options.items()})
    return cls(**{name: _coerce(cls, key, name, value) for name, value in table.items()})


def config_from_table(table: Mapping[str, Any]) -> ExperimentConfig:
    """Validate a nested dict (defaults fill missing keys) into an :class:`ExperimentConfig`."""
    merged = _merge(default_table(), table)
    # [runtime] (issue 15) chooses where rounds run (privfed.apps.flower.submit validates it); not an ML setting
    merged.pop("runtime", None)
    top = {"seed", "plan", "threat", *_SECTIONS}
    unknown = sorted(set(merged) - top)
    _check(not unknown, unknown[0] if unknown else "", f"is not a known key; known: {sorted(top)}")
    threat = merged.get("threat")
    _check(threat is None or isinstance(threat, Mapping), "threat", "must be a table")
    seed = merged.get("seed", 0)
    _check(isinstance(seed, int) and not isinstance(seed, bool), "seed", f"must be an integer, got {seed!r}")
    sections = {name: _section(cls, name, merged.get(name, {})) for name, cls in _SECTIONS.items()}
    return ExperimentConfig(seed=seed, plan=merged.get("plan", "plaintext"), threat=dict(threat) if threat else None,
                            **sections)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``'fl.rounds=3'`` -> (['fl', 'rounds'], 3). Values parse as TOML/JSON when they can, else stay strings."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override must look like section.key=value, got {text!r}")
    raw = raw.strip()
    value: Any
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
    return key.split("."), value


def apply_overrides(table: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``key=value`` overrides to a nested dict (creating ``protection.options.<name>`` tables as needed)."""
    out = copy.deepcopy(dict(table))
    for text in overrides:
        path, value = parse_override(text)
        node: dict[str, Any] = out
        for part in path[:-1]:
            child = node.setdefault(part, {})
            _check(isinstance(child, dict), ".".join(path), f"cannot set inside non-table {part!r}")
            node = child
        node[path[-1]] = value
    return out


def read_toml(path: str | Path) -> dict[str, Any]:
    """A config file's table, or ConfigError naming the file and what is wrong with it."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path} is not valid TOML: {exc}") from None


def load_config(path: str | Path | None = None, overrides: Iterable[str] = (),
                seed: int | None = None) -> ExperimentConfig:
    """Embedded default <- TOML file at ``path`` <- ``overrides`` <- ``seed``; validated."""
    table = read_toml(path) if path is not None else {}
    table = apply_overrides(table, overrides)
    if seed is not None:
        table["seed"] = seed
    # public task schema (issue 15): its seq_len and model are the agreed ones
    from .schema import apply_schema_table
    return config_from_table(apply_schema_table(table))


def sampling_warnings(fl: FLConfig, n_clients: int) -> list[str]:
    """What the FedAvg loop cannot do as asked with ``n_clients`` clients (it samples them all instead)."""
    if fl.sampling == "fixed" and fl.clients_per_round > n_clients:
        return [f"fl.clients_per_round = {fl.clients_per_round} but the data has only {n_clients} clients: every "
                f"round samples all {n_clients}"]
    return []
