"""Users' own data turned into samples: CSV time series (forecast) and long CSVs of labelled sequences (labelled
texts and LEAF JSON are in :mod:`privfed.fl.textdata`).

Each builder returns :class:`Samples`: inputs, targets, the natural client (key) of every sample and what the model
needs to know. Shapes:

* forecast — ``x: float32 (N, T, C)``, ``y: float32 (N, K)`` with K = ``data.target_columns`` (default: every
  numeric feature); inputs and targets standardised with a :class:`~privfed.fl.scaling.Scale` combined from
  per-client statistics; ``scale`` keeps the targets' mean/std so errors are reported in the data's units;
* sequence classification — ``x: float32 (N, T, C + 1)``: right-padded to ``T = data.seq_len`` with a final 0/1
  presence channel (longer sequences keep their last T steps, counted in a note), ``y: int64 (N,)``;
* text classification — ``x: int64 (N, T)`` windows of T tokens (a document's last window right-padded with
  ``<pad>``), ``y: int64 (N,)`` the document's label;
* LEAF next-character — the last ``T + 1`` tokens of ``x + y``: ``x: int64 (N, T)``, ``y: int64 (N, T)`` shifted
  by one; shorter samples padded (targets -100, ignored by the loss).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from protocols.errors import ConfigError

from . import tabular
from .config import DataConfig
from .scaling import Moments, Scale

__all__ = ["Samples", "csv_forecast", "csv_sequences", "series_samples", "pad_sequences", "label_classes",
           "key_column_index", "combined_scale"]


@dataclass
class Samples:
    x: np.ndarray
    y: np.ndarray
    keys: np.ndarray
    names: list[str]
    vocab: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()
    channels: int = 0
    output_size: int = 0
    pad_index: int = -1
    masked: bool = False
    scale: Scale | None = None
    target_names: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)
    natural: bool = True  # False: the file names no clients (keys are series/sequences/rows, not people)


def key_column_index(table: tabular.CsvTable, config: DataConfig) -> int | None:
    """The client column's index; None when a natural partition is not asked for, or when the *default* column
    name ``client`` is absent (the data set then has no natural clients: see :func:`privfed.fl.data.build_federated`).
    A key column the user named that is absent is an error."""
    if config.partition != "natural":
        return None
    if config.key_column == "client" and "client" not in table.header:
        return None
    return table.column(config.key_column, "data.key_column")


def label_classes(labels: Sequence[str]) -> tuple[tuple[str, ...], np.ndarray]:
    """Distinct labels (numerically sorted when all are numbers, else by text) and each label's index."""
    distinct = set(labels)
    try:
        ordered = sorted(distinct, key=float)
    except ValueError:
        ordered = sorted(distinct)
    if len(ordered) < 2:
        raise ConfigError(f"data.label_column: classification needs at least 2 labels, found {ordered}")
    index = {c: k for k, c in enumerate(ordered)}
    return tuple(ordered), np.array([index[label] for label in labels], dtype=np.int64)


def combined_scale(units: list[np.ndarray], categorical: np.ndarray) -> Scale:
    """Combine per-client moments; one-hot category columns are left unscaled."""
    combined = Scale.from_moments(Moments.combine(Moments.of(u) for u in units))
    return Scale(np.where(categorical, 0.0, combined.mean), np.where(categorical, 1.0, combined.std))


def _drop_rows(table: tabular.CsvTable, feats: tabular.Features, config: DataConfig,
               notes: list[str]) -> np.ndarray:
    """Row mask kept after ``data.missing = 'drop'`` (all rows otherwise)."""
    keep = np.ones(len(table.rows), dtype=bool)
    if config.missing == "drop":
        bad = np.isnan(feats.values).any(axis=1)
        keep &= ~bad
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            notes.append(f"data.missing = 'drop': {int(bad.sum())} of {bad.size} rows dropped for a missing value "
                         f"(first: {table.at(first)})")
    return keep


