"""README's privfed-vs-Flower table, rendered from the committed peer run (``benchmarks/results/peers.json``), never
typed by hand.

    python benchmarks/bench_peers.py --write benchmarks/results/peers.md --readme README.md

writes the run's rows to ``peers.json`` beside the markdown table and replaces the block between
``<!-- peers-table -->`` and ``<!-- /peers-table -->`` in README.md. ``tests/test_readme_figures.py`` renders the
committed JSON again and checks README carries exactly that table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "peers.json"
BEGIN, END = "<!-- peers-table -->", "<!-- /peers-table -->"


def _size(params: int) -> str:
    return f"{params // 1_000_000}M" if params % 1_000_000 == 0 else f"{params // 1_000}k"


def render(payload: dict[str, Any]) -> str:
    """One line per size: privfed's complete graph against Flower's full setting, with the floor of the same run."""
    rows = payload["rows"]
    lines = ["| clients × params | privfed complete: wall s (CPU s) | Flower full: wall s (CPU s) | "
             "Flower / privfed, wall (CPU) | privfed / keystream floor, wall (CPU) | privfed / CTR-mode floor, wall | "
             "upload × float32 (privfed, Flower) |", "|---|---:|---:|---:|---:|---:|---|"]
    for ours in rows:
        if ours["tool"] != "privfed" or ours["graph"] != "complete":
            continue
        peer = next(r for r in rows if r["tool"] == "Flower" and r["graph"] == "full"
                    and r["clients"] == ours["clients"] and r["params"] == ours["params"])
        lines.append(
            f"| {ours['clients']} × {_size(ours['params'])} | {ours['seconds']:.3f} ({ours['cpu']:.3f}) | "
            f"{peer['seconds']:.3f} ({peer['cpu']:.3f}) | {peer['seconds'] / ours['seconds']:.1f}× "
            f"({peer['cpu'] / ours['cpu']:.1f}×) | {ours['seconds'] / ours['floor']:.2f}× "
            f"({ours['cpu'] / ours['floor_cpu']:.2f}×) | {ours['seconds'] / ours['floor_ctr']:.2f}× | "
            f"{ours['ratio']:.3f}, {peer['ratio']:.3f} |")
    return "\n".join(lines)


def update_readme(readme: Path, payload: dict[str, Any]) -> None:
    text = readme.read_text(encoding="utf-8")
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    readme.write_text(text[:start] + "\n" + render(payload) + "\n" + text[end:], encoding="utf-8")


def load(path: Path = RESULTS) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))
