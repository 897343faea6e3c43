"""``privfed privacy``: epsilon for a planned DP run, or the noise multiplier that meets a target epsilon.

Two modes. The calculator (``--sample-rate Q --steps T``) composes T Poisson-subsampled Gaussian steps with
dp-accounting. ``--protection NAME`` instead asks the protection's own round events (:mod:`protocols.dp.events`, the
same function the plan check, target mode and the run's ledger call) for ``--steps`` rounds of ``--clients`` clients
under ``--threat``, and prints epsilon per observer (model users; the server and its colluders) and per unit.
"""

from __future__ import annotations

import time
from typing import Any

import click

from protocols.errors import PrivfedError
from privfed.cli.common import console, fail, parse_options, write_json

__all__ = ["privacy"]


@click.command()
@click.option("--noise-multiplier", "noise_multiplier", type=float,
              help="Noise std / clip norm (z). Prints epsilon.")
@click.option("--epsilon", "target_epsilon", type=float,
              help="Target epsilon instead of --noise-multiplier: prints the smallest noise multiplier meeting it.")
@click.option("--sample-rate", "sample_rate", type=float, default=None,
              help="Poisson sampling rate q in (0, 1] (clients per round / population, or batch / records).")
@click.option("--steps", type=int, required=True, help="Number of noised steps (rounds, or DP-SGD steps).")
@click.option("--delta", type=float, default=1e-5, show_default=True, help="Target delta in (0, 1).")
@click.option("--accountant", type=click.Choice(["pld", "rdp"]), default="pld", show_default=True,
              help="dp-accounting's privacy-loss-distribution (tight) or Renyi-DP accountant.")
@click.option("--protection", default=None,
              help="A DP protection (dp, local-dp, secagg+dp, ckks+dp, dp-sgd): epsilon per observer of --steps rounds.")
@click.option("--clients", type=int, default=None, help="With --protection: clients per round.")
@click.option("--threat", "threat_text", default="server=honest-but-curious",
              help="With --protection: the threat model (collusion and dropout lower distributed DP's noise).")
@click.option("-o", "--option", "option_pairs", multiple=True, metavar="KEY=VALUE",
              help="With --protection: its options (e.g. expected_clients=100, denominator=noised-count).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the figure and its inputs as JSON.")
def privacy(noise_multiplier: float | None, target_epsilon: float | None, sample_rate: float | None, steps: int,
            delta: float, accountant: str, protection: str | None, clients: int | None, threat_text: str,
            option_pairs: tuple[str, ...], json_path: str | None) -> None:
    """Epsilon of STEPS Poisson-subsampled Gaussian steps (add/remove-one adjacency) at DELTA, computed by
    dp-accounting; or, with --epsilon, the noise multiplier that meets it over the planned steps; or, with
    --protection, the protection's epsilon per observer and unit over STEPS rounds."""
    from protocols.dp.accounting import epsilon_for, noise_multiplier_for

    if protection is not None:
        _per_observer(protection, noise_multiplier, sample_rate, steps, delta, accountant, clients, threat_text,
                      option_pairs, json_path)
        return
    if sample_rate is None:
        fail("--sample-rate is required (or give --protection NAME for epsilon per observer)")

    if (noise_multiplier is None) == (target_epsilon is None):
        fail("give exactly one of --noise-multiplier Z (prints epsilon) or --epsilon E (prints the noise multiplier)")
    inputs: dict[str, Any] = {"sample_rate": sample_rate, "steps": steps, "delta": delta, "accountant": accountant,
                              "mechanism": "poisson-subsampled gaussian", "adjacency": "add/remove one"}
    started = time.perf_counter()
    try:
        if noise_multiplier is not None:
            value = epsilon_for(noise_multiplier, sample_rate, steps, delta, accountant)
            record = {"epsilon": value, "noise_multiplier": noise_multiplier, **inputs}
            console.print(f"epsilon = {value:.4f} at delta = {delta:g} ({accountant.upper()}; z = {noise_multiplier:g}, "
                          f"q = {sample_rate:g}, {steps} steps)")
        else:
            value = noise_multiplier_for(target_epsilon, sample_rate, steps, delta, accountant)
            achieved = epsilon_for(value, sample_rate, steps, delta, accountant)
            record = {"noise_multiplier": value, "target_epsilon": target_epsilon, "achieved_epsilon": achieved,
                      **inputs}
            console.print(f"noise multiplier = {value:.4f} (epsilon {achieved:.4f} <= {target_epsilon:g} at delta = "
                          f"{delta:g}; {accountant.upper()}; q = {sample_rate:g}, {steps} steps)")
    except PrivfedError as exc:
        fail(exc)
    record["seconds"] = time.perf_counter() - started
    write_json(json_path, record)


def _per_observer(name: str, z: float | None, sample_rate: float | None, rounds: int, delta: float, accountant: str,
                  clients: int | None, threat_text: str, pairs: tuple[str, ...], json_path: str | None) -> None:
    from dataclasses import replace

    from privfed.threat import ThreatModel, catalogue
    from privfed.threat.budget import planned_epsilon

    try:
        if name not in catalogue.CATALOGUE or not catalogue.get(name).has_dp:
            fail(f"--protection must be a DP protection, got {name!r}")
        if z is None:
            fail("--protection needs --noise-multiplier Z")
        options = parse_options(pairs)
        options["noise_multiplier"] = z
        if sample_rate is not None:
            options["sample_rate"] = sample_rate
            if sample_rate < 1 and clients is not None:
                options.setdefault("expected_clients", clients)
        threat = ThreatModel.coerce(threat_text)
        table: dict[str, dict[str, float]] = {}
        for unit in ("user", "record"):
            model = replace(threat, epsilon=1.0, delta=delta, dp_unit=unit, server="honest-but-curious"
                            if threat.server == "trusted" else threat.server)
            for observer, value in planned_epsilon([(r, name) for r in range(1, rounds + 1)], model, clients,
                                                   {name: options}, accountant).items():
                table.setdefault(observer, {})[unit] = value
    except PrivfedError as exc:
        fail(exc)
    for observer, row in table.items():
        who = "model users" if observer == "model" else "the server (+ declared colluders)"
        console.print(f"against {who}: user-level epsilon = {row['user']:.4g}, record-level epsilon = "
                      f"{row['record']:.4g} at delta = {delta:g} ({accountant.upper()}, {rounds} rounds of {name})")
    write_json(json_path, {"protection": name, "noise_multiplier": z, "rounds": rounds, "clients": clients,
                           "threat": threat_text, "delta": delta, "accountant": accountant, "options": options,
                           "epsilon": table})
