"""``privfed compare``: the main job. One task, every protection, one table (plus JSON, CSV and plots)."""

from __future__ import annotations

import datetime as _dt
import time
from pathlib import Path
from typing import Any

import click

from protocols.errors import PrivfedError
from privfed.cli.common import console, fail, write_json

__all__ = ["compare"]


@click.command()
@click.argument("config_path", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--protections", help="Comma-separated protections (default: plaintext,dp,local-dp,dp-sgd,ckks,"
                                    "paillier,secagg,secagg+dp).")
@click.option("--rounds", type=int, help="Rounds per protection (default 3 on the embedded task).")
@click.option("--clients", type=int, help="Clients per round (default 5 on the embedded task).")
@click.option("-c", "--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Config override (repeatable).")
@click.option("--seed", type=int, help="Experiment seed (data, partition, model init, sampling).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Output directory (default runs/compare-<time>).")
@click.option("--attacks", is_flag=True, help="Also run the empirical privacy attacks (word-level task by default).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the rows to this JSON file.")
def compare(config_path: str | None, protections: str | None, rounds: int | None, clients: int | None,
            overrides: tuple[str, ...], seed: int | None, out_dir: str | None, attacks: bool,
            json_path: str | None) -> None:
    """Train the same federated task (same data, partition, initial model and seed) under each protection and
    print what each costs and gives: seconds per round for a client and the server, bytes per client per round
    (and as a multiple of plaintext), the final eval loss and its change against plaintext, epsilon, and the
    dropouts each protection tolerates. Writes DIR/compare.json, DIR/compare.csv and PNG plots."""
    from privfed.bench.compare import COMPARE_DEFAULTS, DEFAULT_PROTECTIONS, run_compare
    from privfed.bench.report import comparison_table, write_outputs
    from privfed.fl.config import load_config

    names = [p.strip() for p in protections.split(",") if p.strip()] if protections else list(DEFAULT_PROTECTIONS)
    sizing = [] if config_path else [f"{k}={v}" for k, v in COMPARE_DEFAULTS.items()]
    if rounds is not None:
        sizing.append(f"fl.rounds={rounds}")
    if clients is not None:
        sizing.append(f"fl.clients_per_round={clients}")
    out = Path(out_dir or f"runs/compare-{_dt.datetime.now():%Y%m%d-%H%M%S}")
    started = time.perf_counter()
    try:
        if attacks:
            from privfed.audit.attack_run import attack_overrides, run_attacks

            config = load_config(config_path, [*attack_overrides(config_path, out), *sizing, *overrides], seed)
            hook, extra = run_attacks(config, out)
        else:
            config = load_config(config_path, [*sizing, *overrides], seed)
            hook, extra = None, {}

        def progress(name: str, index: int, total: int) -> None:
            console.print(f"[bold]({index + 1}/{total})[/] {name}: {config.fl.rounds} rounds x "
                          f"{config.fl.clients_per_round} clients ...")

        rows = run_compare(config, names, out, progress=progress, after_run=hook, record_server_view=attacks)
    except PrivfedError as exc:
        fail(exc)
    meta: dict[str, Any] = {"config": config.to_table(), "seed": config.seed, "protections": names,
                            "wall_seconds": time.perf_counter() - started, **extra}
    paths = write_outputs(rows, out, meta)
    console.print(comparison_table(rows, attacks=attacks))
    console.print(f"Wrote {paths['json']}, {paths['csv']}, {paths['metric_plot'].name}, "
                  f"{paths['cost_plot'].name} in {out} ({meta['wall_seconds']:.0f} s in all).")
    write_json(json_path, {"meta": meta, "rows": rows})
