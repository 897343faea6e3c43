"""Reading real CSV exports: column roles, numeric and categorical features, missing values, time columns.

:func:`read_csv` reads one file or every ``*.csv`` of a folder (same header in each) with the standard library's
``csv`` module and keeps the file and line of every row; a line repeating the header (files joined with ``cat``)
is skipped and counted. :func:`features` turns the chosen columns into a float matrix: ``data.value_columns``
(default: every column other than the key, time, sequence, label and text columns whose present values are mostly
numbers; a column of mostly text is left out with a note, while a stray word in a numeric column is an error
naming its cell), ``data.categorical_columns``
one-hot encoded (categories sorted; a simulation convenience — a deployment agrees the category list publicly).
Missing values (``""``, blank, ``NA``, ``N/A``, ``NaN``, ``null``, ``None``, ``#N/A`` in any case, plus
``data.na_values``) become NaN; :func:`fill_missing` then applies ``data.missing`` within one series:
``error`` (the default: the message names file, line, column and value), ``drop`` (rows with a missing feature are
dropped and counted), ``ffill`` (last observed value; leading gaps take the first observed value) or
``interpolate`` (linear between observed rows; categorical columns forward-filled). A time column may hold numbers
or ISO 8601 dates/times. Every rejection is a :class:`~protocols.errors.ConfigError` naming what is wrong.
"""

from __future__ import annotations

import csv
import datetime as _dt
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from protocols.errors import ConfigError

__all__ = ["NA_TOKENS", "CsvTable", "Features", "read_csv", "is_missing", "parse_time", "features", "fill_missing"]

NA_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none", "#n/a"})


