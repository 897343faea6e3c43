"""What each protection costs on this machine, from ``privfed bench`` figures, cached and re-measurable.

Threat model: none (public performance figures). ``auto`` plans rank the protections that meet the threat model by
:meth:`CostTable.score`: the measured seconds of one whole aggregation round at a reference size plus the time
to move the measured upload bytes of every client over a reference link (100 Mbit/s), so a protection that is fast
in-process but ships 8x the bytes does not look free.

Where figures come from, in order: an explicit file; the user's cache (``$PRIVFED_CACHE_DIR`` or
``$XDG_CACHE_HOME/privfed`` or ``~/.cache/privfed``, file ``protection_costs.json``) written by :func:`measure`
(``privfed plan --measure-costs``); else the defaults shipped in ``costs_default.json``, labelled with how and
where they were obtained. A protection without a figure ranks last (its score is infinite) and the plan says so.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from protocols.errors import ConfigError, PrivfedError

__all__ = ["CostTable", "LINK_BYTES_PER_SECOND", "cache_path", "load_costs", "measure", "save_costs",
           "DEFAULT_FILE"]

#: reference link for turning bytes into seconds: 100 Mbit/s
LINK_BYTES_PER_SECOND = 12.5e6
DEFAULT_FILE = Path(__file__).with_name("costs_default.json")
CACHE_NAME = "protection_costs.json"


@dataclass(frozen=True)
class CostTable:
    """Per-protection bench records (``privfed bench`` JSON fields) at one reference size, with their provenance."""

    figures: Mapping[str, Mapping[str, Any]]
    clients: int
    params: int
    source: str
    path: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.clients < 1 or self.params < 1:
            raise ConfigError("cost table: clients and params must be >= 1")
        for name, record in self.figures.items():
            for key in ("total_seconds", "upload_bytes_per_client"):
                value = record.get(key)
                if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                    raise ConfigError(f"cost table: {name}.{key} must be a finite number >= 0, got {value!r}")

    def score(self, name: str) -> float:
        """Seconds for one round at the reference size: compute + all clients' upload over the reference link."""
        record = self.figures.get(name)
        if record is None:
            return math.inf
        return float(record["total_seconds"]) + \
            float(record["upload_bytes_per_client"]) * self.clients / LINK_BYTES_PER_SECOND

    def describe(self, name: str) -> str:
        record = self.figures.get(name)
        if record is None:
            return f"{name}: no cost figure"
        ratio = float(record["upload_bytes_per_client"]) / (4 * self.params)
        return (f"{name}: {float(record['total_seconds']):.3g} s/round and {ratio:.2f}x float32 upload at "
                f"{self.clients} clients x {self.params} params ({self.source})")

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "clients": self.clients, "params": self.params, "notes": list(self.notes),
                "protections": {k: dict(v) for k, v in self.figures.items()}}


def cache_path() -> Path:
    """The per-user cache file for measured costs."""
    base = os.environ.get("PRIVFED_CACHE_DIR")
    if base:
        return Path(base) / CACHE_NAME
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "privfed" / CACHE_NAME


def _from_json(path: Path) -> CostTable:
    try:
        data = json.loads(path.read_text())
        return CostTable(figures=data["protections"], clients=int(data["clients"]), params=int(data["params"]),
                         source=str(data.get("source", "")), path=str(path), notes=tuple(data.get("notes", ())))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"cannot read cost figures from {path}: {exc}") from None


def load_costs(path: str | Path | None = None) -> CostTable:
    """Figures from ``path``, else the user's cache, else the shipped defaults (cached figures win per protection)."""
    if path is not None:
        return _from_json(Path(path))
    defaults = _from_json(DEFAULT_FILE)
    cached = cache_path()
    if not cached.is_file():
        return defaults
    try:
        mine = _from_json(cached)
    except ConfigError:
        return defaults
    if (mine.clients, mine.params) != (defaults.clients, defaults.params):
        return mine
    merged = {**defaults.figures, **mine.figures}
    return CostTable(merged, mine.clients, mine.params, f"{mine.source}; others: {defaults.source}", str(cached),
                     mine.notes)


def measure(protections: Iterable[str], clients: int = 5, params: int = 4096,
            skip_missing: bool = True) -> CostTable:
    """Re-measure with :func:`privfed.bench.aggregation.bench_aggregation` (one small round per protection)."""
    from privfed.bench.aggregation import BenchSpec, bench_aggregation

    from privfed.threat.catalogue import CATALOGUE

    figures: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    for name in protections:
        entry = CATALOGUE.get(name)
        # distributed DP splits the noise over the clients it expects: tell it how many there are
        options = {"expected_clients": clients} if entry is not None and entry.dp == "distributed" else {}
        try:
            record = bench_aggregation(BenchSpec(name, clients, params, options=options))
        except PrivfedError as exc:
            if not skip_missing:
                raise
            notes.append(f"{name}: not measured ({exc})")
            continue
        if record.get("aborted"):
            notes.append(f"{name}: round aborted ({record['aborted']})")
            continue
        figures[name] = {k: record[k] for k in ("upload_bytes_per_client", "download_bytes_per_client",
                                                 "client_seconds", "server_seconds", "total_seconds",
                                                 "max_abs_error", "error_bound") if k in record}
    source = (f"measured with bench_aggregation on {platform.node() or 'this machine'} "
              f"({os.cpu_count()} CPUs) at {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    return CostTable(figures, clients, params, source, notes=tuple(notes))


def save_costs(table: CostTable, path: str | Path | None = None) -> Path:
    """Write ``table`` as JSON (to the user's cache by default) and return the path."""
    target = Path(path) if path is not None else cache_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(table.as_dict(), indent=2) + "\n")
    return target
