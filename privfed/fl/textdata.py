"""Labelled texts and LEAF JSON turned into samples (see :mod:`privfed.fl.userdata` for the shapes).

* :func:`csv_texts` — a CSV of documents: ``data.text_column`` and ``data.label_column`` per row;
* :func:`label_folders` — ``data.path/<label>/<user>.txt``, one folder per label;
* :func:`leaf_samples` — LEAF users as natural clients: Shakespeare-style next-character prediction, or
  classification of a text (Sent140: the last string of ``x``), a list of numbers or a list of number lists.

Texts become windows of ``data.seq_len`` tokens, a document's last window right-padded with ``<pad>`` (index 1),
each labelled with its document's label; the model reads each window's last real token (exact masking).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from protocols.errors import ConfigError

from . import tabular
from .config import DataConfig
from .leaf import read_leaf
from .metrics import IGNORE
from .text import build_vocab, tokenize, with_pad
from .userdata import Samples, combined_scale, key_column_index, label_classes, pad_sequences

__all__ = ["csv_texts", "label_folders", "leaf_samples"]


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
    classes, label_ids = label_classes([label for _, label, _ in docs_t])
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
    key_j = key_column_index(table, config)
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
    classes, y_ids = label_classes(labels)
    per_user: dict[str, list[np.ndarray]] = {}
    for owner, seq in zip(owners, sequences):
        per_user.setdefault(owner, []).append(seq)
    scale = combined_scale([np.concatenate(per_user[u]) for u in names if u in per_user],
                           np.zeros(width.pop(), dtype=bool))
    notes: list[str] = []
    x = pad_sequences(sequences, scale, config.seq_len, notes)
    user_index = {u: k for k, u in enumerate(names)}
    return Samples(x, y_ids, np.array([user_index[o] for o in owners]), names, classes=classes, channels=x.shape[2],
                   output_size=len(classes), masked=True, notes=notes)
