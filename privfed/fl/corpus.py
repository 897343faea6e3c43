"""The embedded cross-device corpus: every documented class, function and method of the installed Python standard
library is one *user*, its docstring that user's text.

Why: cross-device federated learning (keyboards, assistants) aggregates hundreds to thousands of small, different
users per round, and user-level DP only learns at that scale. The standard library's sources are present on every
Python install, so this corpus needs no download and no data shipped with privfed: it is read at run time, offline,
with :mod:`ast` (the modules are parsed, never imported, so nothing runs and ``python -OO`` does not matter).

Users are naturally non-IID: an ``asyncio`` coroutine, an ``email`` header class and a ``decimal`` context method
document different things in different vocabularies and at different lengths (hundreds of characters to a few
thousand). A user is kept when its docstring has at least :data:`MIN_CHARS` characters, so each has a few samples.
The key names the object (``json/decoder.py:JSONDecoder.raw_decode``); ``data.modules`` restricts the corpus to
those modules' files (``json`` covers ``json/*.py``).

The text depends on the Python version (recorded in each run's ``summary.json``); the list is sorted, so a given
interpreter always yields the same users in the same order.
"""

from __future__ import annotations

import ast
import functools
import os
import sysconfig
from pathlib import Path
from typing import Sequence

from protocols.errors import ConfigError

__all__ = ["MIN_CHARS", "stdlib_users", "stdlib_root"]

#: shortest docstring kept as a user (about six 32-character samples)
MIN_CHARS = 200
_SKIP_DIRS = frozenset({"site-packages", "dist-packages", "__pycache__", "idlelib", "lib2to3", "turtledemo",
                        "ensurepip", "test", "tests"})


def stdlib_root() -> Path:
    """The directory holding the standard library's ``.py`` sources."""
    return Path(sysconfig.get_paths()["stdlib"])


def _source_files(root: Path) -> list[Path]:
    files = []
    for directory, subdirs, names in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d not in _SKIP_DIRS and not d.startswith(("test", ".")))
        files += [Path(directory) / n for n in names if n.endswith(".py") and not n.startswith("test")]
    return sorted(files)


def _module_name(relative: Path) -> str:
    parts = list(relative.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _documented(tree: ast.AST, prefix: str = "") -> list[tuple[str, str]]:
    """(qualified name, docstring) of every class, function and method under ``tree`` (nested ones included)."""
    found = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            name = f"{prefix}{node.name}"
            doc = ast.get_docstring(node, clean=True)
            if doc:
                found.append((name, doc))
            found += _documented(node, name + ".")
    return found


@functools.lru_cache(maxsize=4)
def _all_users(root: str) -> tuple[tuple[str, str, str], ...]:
    """(module, key, text) of every user under ``root``, sorted by key (cached: parsing takes a few seconds)."""
    base = Path(root)
    users: dict[str, tuple[str, str]] = {}
    for file in _source_files(base):
        try:
            tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
        except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
            continue  # a file this interpreter cannot parse is no user's text
        relative = file.relative_to(base)
        module = _module_name(relative)
        for name, doc in _documented(tree):
            if len(doc) < MIN_CHARS:
                continue
            key = f"{relative.as_posix()}:{name}"
            previous = users.get(key)  # same name defined twice (platform branches): one user, both texts
            users[key] = (module, f"{previous[1]}\n\n{doc}" if previous else doc)
    return tuple((module, key, text) for key, (module, text) in sorted(users.items()))


def stdlib_users(modules: Sequence[str] = (), max_chars: int = 0) -> list[tuple[str, str]]:
    """(user key, docstring) per documented object, optionally only of ``modules`` (a package covers its
    submodules), each text capped at ``max_chars`` characters (0: no cap)."""
    root = stdlib_root()
    if not root.is_dir():
        raise ConfigError(f"data.source = 'stdlib-users': the standard library sources are not at {root}")
    users = _all_users(str(root))
    if modules:
        wanted = tuple(modules)
        users = tuple(u for u in users if any(u[0] == m or u[0].startswith(m + ".") for m in wanted))
        missing = [m for m in wanted if not any(u[0] == m or u[0].startswith(m + ".") for u in users)]
        if missing:
            raise ConfigError(f"data.modules: no documented object in standard library module(s) {missing}")
    if not users:
        raise ConfigError(f"data.source = 'stdlib-users': no docstring of {MIN_CHARS}+ characters under {root}")
    return [(key, text[:max_chars] if max_chars else text) for _, key, text in users]
