"""``privfed vertical``: vertical federated learning of sequence models (PSI alignment, split LSTM/GRU, protected
cut layer) from a TOML config or the embedded three-party default."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from protocols.errors import PrivfedError
from privfed.cli.common import console, fail, to_jsonable, write_json

__all__ = ["vertical"]


def _fmt(value: Any, spec: str = ".3f") -> str:
    return "-" if value is None or isinstance(value, str) else format(value, spec)


def _table(summaries: list[dict[str, Any]]) -> Table:
    table = Table(title="privfed vertical: cut-layer protections side by side")
    parties = list(summaries[0]["parties"])
    columns = ["protection", "status", "aligned", "accuracy/MAE", "macro-F1/RMSE", "baseline", "epsilon"]
    columns += [f"{p} kB sent" for p in parties] + [f"{p} s" for p in parties] + ["total s"]
    for column in columns:
        table.add_column(column, justify="left" if column in ("protection", "status") else "right")
    for s in summaries:
        fm, base = s.get("final_metrics") or {}, s.get("baseline") or {}
        first, second = ("accuracy", "macro_f1") if "accuracy" in fm or "accuracy" in base else ("mae", "rmse")
        eps = s.get("epsilon")
        table.add_row(s["protection"], s["status"] if not s.get("aborted") else f"aborted: {s['aborted'][:60]}",
                      str(s.get("intersection_size", 0)), _fmt(fm.get(first)), _fmt(fm.get(second)),
                      _fmt(base.get(first)), "-" if eps is None else (eps if isinstance(eps, str) else f"{eps:.3g}"),
                      *[_fmt(s["parties"][p]["bytes_sent"] / 1000, ",.1f") for p in parties],
                      *[_fmt(s["parties"][p]["seconds"], ".2f") for p in parties], _fmt(s["seconds_total"], ".1f"))
    return table


@click.command()
@click.argument("config_path", metavar="[CONFIG.toml]", required=False, type=click.Path(dir_okay=False))
@click.option("-c", "--set", "overrides", multiple=True, metavar="vertical.KEY=VALUE",
              help="Override a [vertical] key, e.g. -c vertical.protection=label-dp -c vertical.epochs=3.")
@click.option("--compare", "compare", is_flag=False, flag_value="all", default=None, metavar="[P1,P2,...]",
              help="Run each cut-layer protection (default: all that fit the parties) and print them side by side.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Write summary.json (or compare.json) here.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the summary JSON here.")
@click.option("--catalogue", is_flag=True, help="Print what each cut-layer protection hides from whom, and exit.")
def vertical(config_path: str | None, overrides: tuple[str, ...], compare: str | None, out_dir: str | None,
             json_path: str | None, catalogue: bool) -> None:
    """Vertical FL: parties holding different event sequences about the same entities align them by private set
    intersection, train a split LSTM/GRU (one bottom model per party, the label party's top model) and exchange
    only cut-layer embeddings and gradients, under the chosen protection (plaintext, label-dp, secure-sum,
    secure-sum+label-dp). Without CONFIG.toml it runs the embedded three-party default."""
    from protocols.vertical import table as protection_table
    if catalogue:
        rows = protection_table()
        if json_path:
            write_json(json_path, rows)
        for row in rows:
            console.print(f"[bold]{row['protection']}[/] (combine {row['combine']}, label DP {row['label_dp']})\n"
                          f"  label party sees: {row['label_party_sees']}\n"
                          f"  feature parties see: {row['feature_parties_see']}\n  assumes: {row['assumptions']}")
        return
    from privfed.vertical import load_vertical_config, run_vertical
    try:
        cfg = load_vertical_config(config_path, overrides)
        transcript: list[Any] = []
        if compare is None:
            summaries = [run_vertical(cfg, transcript=transcript)]
        else:
            feature_count = len(cfg.feature_parties)
            names = ([r["protection"] for r in protection_table() if r["min_feature_parties"] <= feature_count]
                     if compare == "all" else [n.strip() for n in compare.split(",") if n.strip()])
            summaries = [run_vertical(cfg.with_protection(name)) for name in names]
    except PrivfedError as exc:
        fail(exc)
        return
    payload: Any = summaries[0] if compare is None else {"runs": summaries}
    if out_dir:
        write_json(Path(out_dir) / ("summary.json" if compare is None else "compare.json"), payload)
        if transcript:
            with (Path(out_dir) / "transcript.jsonl").open("w", encoding="utf-8") as handle:
                for entry in transcript:
                    handle.write(json.dumps(to_jsonable(dataclasses.asdict(entry))) + "\n")
    write_json(json_path, payload)
    console.print(_table(summaries))
    for s in summaries:
        if s.get("epsilon") is not None:
            console.print(f"{s['protection']}: label DP epsilon {_fmt(s['epsilon'], '.3g')} at delta "
                          f"{s['label_dp']['delta']:g} ({s['label_dp']['adjacency']}, {s['label_dp']['epochs']} "
                          "epochs, no sampling amplification)")
    aborted = [s for s in summaries if s["status"] != "completed"]
    if aborted:
        fail("; ".join(f"{s['protection']}: {s['aborted']}" for s in aborted))

