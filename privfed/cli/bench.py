"""``privfed bench``: one aggregation under one or several protections, verified and measured."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from protocols import registry
from protocols.base import AFTER_UPLOAD, BEFORE_UPLOAD
from protocols.errors import PrivfedError
from privfed.bench.aggregation import BenchSpec, bench_aggregation, parse_drop
from privfed.bench.malicious import BEHAVIOURS, bench_malicious
from privfed.cli.common import console, fail, parse_options, write_json

__all__ = ["bench"]


def _drop_points_help() -> str:
    lines = [f"Drop points: {BEFORE_UPLOAD} and {AFTER_UPLOAD} for every protection, plus each protocol's phases:"]
    for name in registry.names():
        try:
            phases = registry.protocol_class(name).phases
        except Exception:  # an optional dependency missing: the help text still renders
            continue
        lines.append(f"{name}: {', '.join(phases)}")
    return "\b\n" + "\n".join(lines)


class _BenchCommand(click.Command):
    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_paragraph()
        for line in _drop_points_help().splitlines():
            formatter.write_text(line)


@click.command(cls=_BenchCommand)
@click.option("--protection", help="One protection (see the list below).")
@click.option("--protections", help="Comma-separated protections to compare side by side.")
@click.option("--clients", type=int, default=10, show_default=True)
@click.option("--params", type=int, default=100_000, show_default=True, help="float32 values per client.")
@click.option("--drop", "drops", multiple=True, metavar="K@PHASE", help="Drop K random clients at PHASE (repeatable).")
@click.option("--seed", type=int, default=0, show_default=True, help="Drives synthetic data and dropout choice only.")
@click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE", help="Protocol option (repeatable).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the record(s) as JSON.")
@click.option("--malicious-server", "malicious", type=click.Choice(BEHAVIOURS), default=None,
              help="Simulate a deviating server (forge-keys, equivocate, replay for secagg; replay, "
                   "decrypt-individual for paillier/ckks) and report server_learned: the clients whose input it "
                   "reconstructs (checked against the true inputs).")
def bench(protection: str | None, protections: str | None, clients: int, params: int, drops: tuple[str, ...],
          seed: int, options: tuple[str, ...], json_path: str | None, malicious: str | None) -> None:
    """One aggregation of CLIENTS synthetic vectors of PARAMS float32 values with random weights, checked against
    the exact float64 weighted mean of the survivors. Exits non-zero if the round aborts."""
    if bool(protection) == bool(protections):
        fail("give exactly one of --protection NAME or --protections A,B,...")
    names = [protection] if protection else [p.strip() for p in protections.split(",") if p.strip()]
    records: list[dict[str, Any]] = []
    try:
        drop_requests = tuple(parse_drop(d) for d in drops)
        extra = parse_options(options)
        for name in names:
            spec = BenchSpec(name, clients, params, drop_requests, seed, extra)
            with console.status(f"{name}: {clients} clients x {params} params"):
                records.append(bench_malicious(spec, malicious) if malicious else bench_aggregation(spec))
    except PrivfedError as exc:
        fail(exc)
    if malicious:
        _print_malicious(records)
        write_json(json_path, records[0] if protection else {"rows": records})
        return
    _print_table(records)
    write_json(json_path, records[0] if protection else {"rows": records})
    aborted = [r for r in records if r.get("aborted")]
    for record in aborted:
        console.print(f"[bold red]round aborted under {record['protection']}:[/] {record['aborted']} — no result")
    if aborted:
        raise SystemExit(2)


def _print_table(records: list[dict[str, Any]]) -> None:
    base = next((r for r in records if r["protection"] == "plaintext"), None)
    table = Table(title="privfed bench: one aggregation")
    for column in ("protection", "survivors", "max |error|", "error bound", "upload B/client", "x float32",
                   "download B/client", "client s", "server s", "total s"):
        table.add_column(column, justify="right" if column != "protection" else "left")
    for r in records:
        err = "-" if r.get("max_abs_error") is None else f"{r['max_abs_error']:.2e}"
        bound = "-" if r.get("error_bound") is None else f"{r['error_bound']:.2e}"
        total = f"{r['total_seconds']:.3f}"
        if base and r is not base and base["total_seconds"] > 0:
            total += f" ({r['total_seconds'] / base['total_seconds']:.1f}x)"
        survivors = f"{r['survivors']}/{r['clients']}"
        if r.get("contributors") not in (None, r["survivors"]) and r.get("max_abs_error") is not None:
            survivors += f" ({r['contributors']} in sum)"
        table.add_row(r["protection"], survivors, err, bound,
                      f"{r['upload_bytes_per_client']:,.0f}", f"{r['upload_ratio_vs_float32']:.2f}",
                      f"{r['download_bytes_per_client']:,.0f}", f"{r['client_seconds']:.4f}",
                      f"{r['server_seconds']:.4f}", total)
    console.print(table)


def _print_malicious(records: list[dict[str, Any]]) -> None:
    table = Table(title="privfed bench: simulated malicious server")
    for column in ("protection", "behaviour", "active", "target", "server_learned", "refusals (first)"):
        table.add_column(column)
    for r in records:
        first = next(iter(r["refusals"].items()), None)
        table.add_row(r["protection"], r["malicious_server"], str(r["active"]).lower(), str(r["target"]),
                      str(r["server_learned"]), f"client {first[0]}: {first[1]}" if first else "-")
    console.print(table)
