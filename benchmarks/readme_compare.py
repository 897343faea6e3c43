"""README's comparison table, rendered from a ``privfed compare`` output (``compare.json``), never typed by hand.

    privfed compare --out OUT && python benchmarks/readme_compare.py OUT/compare.json --update README.md

copies ``compare.json`` to ``benchmarks/results/compare_default.json`` and replaces the block between
``<!-- compare-table -->`` and ``<!-- /compare-table -->`` in README.md; without ``--update`` it prints the table.
``tests/test_readme_figures.py`` renders the committed JSON again and checks README carries exactly that table.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "compare_default.json"
BEGIN, END = "<!-- compare-table -->", "<!-- /compare-table -->"


def _eps(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, str) or (isinstance(value, float) and math.isinf(value)):
        return "∞"
    return f"{float(value):.3g}"


def _bytes(value: float) -> str:
    return f"{value / 1000:.1f} kB"


def render(payload: dict[str, Any]) -> str:
    """The markdown table of a comparison (one row per protection, subset rows marked ``*``)."""
    meta = payload["meta"]
    full = f"{meta['config']['fl']['clients_per_round']} × {meta['config']['fl']['rounds']}"
    lines = ["| protection | hides from | measured on | client s | server s | upload / client | × plain | eval loss | "
             "Δ vs plain | ε model users | ε server | dropouts tolerated |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in payload["rows"]:
        subset = r.get("measured_on") or {}
        star = "*" if subset.get("subset") else ""
        where = f"{subset['clients_per_round']} × {subset['rounds']} (subset)" if star else full
        record = " (record)" if r["protection"] == "dp-sgd" else ""
        lines.append(
            f"| `{r['protection']}`{star} | {r.get('hides_from_short') or r['hides_from']} | {where} | "
            f"{r['client_seconds_per_round']:.3g} | {r['server_seconds_per_round']:.3g} | "
            f"{_bytes(r['upload_bytes_per_client_per_round'])} | {r['upload_bytes_x_plaintext']:.2f} | "
            f"{r['final_metric']:.4f} | {r['final_metric_change']:+.4f} | {_eps(r.get('epsilon'))}{record} | "
            f"{_eps(r.get('epsilon_server'))}{record} | {r['dropouts_tolerated']} |")
    return "\n".join(lines) + "\n"


def update(readme: Path, table: str) -> None:
    text = readme.read_text(encoding="utf-8")
    start, stop = text.index(BEGIN) + len(BEGIN), text.index(END)
    readme.write_text(text[:start] + "\n" + table + text[stop:], encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("compare_json", type=Path, nargs="?", default=RESULTS)
    parser.add_argument("--update", type=Path, help="README.md to rewrite (and keep the JSON in benchmarks/results)")
    args = parser.parse_args()
    payload = json.loads(args.compare_json.read_text(encoding="utf-8"))
    table = render(payload)
    if args.update is None:
        print(table, end="")
        return
    if args.compare_json.resolve() != RESULTS.resolve():
        shutil.copyfile(args.compare_json, RESULTS)
    update(args.update, table)
    print(f"updated {args.update} from {args.compare_json}")


if __name__ == "__main__":
    main()
