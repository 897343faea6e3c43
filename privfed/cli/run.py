"""``privfed run``: one federated training run from a TOML config (or the embedded default), with a progress bar,
a per-round table and a run directory (rounds.jsonl, transcripts, checkpoint, summary.json)."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from protocols.errors import ConfigError, PrivfedError
from privfed.cli.common import console, fail, write_json

__all__ = ["run"]


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None or isinstance(value, str) else format(value, spec)


def _eps(value: Any) -> str:
    return value if isinstance(value, str) else _fmt(value, ".3g")


#: the task metrics shown in the run table (beside eval loss), in this order when present
METRIC_COLUMNS = (("accuracy", "accuracy", ".3f"), ("macro_f1", "macro-F1", ".3f"), ("mae", "MAE", ".4g"),
                  ("rmse", "RMSE", ".4g"))


def _table(rounds: list[dict[str, Any]]) -> Table:
    table = Table(title="privfed run: rounds")
    shown = [m for m in METRIC_COLUMNS if any(m[0] in r.get("metrics", {}) for r in rounds)]
    for column in ("round", "protection", "survivors", "eval loss", *(m[1] for m in shown), "upload B/client",
                   "server s", "round s", "ε model users", "ε server", "note"):
        table.add_column(column, justify="left" if column in ("protection", "note") else "right")
    for r in rounds:
        metrics = r.get("metrics", {})
        note = r.get("aborted") or ""
        if not note and (r.get("dropped") or r.get("rejected")):
            note = f"{len(r.get('dropped', {}))} dropped, {len(r.get('rejected', {}))} rejected"
        table.add_row(str(r["round"]), r["protection"], f"{r.get('survivors', 0)}/{len(r.get('sampled', []))}",
                      _fmt(metrics.get("loss"), ".4f"), *(_fmt(metrics.get(k), f) for k, _, f in shown),
                      _fmt(r.get("upload_bytes_per_client"), ",.0f"), _fmt(r.get("server_seconds"), ".3f"),
                      _fmt(r.get("round_seconds"), ".2f"),
                      _eps(r.get("epsilon_model")), _eps(r.get("epsilon_server")), note)
    return table


def _saved_config(out: Path, overrides: tuple[str, ...], seed: int | None) -> Any:
    """The configuration saved in a run directory, with any overrides applied on top (the run's own check then
    refuses a change), or None when the directory holds no saved config."""
    import json

    from privfed.fl.config import apply_overrides, config_from_table
    saved = out / "config.json"
    if not saved.exists():
        return None
    try:
        table = json.loads(saved.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--resume: cannot read {saved}: {exc}") from None
    table = apply_overrides(table, overrides)
    if seed is not None:
        table["seed"] = seed
    return config_from_table(table)


@click.command()
@click.argument("config_path", metavar="[CONFIG.toml]", required=False, type=click.Path(dir_okay=False))
@click.option("-c", "--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config key, e.g. -c fl.rounds=3 -c model.cell=gru (repeatable).")
@click.option("--seed", type=int, help="Experiment seed (data, partitions, model init, fixed client sampling).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Run directory [default: runs/<timestamp>].")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last completed round (its saved "
              "config.json is reused unless CONFIG.toml is given; overrides that change it are refused).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write summary.json's content here.")
@click.option("--threads", type=int, help="torch CPU threads for local training (default: torch's choice).")
@click.option("--stop-after", type=int, hidden=True, help="Stop after this round, as if killed (resume testing).")
def run(config_path: str | None, overrides: tuple[str, ...], seed: int | None, out_dir: str | None, resume: bool,
        json_path: str | None, threads: int | None, stop_after: int | None) -> None:
    """Federated training of an LSTM/GRU under the configured protection plan. Without CONFIG.toml it runs the
    embedded default: next-character prediction on the Python standard library's docstrings, one client per
    module, 5 rounds of 5 clients, plaintext FedAvg."""
    if resume and out_dir is None:
        fail("--resume needs --out DIR (the run directory to continue)")
    if _wants_flower(config_path, overrides):
        _run_on_flower(config_path, overrides, seed, out_dir, resume, json_path, stop_after)
        return
    if threads is not None:
        if threads < 1:
            fail("--threads must be >= 1")
        import torch
        torch.set_num_threads(threads)
    try:
        from privfed.fl.config import load_config
        from privfed.experiment.fedavg import run_fedavg
        config = (_saved_config(Path(out_dir), overrides, seed) if resume and out_dir and config_path is None
                  else None) or load_config(config_path, overrides, seed)
        out = Path(out_dir) if out_dir else Path("runs") / _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        console.print(f"[bold]privfed run[/]: plan {config.plan!r}, {config.fl.rounds} rounds, "
                      f"{config.model.cell.upper()} on {config.data.source} ({config.data.task}), seed {config.seed}"
                      f" -> {out}")
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TextColumn("{task.fields[status]}"), console=console, transient=False) as progress:
            task = progress.add_task("rounds", total=config.fl.rounds, status="preparing data and model")

            def on_round(record: dict[str, Any], _report: Any) -> None:
                loss = record.get("metrics", {}).get("loss")
                status = record.get("aborted") and f"round {record['round']} aborted" or (
                    f"round {record['round']} {record['protection']}: eval loss {_fmt(loss, '.4f')}")
                progress.update(task, completed=record["round"], status=status)

            result = run_fedavg(config, out, resume=resume, on_round=on_round, stop_after=stop_after)
    except PrivfedError as exc:
        fail(exc)
        return
    console.print(_table(result.rounds))
    summary = result.summary
    initial, final = summary["initial_metrics"], summary["final_metrics"]
    console.print(f"eval loss {_fmt(initial.get('loss'), '.4f')} -> {_fmt(final.get('loss'), '.4f')}; "
                  f"{summary['rounds_completed']}/{config.fl.rounds} rounds ({summary['status']}); "
                  f"upload {summary['totals']['upload_bytes']:,.0f} B in total; run directory {result.out_dir}")
    for note in summary["data"].get("notes", []):
        console.print(f"[yellow]note:[/] {note}")
    for warning in summary.get("warnings", []):
        console.print(f"[bold yellow]warning:[/] {warning}")
    metric_line = ", ".join(f"{label} {_fmt(initial.get(k), f)} -> {_fmt(final.get(k), f)}"
                            for k, label, f in METRIC_COLUMNS if k in final)
    if metric_line:
        units = " (in the data's units)" if "mae" in final and summary["data"].get("targets") else ""
        console.print(f"{metric_line}{units}")
    by_column = final.get("mae_by_column")
    if isinstance(by_column, dict):
        console.print("MAE by column: " + ", ".join(f"{name} {_fmt(v, '.4g')}" for name, v in by_column.items()))
    write_json(json_path, summary)


# --- runtime.kind = "flower" (issue 15): the same config drives a Flower deployment -------------------------------
def _wants_flower(config_path: str | None, overrides: tuple[str, ...]) -> bool:
    """Whether the run's [runtime] table (file or -c runtime.kind=...) asks for Flower."""
    try:
        in_file = bool(config_path) and "runtime" in Path(str(config_path)).read_text(encoding="utf-8",
                                                                                     errors="replace")
    except OSError:
        return False  # the local path reports the unreadable file
    if not in_file and not any(o.strip().startswith("runtime.") for o in overrides):
        return False
    try:
        from privfed.apps.flower.submit import FlowerRuntime, split_runtime
        return FlowerRuntime.from_table(split_runtime(config_path, overrides)[1]).kind == "flower"  # validates
    except PrivfedError as exc:
        fail(exc)
        return False


