"""The ``[vertical]`` configuration: parties, columns, protection and training knobs, validated at construction.

A config is the embedded default (``default.toml`` next to this module, three parties over the shipped CSVs) <- a
user's TOML file <- ``-c vertical.KEY=VALUE`` overrides. Relative party paths resolve against the config file's
folder (the embedded default's against this package's ``data/``).
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping

from protocols.errors import ConfigError
from protocols.vertical.protections import get as get_protection
from privfed.fl.config import apply_overrides

__all__ = ["PartyConfig", "VerticalConfig", "load_vertical_config", "DEFAULT_TOML", "MISSING"]

DEFAULT_TOML = Path(__file__).with_name("default.toml")
DATA_DIR = Path(__file__).with_name("data")
MISSING = ("error", "zero", "ffill")
TASKS = ("classification", "regression")
CELLS = ("gru", "lstm")


@dataclass(frozen=True)
class PartyConfig:
    name: str
    path: Path

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError("vertical.party.name must be a non-empty string")


def _positive_int(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"vertical.{key} must be an integer >= 1, got {value!r}")


def _positive(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"vertical.{key} must be a positive number, got {value!r}")


@dataclass(frozen=True)
class VerticalConfig:
    parties: tuple[PartyConfig, ...]
    label_party: str
    label_column: str
    id_column: str = "id"
    time_column: str = "time"
    missing: str = "error"
    protection: str = "plaintext"
    task: str = "classification"
    cell: str = "gru"
    hidden: int = 16
    embedding: int = 8
    top_hidden: int = 0
    epochs: int = 5
    batch_size: int = 32
    lr: float = 0.01
    test_fraction: float = 0.25
    seed: int = 0
    noise_multiplier: float = 3.0
    clip: float = 1.0
    delta: float = 1e-5
    cut_share: float = 0.5
    dp_lr: float = 0.5
    sum_protocol: str = "secagg"
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [p.name for p in self.parties]
        if len(names) < 2:
            raise ConfigError("vertical needs at least two [[vertical.party]] tables (one of them the label party)")
        if len(set(names)) != len(names):
            raise ConfigError(f"vertical.party names must be distinct, got {names}")
        if self.label_party not in names:
            raise ConfigError(f"vertical.label_party {self.label_party!r} is not a party (parties: {names})")
        for key in ("label_column", "id_column", "time_column"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key):
                raise ConfigError(f"vertical.{key} must be a non-empty column name")
        if self.missing not in MISSING:
            raise ConfigError(f"vertical.missing must be one of {MISSING}, got {self.missing!r}")
        if self.task not in TASKS:
            raise ConfigError(f"vertical.task must be one of {TASKS}, got {self.task!r}")
        if self.cell not in CELLS:
            raise ConfigError(f"vertical.cell must be one of {CELLS}, got {self.cell!r}")
        protection = get_protection(self.protection)
        if len(names) - 1 < protection.min_feature_parties:
            raise ConfigError(f"protection {self.protection!r} needs >= {protection.min_feature_parties} feature "
                              f"parties besides the label party, got {len(names) - 1}")
        if self.sum_protocol != "secagg":
            raise ConfigError("vertical.sum_protocol must be 'secagg' (the label party must learn the sum; HE "
                              "protections deliver it to key holders instead)")
        for key in ("hidden", "embedding", "epochs", "batch_size"):
            _positive_int(key, getattr(self, key))
        for key in ("lr", "noise_multiplier", "clip", "delta", "dp_lr"):
            _positive(key, getattr(self, key))
        if isinstance(self.top_hidden, bool) or not isinstance(self.top_hidden, int) or self.top_hidden < 0:
            raise ConfigError(f"vertical.top_hidden must be an integer >= 0 (0: a linear top), got {self.top_hidden!r}")
        if not (isinstance(self.cut_share, (int, float)) and 0 < self.cut_share < 1):
            raise ConfigError(f"vertical.cut_share must be in (0, 1), got {self.cut_share!r}")
        if not 0 < self.test_fraction < 1:
            raise ConfigError(f"vertical.test_fraction must be in (0, 1), got {self.test_fraction!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"vertical.seed must be an integer, got {self.seed!r}")

    @property
    def feature_parties(self) -> tuple[PartyConfig, ...]:
        return tuple(p for p in self.parties if p.name != self.label_party)

    @property
    def label(self) -> PartyConfig:
        return next(p for p in self.parties if p.name == self.label_party)

    def with_protection(self, name: str) -> "VerticalConfig":
        return replace(self, protection=name)

    def describe(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in ("parties", "options")}
        out["parties"] = [{"name": p.name, "path": str(p.path)} for p in self.parties]
        return out


def _from_table(table: Mapping[str, Any], base_dir: Path) -> VerticalConfig:
    section = table.get("vertical")
    if not isinstance(section, Mapping):
        raise ConfigError("config needs a [vertical] table")
    section = dict(section)
    raw_parties = section.pop("party", None)
    if not isinstance(raw_parties, list) or not all(isinstance(p, Mapping) for p in raw_parties):
        raise ConfigError("config needs one [[vertical.party]] table per party (name, path)")
    parties = []
    for p in raw_parties:
        unknown = set(p) - {"name", "path"}
        if unknown or "name" not in p or "path" not in p:
            raise ConfigError(f"[[vertical.party]] takes exactly name and path, got {sorted(p)}")
        path = Path(str(p["path"])).expanduser()
        parties.append(PartyConfig(str(p["name"]), path if path.is_absolute() else base_dir / path))
    known = set(VerticalConfig.__dataclass_fields__) - {"parties", "options"}
    unknown = set(section) - known
    if unknown:
        raise ConfigError(f"unknown vertical keys {sorted(unknown)}; known: {sorted(known)}")
    try:
        return VerticalConfig(parties=tuple(parties), **section)
    except TypeError as exc:
        raise ConfigError(f"vertical config: {exc}") from None


def load_vertical_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> VerticalConfig:
    """The embedded default, or the file at ``path``, with ``vertical.KEY=VALUE`` overrides applied."""
    source = Path(path) if path is not None else DEFAULT_TOML
    try:
        table = tomllib.loads(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config {source}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {source} is not valid TOML: {exc}") from None
    overrides = list(overrides)
    for text in overrides:
        if not text.strip().startswith("vertical."):
            raise ConfigError(f"vertical overrides look like vertical.KEY=VALUE, got {text!r}")
    table = apply_overrides(table, overrides)
    return _from_table(table, DATA_DIR if path is None else source.resolve().parent)
