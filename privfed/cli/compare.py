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
@click.option("--epsilons", help="Privacy-utility frontier: comma-separated target epsilons (e.g. 1,2,4,8); each DP "
                                 "protection's noise is calibrated per target (default protections: dp,secagg+dp,"
                                 "local-dp,dp-sgd). Writes frontier.png and frontier.json/csv.")
@click.option("--epsilon", "epsilon", type=float, help="Calibrate every DP protection of the table to this target "
                                                       "epsilon (default 8 on the embedded task; 0: use each "
                                                       "protection's configured noise).")
@click.option("--no-subsets", is_flag=True, help="Run Paillier, CKKS and DP-SGD at full size too (by default the "
                                                 "embedded task measures them on a labelled subset).")
def compare(config_path: str | None, protections: str | None, rounds: int | None, clients: int | None,
            overrides: tuple[str, ...], seed: int | None, out_dir: str | None, attacks: bool,
            json_path: str | None, epsilons: str | None, epsilon: float | None, no_subsets: bool) -> None:
    """Train the same federated task (same data, partition, initial model and seed) under each protection and
    print what each costs and gives: seconds per round for a client and the server, bytes per client per round
    (and as a multiple of plaintext), the final eval loss and its change against plaintext, epsilon, and the
    dropouts each protection tolerates. Writes DIR/compare.json, DIR/compare.csv and PNG plots.

    With --epsilons, runs the privacy-utility frontier instead: plaintext once, then each DP protection at each
    target epsilon (noise calibrated by the shared accounting; every row reports the epsilon it spent)."""
    from privfed.bench.compare import (ATTACK_DEFAULTS, COMPARE_DEFAULTS, COMPARE_EPSILON, COMPARE_SUBSETS,
                                       DEFAULT_PROTECTIONS, run_compare)
    from privfed.bench.report import comparison_table, write_outputs
    from privfed.fl.config import load_config

    if epsilons is not None:
        _frontier(config_path, protections, rounds, clients, overrides, seed, out_dir, json_path, epsilons,
                  no_subsets)
        return
    names = [p.strip() for p in protections.split(",") if p.strip()] if protections else list(DEFAULT_PROTECTIONS)
    # the attack audit keeps its own small word-level task (privfed.audit.attack_run): no cross-device sizing there
    default_task = not config_path and not attacks
    sizing = ([] if config_path else
              [f"{k}={v}" for k, v in (COMPARE_DEFAULTS if default_task else ATTACK_DEFAULTS).items()])
    subsets = COMPARE_SUBSETS if default_task and not no_subsets else None
    target = (COMPARE_EPSILON if default_task else None) if epsilon is None else (epsilon or None)
    if target is not None and target < 0:
        fail(PrivfedError(f"--epsilon must be > 0 (or 0 for the configured noise), got {epsilon}"))
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
            size = {"rounds": config.fl.rounds, "clients_per_round": config.fl.clients_per_round,
                    **(subsets or {}).get(name, {})}
            console.print(f"[bold]({index + 1}/{total})[/] {name}: {size['rounds']} rounds x "
                          f"{size['clients_per_round']} clients{' (subset)' if name in (subsets or {}) else ''} ...")

        rows = run_compare(config, names, out, progress=progress, after_run=hook, record_server_view=attacks,
                           subsets=subsets, epsilon=target)
    except PrivfedError as exc:
        fail(exc)
    meta: dict[str, Any] = {"config": config.to_table(), "seed": config.seed, "protections": names,
                            "target_epsilon": target, "subsets": subsets or {},
                            "wall_seconds": time.perf_counter() - started, **extra}
    paths = write_outputs(rows, out, meta)
    console.print(comparison_table(rows, attacks=attacks))
    console.print(f"Wrote {paths['json']}, {paths['csv']}, {paths['metric_plot'].name}, "
                  f"{paths['cost_plot'].name} in {out} ({meta['wall_seconds']:.0f} s in all).")
    write_json(json_path, {"meta": meta, "rows": rows})


def _frontier(config_path: str | None, protections: str | None, rounds: int | None, clients: int | None,
              overrides: tuple[str, ...], seed: int | None, out_dir: str | None, json_path: str | None,
              epsilons: str, no_subsets: bool) -> None:
    """``privfed compare --epsilons ...``: the privacy-utility frontier (see :mod:`privfed.bench.frontier`)."""
    from privfed.bench.compare import COMPARE_DEFAULTS, COMPARE_SUBSETS, run_frontier
    from privfed.bench.frontier import FRONTIER_PROTECTIONS, parse_epsilons
    from privfed.bench.report import frontier_table, write_frontier
    from privfed.fl.config import load_config

    started = time.perf_counter()
    try:
        targets = parse_epsilons(epsilons)
        names = ([p.strip() for p in protections.split(",") if p.strip()] if protections
                 else list(FRONTIER_PROTECTIONS))
        sizing = [] if config_path else [f"{k}={v}" for k, v in COMPARE_DEFAULTS.items()]
        if rounds is not None:
            sizing.append(f"fl.rounds={rounds}")
        if clients is not None:
            sizing.append(f"fl.clients_per_round={clients}")
        config = load_config(config_path, [*sizing, *overrides], seed)
        out = Path(out_dir or f"runs/frontier-{_dt.datetime.now():%Y%m%d-%H%M%S}")

        def progress(name: str, index: int, total: int) -> None:
            console.print(f"[bold]({index + 1}/{total})[/] {name} ...")

        subsets = None if (config_path or no_subsets) else COMPARE_SUBSETS
        rows, ceiling = run_frontier(config, names, targets, out, progress=progress, subsets=subsets)
    except PrivfedError as exc:
        fail(exc)
    meta: dict[str, Any] = {"config": config.to_table(), "seed": config.seed, "protections": names,
                            "epsilons": list(targets), "delta": config.protection.delta, "subsets": subsets or {},
                            "wall_seconds": time.perf_counter() - started}
    paths = write_frontier(rows, ceiling, out, meta)
    console.print(frontier_table(rows, ceiling))
    console.print(f"Wrote {paths['json']}, {paths['csv']}, {paths['plot'].name} in {out} "
                  f"({meta['wall_seconds']:.0f} s in all).")
    write_json(json_path, {"meta": meta, "ceiling": ceiling, "rows": rows})