def _times(table: tabular.CsvTable, column: str) -> np.ndarray:
    if not column:
        return np.arange(len(table.rows), dtype=np.float64)
    j = table.column(column, "data.time_column")
    cells = [row[j] for row in table.rows]
    try:  # fast path: every cell a plain finite number
        out = np.array(cells, dtype=np.float64)
        if np.isfinite(out).all():
            return out
    except ValueError:
        pass
    out = np.empty(len(cells))
    for i, cell in enumerate(cells):
        if tabular.is_missing(cell):
            raise ConfigError(f"data.time_column: {table.at(i)}, column {column!r}: missing time {cell!r}")
        out[i] = tabular.parse_time(cell, table.at(i), column)
    return out


def _filled_note(policy: str, before: int, notes: list[str]) -> None:
    if policy in ("ffill", "interpolate") and before:
        notes.append(f"data.missing = {policy!r}: {before} missing cells filled")


def _reserved(config: DataConfig) -> list[str]:
    return [config.key_column, config.time_column, config.sequence_column, config.label_column, config.text_column]


def csv_forecast(config: DataConfig) -> Samples:
    """CSV time series, one per ``data.key_column`` value, windowed for next-step forecasting."""
    table = tabular.read_csv(config.path)
    key_j = None if config.key_column == "client" and "client" not in table.header else \
        table.column(config.key_column, "data.key_column")  # series identity, whatever the partition
    feats = tabular.features(table, config.value_columns, config.categorical_columns, _reserved(config),
                             config.missing, config.na_values)
    notes = list(feats.notes)
    keep = _drop_rows(table, feats, config, notes)
    times = _times(table, config.time_column)
    groups: dict[str, list[int]] = {}
    for i in np.flatnonzero(keep):
        groups.setdefault(table.rows[i][key_j].strip() if key_j is not None else Path(config.path).stem,
                          []).append(int(i))
    units, names = [], []
    missing_cells = feats.missing_cells(keep)
    for key in sorted(groups):
        rows = sorted(groups[key], key=lambda i: times[i])
        units.append(tabular.fill_missing(feats.values[rows], feats.categorical, config.missing, key, feats.names))
        names.append(key)
    _filled_note(config.missing, missing_cells, notes)
    numeric = [n for n, c in zip(feats.names, feats.categorical) if not c]
    targets = list(config.target_columns) or numeric
    unknown = [t for t in targets if t not in numeric]
    if unknown:
        raise ConfigError(f"data.target_columns: {unknown} are not numeric feature columns (features: {numeric})")
    target_index = [feats.names.index(t) for t in targets]
    scale = combined_scale(units, feats.categorical)
    samples = series_samples([(n, scale.apply(u)) for n, u in zip(names, units)], config.seq_len, target_index,
                             scale.select(target_index), tuple(targets), notes)
    samples.natural = key_j is not None
    return samples


def series_samples(units: list[tuple[str, np.ndarray]], seq_len: int, target_index: list[int] | None = None,
                   scale: Scale | None = None, target_names: tuple[str, ...] = (),
                   notes: list[str] | None = None) -> Samples:
    """Windows of ``seq_len`` steps and the next step's target columns, per unit; too-short units are noted."""
    notes = list(notes or [])
    channels = int(units[0][1].shape[1])
    target_index = list(range(channels)) if target_index is None else target_index
    counts = [max(0, series.shape[0] - seq_len) for _, series in units]
    short = [name for (name, _), n in zip(units, counts) if n == 0]
    if short:
        notes.append(f"{len(short)} series with at most data.seq_len = {seq_len} steps left out "
                     f"(e.g. {short[0]!r})")
    if not sum(counts):
        raise ConfigError(f"data.seq_len = {seq_len} leaves no samples: every series is too short")
    x = np.empty((sum(counts), seq_len, channels), dtype=np.float32)  # filled in place: no second copy
    y = np.empty((sum(counts), len(target_index)), dtype=np.float32)
    keys = np.repeat(np.arange(len(units)), counts)
    offset = 0
    for (_, series), n in zip(units, counts):
        if n:
            windows = np.lib.stride_tricks.sliding_window_view(series, seq_len, axis=0)  # (n + 1, C, T) view
            x[offset:offset + n] = windows[:n].transpose(0, 2, 1)
            y[offset:offset + n] = series[seq_len:, target_index]
            offset += n
    return Samples(x, y, keys, [n for n, _ in units],
                   channels=channels, output_size=len(target_index), scale=scale, target_names=target_names,
                   notes=notes)


