"""``privfed plan``: check a per-round protection plan against a declared threat model, before any round runs."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from protocols.errors import PrivfedError
from privfed.cli.common import console, fail, parse_value, write_json

__all__ = ["plan"]


@click.command()
@click.option("--rounds", type=int, required=True, help="Number of rounds the plan covers.")
@click.option("--threat", "threat_text", default="", metavar="KEY=VALUE,...",
              help="Threat model: server=trusted|honest-but-curious, collusion=C, dropout=F, epsilon=E, delta=D, "
                   "server_may_see_aggregate=true|false, dp_unit=user|record, update_privacy=cryptographic|local-dp. "
                   "Empty: trusted server, no DP target.")
@click.option("--plan", "spec", default="auto", show_default=True, metavar="SPEC",
              help='Protection per round: "1-5:ckks,6-20:secagg+dp", one name for every round, or "auto".')
@click.option("--clients", type=int, default=None, help="Clients per round (enables the numeric SecAgg/HE checks).")
@click.option("-o", "--option", "options", multiple=True, metavar="PROTECTION.KEY=VALUE",
              help="A protection's protocol option, e.g. secagg.threshold=7 (repeatable).")
@click.option("--costs", "costs_path", type=click.Path(dir_okay=False), default=None,
              help="Cost figures JSON (default: the user's cache, else the shipped defaults).")
@click.option("--measure-costs", is_flag=True,
              help="Re-measure every installed protection's cost at a small size and cache it first.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the plan as JSON.")
def plan(rounds: int, threat_text: str, spec: str, clients: int | None, options: tuple[str, ...],
         costs_path: str | None, measure_costs: bool, json_path: str | None) -> None:
    """Print the protection of every round with the reason it meets the threat model, or refuse the plan
    (non-zero exit) naming the round, the protection, the unmet requirement and the protections that would meet
    it."""
    from privfed.threat import catalogue
    from privfed.threat.costs import load_costs, measure, save_costs
    from privfed.threat.model import ThreatModel
    from privfed.threat.plan import PlanRefused, available, plan_to_json, resolve_plan

    try:
        threat = ThreatModel.parse(threat_text) if threat_text.strip() else ThreatModel.trusted()
        protocol_options = _protocol_options(options)
        if measure_costs:
            installed = [n for n in catalogue.names(include_baselines=False) if available(n)]
            with console.status(f"measuring {', '.join(installed)}"):
                table = measure(installed)
            console.print(f"cost figures cached in {save_costs(table)}")
        costs = load_costs(costs_path)
        planned = resolve_plan(spec, rounds, threat, clients=clients, options=protocol_options, costs=costs)
    except PlanRefused as exc:
        console.print(f"[bold red]refused:[/] {exc}", markup=True, highlight=False)
        write_json(json_path, {"refused": str(exc), "threat": threat.as_dict(), "rounds": []})
        raise SystemExit(1)
    except PrivfedError as exc:
        fail(exc)
        return
    table_out = Table(title=f"privfed plan: {rounds} rounds under {threat.describe()}")
    table_out.add_column("rounds", justify="right")
    table_out.add_column("protection")
    table_out.add_column("reason")
    for first, last, protection, reason in _runs(planned):  # consecutive rounds alike share one row
        table_out.add_row(str(first) if first == last else f"{first}-{last}", protection, reason)
    console.print(table_out)
    console.print(f"costs: {costs.source}", highlight=False)
    payload = plan_to_json(planned, threat)
    payload["costs_source"] = costs.source
    write_json(json_path, payload)


def _runs(planned: Any) -> list[tuple[int, int, str, str]]:
    """(first round, last round, protection, reason) of each run of consecutive rounds with the same protection and
    reason; the JSON output keeps one entry per round."""
    runs: list[tuple[int, int, str, str]] = []
    for p in planned:
        if runs and runs[-1][2:] == (p.protection, p.reason) and runs[-1][1] == p.round - 1:
            runs[-1] = (runs[-1][0], p.round, p.protection, p.reason)
        else:
            runs.append((p.round, p.round, p.protection, p.reason))
    return runs


def _protocol_options(pairs: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        name, dot, option = key.strip().rpartition(".")
        if not sep or not dot or not name or not option:
            raise click.BadParameter(f"expected PROTECTION.KEY=VALUE, got {pair!r}")
        out.setdefault(name, {})[option] = parse_value(value)
    return out
