"""``privfed audit RUN_DIR``: per-round protection, threat check, what each party received, cost, error and epsilon."""

from __future__ import annotations

from pathlib import Path

import click

from protocols.errors import PrivfedError
from privfed.cli.common import console, fail, write_json

__all__ = ["audit"]


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the report as JSON.")
@click.option("--markdown", "markdown_path", type=click.Path(dir_okay=False),
              help="Write the report as Markdown (default: print it).")
@click.option("--no-scan", is_flag=True, help="Skip the scan of every file for secret keys, seeds, shares, plain "
              "message digests and per-client figures the protections hide.")
@click.option("--against", "against", type=click.Path(exists=True, file_okay=False),
              help="Another run directory (e.g. a rerun with the same config and seed): any digest both hold, "
                   "the configuration digest aside, is a finding.")
def audit(run_dir: str, json_path: str | None, markdown_path: str | None, no_scan: bool,
          against: str | None) -> None:
    """Audit a run directory written by ``privfed run``. Exits 1 if a round falls short of the run's declared
    threat model or the secret scan finds anything."""
    from privfed.audit.report import build_report

    try:
        report = build_report(run_dir, scan=not no_scan, against=against)
    except PrivfedError as exc:
        fail(exc)
        return
    markdown = report.to_markdown()
    if markdown_path:
        path = Path(markdown_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(markdown, encoding="utf-8")
        console.print(f"audit report written to {path}")
    else:
        click.echo(markdown)
    write_json(json_path, report.as_dict())
    if not report.ok:
        console.print("[bold red]audit found problems:[/] see the threat checks and secret-scan findings above")
        raise SystemExit(1)
