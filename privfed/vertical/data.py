"""Long CSVs of one vertical party: one row per (entity, time step), its own columns; checked, never guessed.

Each party's file has the id column, the time column and its own feature columns; only the label party's file has
the label column (constant per entity). A label party without features of its own may omit the time column (one
row per entity). Every entity of a party must have the same number of time steps (parties
may differ from each other). Missing cells follow ``missing``: ``error`` (default: name the file, line and column),
``zero`` (the column mean, i.e. 0 after standardising) or ``ffill`` (the entity's previous value, else the mean).
Features are standardised per column with the party's own statistics (nothing is shared for it).
"""

from __future__ import annotations

import csv
import math
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from protocols.errors import ConfigError

__all__ = ["PartyData", "load_party"]

_MISSING_TOKENS = {"", "na", "nan", "null", "none"}


@dataclass(frozen=True)
class PartyData:
    name: str
    ids: tuple[str, ...]
    columns: tuple[str, ...]
    values: np.ndarray            # float32 (entities, steps, columns), standardised
    labels: np.ndarray | None     # int64 class index or float32 target per entity (label party only)
    classes: tuple[str, ...] = ()

    @property
    def steps(self) -> int:
        return int(self.values.shape[1])

    def rows_for(self, ids: list[str]) -> np.ndarray:
        index = {e: i for i, e in enumerate(self.ids)}
        return np.array([index[e] for e in ids], dtype=np.int64)


def _number(text: str) -> float | None:
    if text.strip().lower() in _MISSING_TOKENS:
        return None
    value = float(text)
    if not math.isfinite(value):
        return None
    return value


def _time_key(text: str) -> tuple[int, Any]:
    try:
        return (0, float(text))
    except ValueError:
        return (1, text)


def load_party(name: str, path: Path, *, id_column: str, time_column: str, label_column: str, is_label_party: bool,
               missing: str, task: str) -> PartyData:
    where = f"party {name!r} ({path})"
    try:
        with Path(path).open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header = list(reader.fieldnames or [])
            rows = list(reader)
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"{where}: not a readable UTF-8 CSV: {exc}") from None
    if not rows:
        raise ConfigError(f"{where}: no data rows")
    label_only = is_label_party and set(header) <= {id_column, time_column, label_column}
    for column in (id_column, time_column):
        if column not in header and not (label_only and column == time_column):
            raise ConfigError(f"{where}: column {column!r} missing (columns: {header})")
    if len(set(header)) != len(header):
        raise ConfigError(f"{where}: repeated column names in {header}")
    if label_column in header and not is_label_party:
        raise ConfigError(f"{where}: holds the label column {label_column!r} but is not the label party; "
                          "only the label party may hold labels (fix the data or vertical.label_party)")
    if is_label_party and label_column not in header:
        raise ConfigError(f"{where}: the label party has no label column {label_column!r} (columns: {header})")
    features = [c for c in header if c not in (id_column, time_column, label_column)]
    if not features and not is_label_party:
        raise ConfigError(f"{where}: no feature columns besides {id_column!r} and {time_column!r}")
    grouped: dict[str, list[tuple[tuple[int, Any], list[float | None], int]]] = {}
    labels: dict[str, str] = {}
    for line, row in enumerate(rows, start=2):
        if None in row or any(v is None for v in row.values()):
            raise ConfigError(f"{where} line {line}: wrong number of fields")
        entity = row[id_column].strip()
        if not entity:
            raise ConfigError(f"{where} line {line}: empty id")
        try:
            cells = [_number(row[c]) for c in features]
        except ValueError:
            bad = next(c for c in features if _is_bad(row[c]))
            raise ConfigError(f"{where} line {line}: column {bad!r} value {row[bad]!r} is not a number") from None
        if missing == "error" and any(v is None for v in cells):
            bad = features[[v is None for v in cells].index(True)]
            raise ConfigError(f"{where} line {line}: column {bad!r} is missing (set vertical.missing = "
                              "'zero' or 'ffill' to fill it)")
        when = _time_key(row[time_column].strip()) if time_column in row else (0, 0.0)
        grouped.setdefault(entity, []).append((when, cells, line))
        if is_label_party:
            value = row[label_column].strip()
            if value.lower() in _MISSING_TOKENS:
                raise ConfigError(f"{where} line {line}: label of entity {entity!r} is missing")
            if labels.setdefault(entity, value) != value:
                raise ConfigError(f"{where} line {line}: label of entity {entity!r} changes over time "
                                  f"({labels[entity]!r} then {value!r}); one label per entity is expected")
    counts = Counter(len(v) for v in grouped.values())
    usual = counts.most_common(1)[0][0]
    for entity, entries in grouped.items():
        if len(entries) != usual:
            raise ConfigError(f"{where}: inconsistent time steps: entity {entity!r} has {len(entries)} rows, the "
                              f"others {usual}; every entity of a party needs the same time steps")
        times = [t for t, _, _ in entries]
        if len(set(times)) != len(times):
            raise ConfigError(f"{where} line {entries[-1][2]}: entity {entity!r} repeats a time step")
    ids = tuple(grouped)
    raw = np.full((len(ids), usual, len(features)), np.nan, dtype=np.float64)
    for i, entity in enumerate(ids):
        for j, (_, cells, _) in enumerate(sorted(grouped[entity], key=lambda e: e[0])):
            raw[i, j] = [np.nan if v is None else v for v in cells]
    values = _standardise_and_fill(raw, missing)
    return PartyData(name, ids, tuple(features), values, *_labels(labels, ids, task, where))


def _is_bad(text: str) -> bool:
    try:
        _number(text)
        return False
    except ValueError:
        return True


def _standardise_and_fill(raw: np.ndarray, missing: str) -> np.ndarray:
    if raw.shape[2] == 0:
        return raw.astype(np.float32)
    flat = raw.reshape(-1, raw.shape[2])
    with warnings.catch_warnings():  # an all-missing column has no mean: it becomes 0
        warnings.simplefilter("ignore", RuntimeWarning)
        mean, std = np.nan_to_num(np.nanmean(flat, axis=0)), np.nanstd(flat, axis=0)
    std = np.where(~np.isfinite(std) | (std == 0), 1.0, std)
    out = (raw - mean) / std
    if missing == "ffill":
        for t in range(1, out.shape[1]):
            gap = np.isnan(out[:, t])
            out[:, t][gap] = out[:, t - 1][gap]
    return np.nan_to_num(out, nan=0.0).astype(np.float32)


def _labels(labels: dict[str, str], ids: tuple[str, ...], task: str, where: str
            ) -> tuple[np.ndarray | None, tuple[str, ...]]:
    if not labels:
        return None, ()
    if task == "regression":
        try:
            target = np.array([float(labels[e]) for e in ids], dtype=np.float32)
        except ValueError:
            raise ConfigError(f"{where}: regression labels must be numbers") from None
        if not np.isfinite(target).all():
            raise ConfigError(f"{where}: regression labels must be finite")
        return target, ()
    classes = sorted(set(labels.values()), key=_time_key)
    if len(classes) < 2:
        raise ConfigError(f"{where}: classification needs at least two label values, got {classes}")
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[labels[e]] for e in ids], dtype=np.int64), tuple(classes)
