"""Comparison outputs: the rich table, compare.json, compare.csv and the PNG plots."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from rich.table import Table
from privfed.jsonable import to_jsonable as _jsonable

__all__ = ["comparison_table", "write_outputs", "CSV_COLUMNS", "frontier_table", "write_frontier"]

CSV_COLUMNS = ("protection", "hides_from", "client_seconds_per_round", "client_protocol_seconds_per_round",
               "local_training_seconds_per_round", "server_seconds_per_round", "upload_bytes_per_client_per_round",
               "upload_bytes_x_plaintext", "download_bytes_per_client_per_round", "download_bytes_x_plaintext",
               "final_metric", "final_metric_change", "final_accuracy", "epsilon", "epsilon_server", "dropouts_tolerated",
               "max_verifier_error", "token_recovery_precision", "token_recovery_recall", "token_recovery_chance",
               "canary_exposure", "mia_auc", "mia_tpr_at_1pct_fpr", "wall_seconds", "target_epsilon",
               "noise_multiplier", "clients_per_round", "rounds", "subset")


def _fmt(value: Any, spec: str = ".3g") -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return format(value, spec)


def _bytes(value: float) -> str:
    for unit, size in (("MB", 1e6), ("kB", 1e3)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f} B"


def _short_dropouts(text: str) -> str:
    head = text.split(";")[0]
    return {"any number, while >= 3 clients contribute": "any, while >= 3 remain",
            "up to n - t at any phase": "n - t (threshold t)"}.get(head, head)


def comparison_table(rows: list[dict[str, Any]], attacks: bool = False) -> Table:
    table = Table(title="privfed compare: one task, every protection (per round; bytes per client)")
    columns = ["protection", "hides from", "client s", "server s", "upload", "x", "down", "x",
               "eval loss", "Δ vs plain", "ε model users", "ε server", "dropouts tolerated"]
    if attacks:
        columns += ["token prec / chance", "canary exp.", "MIA AUC"]
    widths = {"protection": 10, "hides from": 24, "dropouts tolerated": 14}
    for column in columns:
        table.add_column(column, justify="left" if column in widths else "right", overflow="fold",
                         no_wrap=column == "protection", min_width=widths.get(column))
    notes = []
    for r in rows:
        subset = _subset(r)
        if subset:
            notes.append(f"{r['protection']}*: {subset}")
        cells = [r["protection"] + ("*" if subset else ""), r.get("hides_from_short", r["hides_from"]), _fmt(r["client_seconds_per_round"]),
                 _fmt(r["server_seconds_per_round"]), _bytes(r["upload_bytes_per_client_per_round"]),
                 _fmt(r.get("upload_bytes_x_plaintext"), ".2f"), _bytes(r["download_bytes_per_client_per_round"]),
                 _fmt(r.get("download_bytes_x_plaintext"), ".2f"), _fmt(r["final_metric"], ".4f"),
                 _fmt(r.get("final_metric_change"), "+.4f"), _fmt(r["epsilon"], ".3g"),
                 _fmt(r.get("epsilon_server"), ".3g"), _short_dropouts(r["dropouts_tolerated"])]
        if attacks:
            cells += [f"{_fmt(r.get('token_recovery_precision'), '.2f')} / "
                      f"{_fmt(r.get('token_recovery_chance'), '.2f')}",
                      _fmt(r.get("canary_exposure"), ".2f"), _fmt(r.get("mia_auc"), ".3f")]
        table.add_row(*cells)
    sized = next((r["measured_on"] for r in rows if r.get("measured_on") and not r["measured_on"]["subset"]), None)
    caption = []
    if sized:
        caption.append(f"{sized['clients_per_round']} of {sized['users']} users per round, {sized['rounds']} rounds")
    targets = {r["target_epsilon"] for r in rows if r.get("target_epsilon") is not None}
    if targets:
        caption.append(f"DP noise calibrated to ε ≤ {', '.join(f'{t:g}' for t in sorted(targets))} "
                       f"(epsilon column: spent; dp-sgd is record-level)")
    caption += notes
    table.caption = "\n".join(caption) or None
    return table


def _subset(row: dict[str, Any]) -> str:
    """'' for a full-size row, else what it was measured on (table, CSV and plots all say it)."""
    measured = row.get("measured_on") or {}
    if not measured.get("subset"):
        return ""
    return f"subset: {measured['clients_per_round']} clients x {measured['rounds']} round(s)"





def write_outputs(rows: list[dict[str, Any]], out_dir: Path, meta: dict[str, Any]) -> dict[str, Path]:
    """compare.json, compare.csv, and the plots; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "compare.json", "csv": out_dir / "compare.csv"}
    paths["json"].write_text(json.dumps(_jsonable({"meta": meta, "rows": rows}), indent=2) + "\n")
    with paths["csv"].open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            measured = row.get("measured_on") or {}
            flat = {**row, "clients_per_round": measured.get("clients_per_round"), "rounds": measured.get("rounds",
                    row.get("rounds")), "subset": _subset(row) or "no"}
            writer.writerow({k: _jsonable(flat.get(k)) for k in CSV_COLUMNS})
    paths.update(_plots(rows, out_dir))
    return paths


