"""Users' own data turned into samples: CSV time series (forecast), long CSVs of labelled sequences, labelled
texts (a CSV text column or one folder per label) and LEAF JSON.

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
from typing import Any, Sequence

import numpy as np

from protocols.errors import ConfigError

from . import tabular
from .config import DataConfig
from .leaf import read_leaf
from .metrics import IGNORE
from .scaling import Moments, Scale
from .text import build_vocab, tokenize, with_pad

__all__ = ["Samples", "csv_forecast", "csv_sequences", "csv_texts", "label_folders", "leaf_samples",
           "series_samples"]


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


def _key_column(table: tabular.CsvTable, config: DataConfig) -> int | None:
    """The client column's index; None when a natural partition is not asked for, or when the *default* column
    name ``client`` is absent (the data set then has no natural clients: see :func:`privfed.fl.data.build_federated`).
    A key column the user named that is absent is an error."""
    if config.partition != "natural":
        return None
    if config.key_column == "client" and "client" not in table.header:
        return None
    return table.column(config.key_column, "data.key_column")


def _classes(labels: Sequence[str]) -> tuple[tuple[str, ...], np.ndarray]:
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


def _scale(units: list[np.ndarray], categorical: np.ndarray) -> Scale:
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
    out = np.empty(len(table.rows))
    for i, row in enumerate(table.rows):
        if tabular.is_missing(row[j]):
            raise ConfigError(f"data.time_column: {table.at(i)}, column {column!r}: missing time {row[j]!r}")
        out[i] = tabular.parse_time(row[j], table.at(i), column)
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
    missing_cells = int(np.isnan(feats.values[keep]).sum())
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
    scale = _scale(units, feats.categorical)
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
    xs, ys, keys, short = [], [], [], []
    for k, (name, series) in enumerate(units):
        n = series.shape[0] - seq_len
        if n <= 0:
            short.append(name)
            continue
        xs.append(np.stack([series[i:i + seq_len] for i in range(n)]).astype(np.float32))
        ys.append(series[seq_len:, target_index].astype(np.float32))
        keys.append(np.full(n, k))
    if short:
        notes.append(f"{len(short)} series with at most data.seq_len = {seq_len} steps left out "
                     f"(e.g. {short[0]!r})")
    if not xs:
        raise ConfigError(f"data.seq_len = {seq_len} leaves no samples: every series is too short")
    return Samples(np.concatenate(xs), np.concatenate(ys), np.concatenate(keys), [n for n, _ in units],
                   channels=channels, output_size=len(target_index), scale=scale, target_names=target_names,
                   notes=notes)


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
    key_j = _key_column(table, config)
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
    missing_cells = int(np.isnan(feats.values[keep]).sum())
    sequences, labels, owners = [], [], []
    for sequence in sorted(groups):
        rows = sorted(groups[sequence], key=lambda i: times[i])
        labels.append(_consistent(table, rows, label_j, "label", sequence))
        owners.append(_consistent(table, rows, key_j, "key", sequence) if key_j is not None else sequence)
        sequences.append(tabular.fill_missing(feats.values[rows], feats.categorical, config.missing, sequence,
                                              feats.names))
    _filled_note(config.missing, missing_cells, notes)
    classes, y = _classes(labels)
    owner_names = sorted(set(owners))
    owner_index = {o: k for k, o in enumerate(owner_names)}
    per_owner: dict[str, list[np.ndarray]] = {}
    for owner, seq in zip(owners, sequences):
        per_owner.setdefault(owner, []).append(seq)
    scale = _scale([np.concatenate(per_owner[o]) for o in owner_names], feats.categorical)
    T, C = config.seq_len, len(feats.names)
    x = np.zeros((len(sequences), T, C + 1), dtype=np.float32)
    truncated = 0
    for n, seq in enumerate(sequences):
        if seq.shape[0] > T:
            truncated += 1
            seq = seq[-T:]
        x[n, :seq.shape[0], :C] = scale.apply(seq)
        x[n, :seq.shape[0], C] = 1.0
    if truncated:
        notes.append(f"{truncated} of {len(sequences)} sequences longer than data.seq_len = {T} keep their last "
                     f"{T} steps")
    keys = np.array([owner_index[o] for o in owners])
    return Samples(x, y, keys, owner_names, classes=classes, channels=C + 1, output_size=len(classes), masked=True,
                   notes=notes, natural=key_j is not None or config.partition != "natural")


def _text_samples(docs: list[tuple[str, str, str]], config: DataConfig, notes: list[str]) -> Samples:
    """(owner, label, text) documents -> padded token windows, one label per document."""
    token_lists = [tokenize(text, config.tokens) for _, _, text in docs]
    empty = sum(1 for t in token_lists if not t)
    if empty:
        notes.append(f"{empty} empty documents left out")
    docs_t = [(o, label, t) for (o, label, _), t in zip(docs, token_lists) if t]
    if not docs_t:
        raise ConfigError("data.path: every document is empty")
    vocab = with_pad(build_vocab([t for _, _, t in docs_t], config.tokens, config.vocab_size))
    index = {token: i for i, token in enumerate(vocab)}
    classes, label_ids = _classes([label for _, label, _ in docs_t])
    owner_names = sorted({o for o, _, _ in docs_t})
    owner_index = {o: k for k, o in enumerate(owner_names)}
    T = config.seq_len
    xs, ys, keys = [], [], []
    for (owner, _, tokens), label in zip(docs_t, label_ids):
        ids = [index.get(t, 0) for t in tokens]
        for start in range(0, len(ids), T):
            chunk = ids[start:start + T]
            xs.append(chunk + [1] * (T - len(chunk)))
            ys.append(label)
            keys.append(owner_index[owner])
    return Samples(np.array(xs, dtype=np.int64), np.array(ys, dtype=np.int64), np.array(keys), owner_names,
                   vocab=vocab, classes=classes, output_size=len(classes), pad_index=1, masked=True, notes=notes)


def csv_texts(config: DataConfig) -> Samples:
    """A CSV of documents: ``data.text_column`` and ``data.label_column`` per row (clients by ``key_column``)."""
    table = tabular.read_csv(config.path)
    text_j = table.column(config.text_column, "data.text_column")
    label_j = table.column(config.label_column, "data.label_column")
    key_j = _key_column(table, config)
    docs, notes, dropped = [], [], 0
    for i, row in enumerate(table.rows):
        for j, column in ((label_j, config.label_column), (text_j, config.text_column)):
            if tabular.is_missing(row[j], config.na_values):
                if config.missing != "drop":
                    raise ConfigError(f"data.missing = {config.missing!r}: {table.at(i)}, column {column!r}: "
                                      f"missing value {row[j]!r} (data.missing = 'drop' drops such rows)")
        if any(tabular.is_missing(row[j], config.na_values) for j in (label_j, text_j)):
            dropped += 1
            continue
        docs.append((row[key_j].strip() if key_j is not None else f"row-{i}", row[label_j].strip(), row[text_j]))
    if dropped:
        notes.append(f"data.missing = 'drop': {dropped} rows without a text or label dropped")
    samples = _text_samples(docs, config, notes)
    samples.natural = key_j is not None or config.partition != "natural"
    return samples


def label_folders(config: DataConfig) -> Samples:
    """``data.path/<label>/<user>.txt``: one label per folder; files of the same name are one user (client)."""
    root = Path(config.path).expanduser()
    docs = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for file in sorted(p for p in folder.iterdir() if p.is_file() and p.suffix == ".txt"):
            try:
                text = file.read_text(encoding="utf-8", errors="replace")
            except OSError as exc:
                raise ConfigError(f"data.path: cannot read {file}: {exc.strerror or exc}") from None
            docs.append((file.stem, folder.name, text[:config.max_chars_per_client] if config.max_chars_per_client
                         else text))
    if not docs:
        raise ConfigError(f"data.path: no .txt files in the label folders of {root}")
    return _text_samples(docs, config, [])


def _leaf_text(x: Any) -> str | None:
    if isinstance(x, str):
        return x
    if isinstance(x, list) and x and all(isinstance(v, str) for v in x):
        return x[-1]  # Sent140: [id, date, query, user, text]
    return None


def _leaf_values(x: Any) -> np.ndarray | None:
    try:
        array = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if array.ndim == 1:
        array = array[:, None]
    return array if array.ndim == 2 and array.size and np.isfinite(array).all() else None


def leaf_samples(config: DataConfig) -> Samples:
    """LEAF users as natural clients: next-character (Shakespeare) or classification of texts or value sequences."""
    users = read_leaf(config.path)
    names = [u for u, _, _ in users]
    if config.task == "next-token":
        texts = []
        for user, xs, ys in users:
            for n, (x, y) in enumerate(zip(xs, ys)):
                if not isinstance(x, str) or not isinstance(y, str):
                    raise ConfigError(f"data.path: LEAF user {user!r} sample {n}: next-token needs text x and y "
                                      f"(Shakespeare), got {type(x).__name__} and {type(y).__name__}")
                tokens = tokenize(x + y, config.tokens)[-(config.seq_len + 1):]
                if len(tokens) >= 2:  # one token has nothing to predict from
                    texts.append((user, tokens))
        if len(texts) < sum(len(xs) for _, xs, _ in users):
            short = sum(len(xs) for _, xs, _ in users) - len(texts)
            notes_nt = [f"{short} LEAF samples with fewer than 2 tokens left out"]
        else:
            notes_nt = []
        if not texts:
            raise ConfigError(f"data.path: {config.path} holds no LEAF sample of 2 or more tokens")
        vocab = build_vocab([t for _, t in texts], config.tokens, config.vocab_size)
        index = {token: i for i, token in enumerate(vocab)}
        T = config.seq_len
        x_out = np.zeros((len(texts), T), dtype=np.int64)
        y_out = np.full((len(texts), T), IGNORE, dtype=np.int64)
        keys = np.empty(len(texts), dtype=np.int64)
        user_index = {u: k for k, u in enumerate(names)}
        for n, (user, tokens) in enumerate(texts):
            ids = [index.get(t, 0) for t in tokens]
            x_out[n, :len(ids) - 1] = ids[:-1]
            y_out[n, :len(ids) - 1] = ids[1:]
            keys[n] = user_index[user]
        return Samples(x_out, y_out, keys, names, vocab=vocab, output_size=len(vocab), notes=notes_nt)
    first = users[0][1][0]
    if _leaf_text(first) is not None:
        docs = []
        for user, xs, ys in users:
            for n, (x, y) in enumerate(zip(xs, ys)):
                text = _leaf_text(x)
                if text is None:
                    raise ConfigError(f"data.path: LEAF user {user!r} sample {n}: x is not text like the others")
                docs.append((user, str(y), text))
        return _text_samples(docs, config, [])
    sequences, labels, owners = [], [], []
    for user, xs, ys in users:
        for n, (x, y) in enumerate(zip(xs, ys)):
            values = _leaf_values(x)
            if values is None:
                raise ConfigError(f"data.path: LEAF user {user!r} sample {n}: x is neither text nor a finite "
                                  "list of numbers (or of equal-length number lists)")
            sequences.append(values), labels.append(str(y)), owners.append(user)
    width = {s.shape[1] for s in sequences}
    if len(width) > 1:
        raise ConfigError(f"data.path: LEAF samples have different numbers of channels {sorted(width)}")
    classes, y_ids = _classes(labels)
    per_user: dict[str, list[np.ndarray]] = {}
    for owner, seq in zip(owners, sequences):
        per_user.setdefault(owner, []).append(seq)
    C = width.pop()
    scale = _scale([np.concatenate(per_user[u]) for u in names if u in per_user], np.zeros(C, dtype=bool))
    T = config.seq_len
    x = np.zeros((len(sequences), T, C + 1), dtype=np.float32)
    notes = []
    truncated = 0
    for n, seq in enumerate(sequences):
        if seq.shape[0] > T:
            truncated, seq = truncated + 1, seq[-T:]
        x[n, :seq.shape[0], :C] = scale.apply(seq)
        x[n, :seq.shape[0], C] = 1.0
    if truncated:
        notes.append(f"{truncated} samples longer than data.seq_len = {T} keep their last {T} steps")
    user_index = {u: k for k, u in enumerate(names)}
    return Samples(x, y_ids, np.array([user_index[o] for o in owners]), names, classes=classes, channels=C + 1,
                   output_size=len(classes), masked=True, notes=notes)
