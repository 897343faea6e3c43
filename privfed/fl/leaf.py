"""The LEAF benchmark's JSON format (Caldas et al., 2018): Shakespeare, Sent140, FEMNIST-style per-user data.

A LEAF file holds ``{"users": [...], "num_samples": [...], "user_data": {user: {"x": [...], "y": [...]}}}``
(``hierarchies`` optional); LEAF's own tools split each data set into several such files (``all_data_0.json``, ...
or ``train/`` and ``test/``), so ``data.path`` may be one file or a folder whose ``*.json`` files (searched
recursively, sorted) are read and merged by user. Every user's ``x`` and ``y`` must have the same length, and
``num_samples`` (when present) must match it — a mismatch is an error naming the file and the user.

This module only reads and validates; :mod:`privfed.fl.userdata` turns the samples into windows (Shakespeare:
next-character; other data sets: classification of a text, a sequence of numbers, or a sequence of vectors).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from protocols.errors import ConfigError

__all__ = ["LeafUser", "read_leaf"]

LeafUser = tuple[str, list[Any], list[Any]]


def _files(path: str | Path) -> list[Path]:
    root = Path(path).expanduser()
    if root.is_dir():
        files = sorted(p for p in root.rglob("*.json") if p.is_file())
        if not files:
            raise ConfigError(f"data.path: folder {root} holds no LEAF .json files")
        return files
    if root.is_file():
        return [root]
    raise ConfigError(f"data.path: {root} does not exist")


def _one(file: Path) -> dict[str, tuple[list[Any], list[Any]]]:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"data.path: cannot read {file}: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"data.path: {file} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("user_data"), dict):
        raise ConfigError(f"data.path: {file} is not a LEAF file (needs a 'user_data' object of users)")
    users = data.get("users", list(data["user_data"]))
    counts = data.get("num_samples")
    if not isinstance(users, list) or (counts is not None and
                                       (not isinstance(counts, list) or len(counts) != len(users))):
        raise ConfigError(f"data.path: {file}: 'users' and 'num_samples' must be lists of the same length")
    out: dict[str, tuple[list[Any], list[Any]]] = {}
    for position, user in enumerate(users):
        record = data["user_data"].get(user) if isinstance(user, str) else None
        if not isinstance(record, dict) or not isinstance(record.get("x"), list) \
                or not isinstance(record.get("y"), list):
            raise ConfigError(f"data.path: {file}: user {user!r} has no 'x' and 'y' lists in 'user_data'")
        xs, ys = record["x"], record["y"]
        if len(xs) != len(ys):
            raise ConfigError(f"data.path: {file}: user {user!r} has {len(xs)} x but {len(ys)} y")
        if counts is not None and counts[position] != len(xs):
            raise ConfigError(f"data.path: {file}: user {user!r}: num_samples says {counts[position]}, "
                              f"user_data holds {len(xs)}")
        out[user] = (list(xs), list(ys))
    return out


def read_leaf(path: str | Path) -> list[LeafUser]:
    """(user, xs, ys) per user, users in sorted order, samples of a user merged across files in file order."""
    merged: dict[str, tuple[list[Any], list[Any]]] = {}
    for file in _files(path):
        for user, (xs, ys) in _one(file).items():
            into = merged.setdefault(user, ([], []))
            into[0].extend(xs)
            into[1].extend(ys)
    users = [(user, xs, ys) for user, (xs, ys) in sorted(merged.items()) if xs]
    if not users:
        raise ConfigError(f"data.path: {path} holds no LEAF samples")
    return users