def _plots(rows: list[dict[str, Any]], out_dir: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401  (MaxNLocator)

    names = [r["protection"] for r in rows]
    paths: dict[str, Path] = {}

    fig, ax = plt.subplots(figsize=(8, 4.8))
    styles = ["-", "--", "-.", ":"]
    markers = ["o", "s", "^", "D", "v", "P", "X", "*"]
    finals: dict[float, list[str]] = {}
    for k, r in enumerate(rows):
        losses = list(r["metric_per_round"])
        start = 1
        if r.get("initial_metric") is not None:
            losses, start = [r["initial_metric"], *losses], 0
        subset = _subset(r)
        ax.plot(range(start, start + len(losses)), losses, linestyle=styles[k % 4], marker=markers[k % 8],
                markersize=5, label=r["protection"] + (f" ({subset})" if subset else ""), alpha=0.9)
        if r["final_metric"] is not None:
            finals.setdefault(round(float(r["final_metric"]), 4), []).append(r["protection"])
    same = [names for names in finals.values() if len(names) > 1]
    note = "; ".join(" = ".join(names) for names in same)
    ax.set_xlabel("round (0: initial model)")
    ax.set_ylabel("global eval loss (lower is better)")
    ax.set_title("Model quality per round, same task and seed" + (f"\n(overlapping: {note})" if note else ""),
                 fontsize=10)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    paths["metric_plot"] = out_dir / "metric_per_round.png"
    fig.savefig(paths["metric_plot"], dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(1, 3, figsize=(13, 4.5))
    panels = (("client_seconds_per_round", "client s / round (protocol + training)"),
              ("server_seconds_per_round", "server s / round"),
              ("upload_bytes_per_client_per_round", "upload bytes / client / round"))
    labels = [n + ("*" if _subset(r) else "") for n, r in zip(names, rows)]
    for ax, (key, title) in zip(axes, panels):
        values = [max(float(r[key]), 1e-6) for r in rows]
        bars = ax.bar(labels, values, color=["#DD8452" if _subset(r) else "#4C72B0" for r in rows])
        ax.set_yscale("log")
        ax.set_title(title)
        ax.tick_params(axis="x", rotation=45)
        for bar, value in zip(bars, values):
            ax.annotate(_fmt(value, ".2g"), (bar.get_x() + bar.get_width() / 2, value), ha="center",
                        va="bottom", fontsize=7)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("What each protection costs (log scale; measured in the same run"
                 + ("; * orange: measured on a subset of clients/rounds)" if any(_subset(r) for r in rows) else ")"))
    fig.tight_layout()
    paths["cost_plot"] = out_dir / "cost_per_protection.png"
    fig.savefig(paths["cost_plot"], dpi=120)
    plt.close(fig)
    return paths


def frontier_table(rows: list[dict[str, Any]], ceiling: dict[str, Any]) -> Table:
    """One line per (protection, target epsilon), the plaintext ceiling first."""
    table = Table(title="privfed compare --epsilons: the privacy-utility frontier (same task, seed and rounds)")
    for column in ("protection", "level", "target ε", "spent ε", "noise z", "eval loss", "Δ vs plain", "measured on"):
        table.add_column(column, justify="left" if column in ("protection", "level", "measured on") else "right")
    table.add_row("plaintext", "-", "-", "inf", "-", _fmt(ceiling.get("final_metric"), ".4f"), "+0.0000",
                  _subset(ceiling) or "full")
    for r in rows:
        table.add_row(r["protection"], r["level"], _fmt(r["target_epsilon"], "g"), _fmt(r.get("epsilon"), ".3g")
                      + ("" if r["within_target"] else " (over!)"), _fmt(r["noise_multiplier"], ".3g"),
                      _fmt(r.get("final_metric"), ".4f"), _fmt(r.get("final_metric_change"), "+.4f"),
                      _subset(r) or "full")
    initial = next((r.get("initial_metric") for r in [ceiling, *rows] if r.get("initial_metric") is not None), None)
    table.caption = (f"initial model eval loss {_fmt(initial, '.4f')}; a row above it learned nothing. "
                     "Plaintext is the ceiling; user- and record-level ε are not comparable.")
    return table


def write_frontier(rows: list[dict[str, Any]], ceiling: dict[str, Any], out_dir: Path,
                   meta: dict[str, Any]) -> dict[str, Path]:
    """frontier.json (meta, ceiling, rows), frontier.csv and frontier.png; returns their paths."""
    from privfed.bench.frontier import FRONTIER_COLUMNS, frontier_plot

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "frontier.json", "csv": out_dir / "frontier.csv", "plot": out_dir / "frontier.png"}
    paths["json"].write_text(json.dumps(_jsonable({"meta": meta, "ceiling": ceiling, "rows": rows}), indent=2)
                             + "\n")
    columns = (*FRONTIER_COLUMNS, "subset")
    with paths["csv"].open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        base = {"protection": "plaintext", "level": "none", "epsilon": math.inf, "within_target": True}
        for row in [{**ceiling, **base}, *rows]:
            measured = row.get("measured_on") or {}
            flat = {**row, "clients_per_round": measured.get("clients_per_round"),
                    "rounds": measured.get("rounds", row.get("rounds")), "subset": _subset(row) or "no"}
            writer.writerow({k: _jsonable(flat.get(k)) for k in columns})
    frontier_plot(rows, ceiling, paths["plot"])
    return paths