@dataclass(frozen=True)
class CsvTable:
    """Raw string cells with the (file, line) each row came from."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    where: tuple[tuple[str, int], ...]
    repeated_headers: int = 0

    def column(self, name: str, key: str) -> int:
        if name not in self.header:
            raise ConfigError(f"{key}: column {name!r} is not in {self.where[0][0] if self.where else 'the CSV'} "
                              f"(columns: {list(self.header)})")
        return self.header.index(name)

    def at(self, row: int) -> str:
        file, line = self.where[row]
        return f"{file} line {line}"


def _files(path: str | Path) -> list[Path]:
    root = Path(path).expanduser()
    if root.is_dir():
        files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() == ".csv")
        if not files:
            raise ConfigError(f"data.path: folder {root} holds no .csv files")
        return files
    if root.is_file():
        return [root]
    raise ConfigError(f"data.path: {root} does not exist")


def read_csv(path: str | Path) -> CsvTable:
    """Every row of a CSV file (or of each ``*.csv`` in a folder, sorted by name, all with the same header)."""
    header: tuple[str, ...] | None = None
    rows: list[tuple[str, ...]] = []
    where: list[tuple[str, int]] = []
    repeated = 0
    for file in _files(path):
        try:
            with file.open(newline="", encoding="utf-8-sig") as handle:
                reader = csv.reader(handle)
                head = next(reader, None)
                if head is None:
                    raise ConfigError(f"data.path: {file} is empty (no header line)")
                head_t = tuple(h.strip() for h in head)
                if len(set(head_t)) != len(head_t):
                    raise ConfigError(f"data.path: {file} line 1: duplicate column names in {list(head_t)}")
                if header is None:
                    header = head_t
                elif head_t != header:
                    raise ConfigError(f"data.path: {file} line 1: header {list(head_t)} differs from the first "
                                      f"file's {list(header)}")
                for row in reader:
                    if not row or all(not cell.strip() for cell in row):
                        continue  # blank line
                    if tuple(cell.strip() for cell in row) == header:
                        repeated += 1  # files concatenated with their headers (cat a.csv b.csv)
                        continue
                    if len(row) != len(header):
                        raise ConfigError(f"data.path: {file} line {reader.line_num}: {len(row)} fields, the header "
                                          f"has {len(header)}")
                    rows.append(tuple(row))
                    where.append((str(file), reader.line_num))
        except OSError as exc:
            raise ConfigError(f"data.path: cannot read {file}: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"data.path: {file} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        except csv.Error as exc:
            raise ConfigError(f"data.path: {file}: malformed CSV: {exc}") from None
    if not rows or header is None:
        raise ConfigError(f"data.path: {path} holds no data rows")
    return CsvTable(header, tuple(rows), tuple(where), repeated)


def is_missing(text: str, extra: Iterable[str] = ()) -> bool:
    stripped = text.strip()
    return stripped.lower() in NA_TOKENS or stripped in set(extra)


@dataclass(frozen=True)
class _Column:
    """One column parsed once: values (NaN where missing or not a number), and which cells are missing or bad."""

    cells: np.ndarray
    values: np.ndarray
    missing: np.ndarray
    bad: np.ndarray


def _parse(table: CsvTable, name: str, extra: Iterable[str]) -> _Column:
    """Each distinct cell text is classified and converted once (real exports repeat a few thousand texts)."""
    j = table.header.index(name)
    cells = np.array([row[j] for row in table.rows], dtype=str)
    distinct, inverse = np.unique(cells, return_inverse=True)
    extra_set = {e.strip() for e in extra}
    gone = np.array([d.strip().lower() in NA_TOKENS or d.strip() in extra_set for d in distinct], dtype=bool)
    numbers = [None if g else _number(d) for d, g in zip(distinct, gone)]
    values = np.array([np.nan if v is None else v for v in numbers], dtype=np.float64)
    bad = np.array([v is None and not g for v, g in zip(numbers, gone)], dtype=bool)
    inverse = inverse.reshape(-1)
    return _Column(cells, values[inverse], gone[inverse], bad[inverse])


def _refuse_missing(table: CsvTable, name: str, column: _Column, missing: str) -> None:
    """Under ``data.missing = 'error'``, the first missing cell of ``column`` is an error naming line and value."""
    if missing == "error" and column.missing.any():
        i = int(np.argmax(column.missing))
        raise ConfigError(f"data.missing = 'error': {table.at(i)}, column {name!r}: missing value "
                          f"{str(column.cells[i])!r} (choose data.missing = drop, ffill or interpolate)")


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_time(text: str, where: str, column: str) -> float:
    """A number, or an ISO 8601 date/time as seconds since the epoch (naive times read as UTC)."""
    value = _number(text.strip())
    if value is not None:
        return value
    try:
        moment = _dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"data.time_column: {where}, column {column!r}: value {text!r} is neither a number nor "
                          "an ISO date/time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.timezone.utc)
    return moment.timestamp()


@dataclass(frozen=True)
class Features:
    """The feature matrix (NaN where missing), its column names and which columns are one-hot categories."""

    values: np.ndarray
    names: tuple[str, ...]
    categorical: np.ndarray
    notes: tuple[str, ...]

    def missing_cells(self, rows: np.ndarray | None = None) -> int:
        """Missing CSV cells (a missing category counts once, not once per one-hot column)."""
        values = self.values if rows is None else self.values[rows]
        gone = np.isnan(values)
        return int(gone[:, ~self.categorical].sum()) + int(
            sum(gone[:, [k for k, n in enumerate(self.names) if n.startswith(f"{c}=")]].any(axis=1).sum()
                for c in {n.split("=", 1)[0] for n, cat in zip(self.names, self.categorical) if cat}))


def features(table: CsvTable, value_columns: Sequence[str], categorical_columns: Sequence[str],
             reserved: Sequence[str], missing: str, na_values: Sequence[str] = ()) -> Features:
    """Resolve the feature columns and convert them (see the module docstring)."""
    notes: list[str] = []
    if table.repeated_headers:
        notes.append(f"{table.repeated_headers} repeated header lines skipped (concatenated files)")
    reserved_set = {c for c in reserved if c}
    for name in (*value_columns, *categorical_columns):
        table.column(name, "data.value_columns" if name in value_columns else "data.categorical_columns")
    categorical = list(dict.fromkeys(categorical_columns))
    numeric: list[str]
    if value_columns:
        numeric = [c for c in dict.fromkeys(value_columns) if c not in categorical]
    else:
        numeric = []
        for name in table.header:
            if name in reserved_set or name in categorical:
                continue
            column = _parse(table, name, na_values)
            present = int((~column.missing).sum())
            if not present:
                notes.append(f"column {name!r} has no values: left out of the features")
            elif int(column.bad.sum()) * 2 > present:
                first = int(np.argmax(column.bad))
                notes.append(f"column {name!r} is not numeric ({str(column.cells[first])!r} on {table.at(first)}): "
                             "left out of the features (list it in data.categorical_columns to one-hot encode it)")
            else:
                numeric.append(name)  # mostly numbers: a stray word below is an error naming its cell
    if not numeric and not categorical:
        raise ConfigError(f"data.value_columns: {table.where[0][0]} has no numeric feature columns besides "
                          f"{sorted(reserved_set)}")
    n = len(table.rows)
    blocks: list[np.ndarray] = []
    names: list[str] = []
    is_cat: list[bool] = []
    for name in numeric:
        column = _parse(table, name, na_values)
        _refuse_missing(table, name, column, missing)
        if column.bad.any():
            i = int(np.argmax(column.bad))
            raise ConfigError(f"data.value_columns: {table.at(i)}, column {name!r}: value {str(column.cells[i])!r} "
                              "is not a finite number")
        blocks.append(column.values[:, None])
        names.append(name)
        is_cat.append(False)
    for name in categorical:
        column = _parse(table, name, na_values)
        _refuse_missing(table, name, column, missing)
        stripped = np.char.strip(column.cells)
        categories = sorted(set(stripped[~column.missing].tolist()))
        if not categories:
            raise ConfigError(f"data.categorical_columns: column {name!r} has no values")
        onehot = (stripped[:, None] == np.array(categories, dtype=str)[None, :]).astype(np.float64)
        onehot[column.missing] = np.nan
        blocks.append(onehot)
        names.extend(f"{name}={c}" for c in categories)
        is_cat.extend([True] * len(categories))
    return Features(np.concatenate(blocks, axis=1), tuple(names), np.array(is_cat), tuple(notes))


def fill_missing(values: np.ndarray, categorical: np.ndarray, policy: str, unit: str,
                 names: Sequence[str]) -> np.ndarray:
    """Fill NaN within one series, rows in time order (``ffill`` or ``interpolate``); returns a new array."""
    out = np.array(values, dtype=np.float64, copy=True)
    if policy not in ("ffill", "interpolate") or not np.isnan(out).any():
        return out
    rows = np.arange(out.shape[0])
    for j in range(out.shape[1]):
        column = out[:, j]
        present = ~np.isnan(column)
        if present.all():
            continue
        if not present.any():
            raise ConfigError(f"data.missing = {policy!r}: series {unit!r} has no value at all in column "
                              f"{names[j]!r}; drop that column (data.value_columns) or that series")
        if policy == "interpolate" and not categorical[j]:
            out[:, j] = np.interp(rows, rows[present], column[present])
        else:
            last = np.maximum.accumulate(np.where(present, rows, -1))
            first = int(np.argmax(present))
            out[:, j] = column[np.where(last >= 0, last, first)]
    return out
