"""``privfed keys``: the registrar's commands — make the public roster and each client's private signing key."""

from __future__ import annotations

from pathlib import Path

import click

from protocols.errors import PrivfedError
from protocols.identity import make_identities, read_key_file, read_roster, write_key_file, write_roster
from privfed.cli.common import console, fail, write_json

__all__ = ["keys"]


@click.group()
def keys() -> None:
    """Identities for the active-adversary modes (secagg/paillier/ckks -o active=true): Ed25519 keys per client and
    a public roster binding client ids to them. Run once, before the run, by a registrar trusted during setup."""


@keys.command()
@click.option("--clients", type=int, help="Enrol clients 0 .. N-1.")
@click.option("--ids", help="Comma-separated client ids to enrol (instead of --clients).")
@click.option("--out", "out", type=click.Path(dir_okay=False), required=True, help="Roster JSON to write (public).")
@click.option("--key-dir", type=click.Path(file_okay=False), required=True,
              help="Directory for the private key files (client-<id>.key.json, mode 0600; hand each to its client).")
@click.option("--force", is_flag=True, help="Overwrite an existing roster or key files.")
def roster(clients: int | None, ids: str | None, out: str, key_dir: str, force: bool) -> None:
    """Make a fresh key pair per client, write the roster and one private key file per client."""
    if (clients is None) == (ids is None):
        fail("give exactly one of --clients N or --ids 0,1,...")
    try:
        members = list(range(clients)) if clients is not None else [int(v) for v in ids.split(",") if v.strip()]
    except ValueError:
        fail("--ids takes comma-separated integers")
    if len(set(members)) != len(members):
        fail("--ids lists a client twice")
    directory = Path(key_dir)
    directory.mkdir(parents=True, exist_ok=True)
    if not force and (Path(out).exists() or any(directory.glob("client-*.key.json"))):
        fail(f"{out} or key files in {key_dir} already exist; pass --force to replace them")
    try:
        made, identities = make_identities(members)
        for identity in identities.values():
            write_key_file(directory, identity)
        write_roster(out, made)
    except PrivfedError as exc:
        fail(exc)
    console.print(f"roster of {len(made)} clients written to {out} (sha256 {made.digest().hex()[:16]}...); "
                  f"{len(identities)} private key files in {key_dir}. Give each client only its own file, "
                  f"and delete the registrar's copies once distributed.")


@keys.command()
@click.argument("roster_path", type=click.Path(dir_okay=False, exists=True))
@click.option("--key-dir", type=click.Path(file_okay=False, exists=True), help="Also check every key file here.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the summary as JSON.")
def check(roster_path: str, key_dir: str | None, json_path: str | None) -> None:
    """Validate a roster (and key files against it); print its digest to pin it."""
    try:
        loaded = read_roster(roster_path)
        checked = []
        if key_dir:
            for path in sorted(Path(key_dir).glob("client-*.key.json")):
                checked.append(read_key_file(path, loaded).client_id)
    except PrivfedError as exc:
        fail(exc)
    summary = {"members": len(loaded), "ids": list(loaded.members), "sha256": loaded.digest().hex(),
               "key_files_checked": checked}
    console.print(f"roster OK: {len(loaded)} members, sha256 {summary['sha256']}"
                  + (f"; {len(checked)} key files match" if key_dir else ""))
    write_json(json_path, summary)