def _run_on_flower(config_path: str | None, overrides: tuple[str, ...], seed: int | None, out_dir: str | None,
                   resume: bool, json_path: str | None, stop_after: int | None) -> None:
    try:
        from privfed.apps.flower.submit import load_with_runtime, submit
        from privfed.experiment.rundir import RunDir
        config, runtime = load_with_runtime(config_path, overrides, seed)
        out = Path(out_dir) if out_dir else Path("runs") / _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        console.print(f"[bold]privfed run[/] on Flower at {runtime.superlink}: plan {config.plan!r}, "
                      f"{config.fl.rounds} rounds, {config.fl.clients_per_round} nodes -> {out}")
        with console.status("waiting for the deployment"):
            summary = submit(config, runtime, out, resume=resume, stop_after=stop_after)
        rounds = RunDir(out).read_rounds()
    except PrivfedError as exc:
        fail(exc)
        return
    console.print(_table(rounds))
    initial, final = summary.get("initial_metrics", {}), summary.get("final_metrics", {})
    console.print(f"eval loss {_fmt(initial.get('loss'), '.4f')} -> {_fmt(final.get('loss'), '.4f')} (federated "
                  f"evaluation); {summary['rounds_completed']}/{config.fl.rounds} rounds ({summary['status']}); "
                  f"run directory {out}")
    write_json(json_path, summary)