def pad_sequences(sequences: list[np.ndarray], scale: Scale, T: int, notes: list[str]) -> np.ndarray:
    """Standardised sequences right-padded to ``T`` steps with a final presence channel; a longer sequence keeps
    its last ``T`` steps (counted in ``notes``)."""
    C = sequences[0].shape[1]
    x = np.zeros((len(sequences), T, C + 1), dtype=np.float32)
    truncated = 0
    for n, seq in enumerate(sequences):
        if seq.shape[0] > T:
            truncated, seq = truncated + 1, seq[-T:]
        x[n, :seq.shape[0], :C] = scale.apply(seq)
        x[n, :seq.shape[0], C] = 1.0
    if truncated:
        notes.append(f"{truncated} of {len(sequences)} sequences longer than data.seq_len = {T} keep their last "
                     f"{T} steps")
    return x


def _consistent(table: tabular.CsvTable, rows: list[int], j: int, what: str, sequence: str) -> str:
    values = {table.rows[i][j].strip() for i in rows}
    if len(values) > 1:
        a = next(i for i in rows if table.rows[i][j].strip() == sorted(values)[0])
        b = next(i for i in rows if table.rows[i][j].strip() == sorted(values)[1])
        raise ConfigError(f"data.{what}_column: sequence {sequence!r} has more than one {what}: "
                          f"{table.rows[a][j].strip()!r} ({table.at(a)}) and {table.rows[b][j].strip()!r} "
                          f"({table.at(b)})")
    return values.pop()


def csv_sequences(config: DataConfig) -> Samples:
    """A long CSV of labelled sequences: one sequence per ``data.sequence_column`` value, one label each."""
    table = tabular.read_csv(config.path)
    seq_j = table.column(config.sequence_column, "data.sequence_column")
    label_j = table.column(config.label_column, "data.label_column")
    key_j = key_column_index(table, config)
    feats = tabular.features(table, config.value_columns, config.categorical_columns, _reserved(config),
                             config.missing, config.na_values)
    notes = list(feats.notes)
    keep = _drop_rows(table, feats, config, notes)
    for i in np.flatnonzero(keep):
        if tabular.is_missing(table.rows[i][label_j], config.na_values):
            raise ConfigError(f"data.label_column: {table.at(int(i))}, column {config.label_column!r}: missing "
                              f"label {table.rows[i][label_j]!r}")
    times = _times(table, config.time_column)
    groups: dict[str, list[int]] = {}
    for i in np.flatnonzero(keep):
        groups.setdefault(table.rows[i][seq_j].strip(), []).append(int(i))
    missing_cells = feats.missing_cells(keep)
    sequences, labels, owners = [], [], []
    for sequence in sorted(groups):
        rows = sorted(groups[sequence], key=lambda i: times[i])
        labels.append(_consistent(table, rows, label_j, "label", sequence))
        owners.append(_consistent(table, rows, key_j, "key", sequence) if key_j is not None else sequence)
        sequences.append(tabular.fill_missing(feats.values[rows], feats.categorical, config.missing, sequence,
                                              feats.names))
    _filled_note(config.missing, missing_cells, notes)
    classes, y = label_classes(labels)
    owner_names = sorted(set(owners))
    owner_index = {o: k for k, o in enumerate(owner_names)}
    per_owner: dict[str, list[np.ndarray]] = {}
    for owner, seq in zip(owners, sequences):
        per_owner.setdefault(owner, []).append(seq)
    scale = combined_scale([np.concatenate(per_owner[o]) for o in owner_names], feats.categorical)
    x = pad_sequences(sequences, scale, config.seq_len, notes)
    keys = np.array([owner_index[o] for o in owners])
    return Samples(x, y, keys, owner_names, classes=classes, channels=x.shape[2], output_size=len(classes),
                   masked=True, notes=notes, natural=key_j is not None or config.partition != "natural")
