"""Raw data sources, each a list of (key, content) units before tokenisation and windowing.

* :func:`stdlib_docstrings` — the embedded default, offline on any machine: for each of a fixed list of standard
  library modules, its module docstring followed by the docstrings of its public classes and functions (sorted by
  name). One unit per module, so clients differ naturally in subject, vocabulary and size. The text depends on the
  Python version (recorded in ``summary.json``); under ``python -OO`` docstrings are stripped and this refuses.
* :func:`text_files` — a user's plain-text file, or every ``*.txt`` file of a directory (one unit per file).
* :func:`synthetic_series` — multivariate series with client-specific dynamics (seasonal periods, phases, AR(1)
  noise, channel mixing), generated from the experiment seed.
* :func:`has_label_folders` — whether a text path is laid out as one folder per label (text classification).

CSV exports, labelled sequences and LEAF JSON are read by :mod:`privfed.fl.tabular`, :mod:`privfed.fl.leaf` and
turned into samples by :mod:`privfed.fl.userdata`.
"""

from __future__ import annotations

import importlib
import inspect
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from protocols.errors import ConfigError

__all__ = ["DEFAULT_MODULES", "stdlib_docstrings", "text_files", "synthetic_series", "has_label_folders"]

#: stdlib modules with substantial docstrings on Python 3.11+ (pure Python, no GUI, importable everywhere)
DEFAULT_MODULES: tuple[str, ...] = ("argparse", "configparser", "difflib", "inspect", "json", "pdb", "re",
                                    "statistics", "subprocess", "typing")


def _module_text(name: str) -> str:
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        raise ConfigError(f"data.modules: cannot import standard library module {name!r}: {exc}") from None
    parts = [inspect.getdoc(module) or ""]
    with warnings.catch_warnings():  # deprecated aliases (typing.io, typing.re) warn when touched
        warnings.simplefilter("ignore")
        for attribute in sorted(vars(module)):
            if attribute.startswith("_"):
                continue
            obj = vars(module)[attribute]
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and getattr(obj, "__module__", None) == module.__name__:
                doc = inspect.getdoc(obj)
                if doc:
                    parts.append(doc)
    return "\n\n".join(p for p in parts if p)


def stdlib_docstrings(modules: Sequence[str] = (), max_chars: int = 0) -> list[tuple[str, str]]:
    """(module name, docstring text) per module, each capped at ``max_chars`` characters (0: no cap)."""
    units = []
    for name in modules or DEFAULT_MODULES:
        text = _module_text(name)
        units.append((name, text[:max_chars] if max_chars else text))
    if not any(text for _, text in units):
        raise ConfigError("the standard library docstrings are empty (is Python running with -OO?); "
                          "choose another data.source")
    return [(name, text) for name, text in units if text]


def text_files(path: str | Path, max_chars: int = 0) -> list[tuple[str, str]]:
    """(file name, text) for a file or for each ``*.txt`` file of a directory, sorted by name."""
    root = Path(path).expanduser()
    if root.is_dir():
        files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix == ".txt")
        if not files:
            raise ConfigError(f"data.path: directory {root} holds no .txt files")
    elif root.is_file():
        files = [root]
    else:
        raise ConfigError(f"data.path: {root} does not exist")
    units = []
    for file in files:
        try:
            text = file.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise ConfigError(f"data.path: cannot read {file}: {exc.strerror or exc}") from None
        units.append((file.name, text[:max_chars] if max_chars else text))
    return units


def synthetic_series(clients: int, length: int, channels: int, rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    """(``client-k``, float32 array ``(length, channels)``) with dynamics that differ from client to client."""
    units = []
    t = np.arange(length, dtype=np.float64)
    for k in range(clients):
        period = rng.uniform(12.0, 48.0)
        phases = rng.uniform(0, 2 * np.pi, channels)
        amplitudes = rng.uniform(0.5, 1.5, channels)
        harmonic = rng.uniform(0.1, 0.5, channels)
        rho = rng.uniform(0.3, 0.9)
        mixing = np.eye(channels) + rng.normal(0, 0.3, (channels, channels))
        trend = rng.normal(0, 0.002, channels)
        seasonal = (amplitudes * np.sin(2 * np.pi * t[:, None] / period + phases)
                    + harmonic * np.sin(4 * np.pi * t[:, None] / period + 2 * phases))
        noise = np.zeros((length, channels))
        shocks = rng.normal(0, 0.2, (length, channels))
        for i in range(1, length):
            noise[i] = rho * noise[i - 1] + shocks[i]
        series = (seasonal + noise) @ mixing.T / np.sqrt(channels) + trend * t[:, None]
        units.append((f"client-{k}", series.astype(np.float32)))
    return units


def has_label_folders(path: str | Path) -> bool:
    """True when ``path`` is a folder of sub-folders holding ``.txt`` files (one folder per label)."""
    root = Path(path).expanduser()
    return root.is_dir() and any(child.is_dir() and any(f.suffix == ".txt" for f in child.iterdir())
                                 for child in root.iterdir())
