"""Helpers shared by the CLI commands: key=value options, JSON output, error reporting."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Iterable

import click
from rich.console import Console

from protocols.errors import PrivfedError
from privfed.jsonable import to_jsonable

__all__ = ["console", "parse_value", "parse_options", "write_json", "fail", "to_jsonable"]

console = Console(stderr=False, highlight=False, width=None if sys.stdout.isatty() else 160)


def parse_value(text: str) -> Any:
    """'3' -> 3, '0.5' -> 0.5, 'true' -> True, '[1,2]' -> [1, 2], anything else stays a string."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_options(pairs: Iterable[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}")
        out[key.strip()] = parse_value(value)
    return out





def write_json(path: str | Path | None, payload: Any) -> None:
    if path is None:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_jsonable(payload), indent=2) + "\n")


def fail(error: PrivfedError | str) -> None:
    """Print a clear error and exit non-zero (no traceback for errors privfed raises on purpose)."""
    console.print(f"[bold red]error:[/] {error}")
    raise SystemExit(1)
