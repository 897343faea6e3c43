"""``privfed privacy``: epsilon for a planned DP run, or the noise multiplier that meets a target epsilon."""

from __future__ import annotations

import time
from typing import Any

import click

from protocols.errors import PrivfedError
from privfed.cli.common import console, fail, write_json

__all__ = ["privacy"]


@click.command()
@click.option("--noise-multiplier", "noise_multiplier", type=float,
              help="Noise std / clip norm (z). Prints epsilon.")
@click.option("--epsilon", "target_epsilon", type=float,
              help="Target epsilon instead of --noise-multiplier: prints the smallest noise multiplier meeting it.")
@click.option("--sample-rate", "sample_rate", type=float, required=True,
              help="Poisson sampling rate q in (0, 1] (clients per round / population, or batch / records).")
@click.option("--steps", type=int, required=True, help="Number of noised steps (rounds, or DP-SGD steps).")
@click.option("--delta", type=float, default=1e-5, show_default=True, help="Target delta in (0, 1).")
@click.option("--accountant", type=click.Choice(["pld", "rdp"]), default="pld", show_default=True,
              help="dp-accounting's privacy-loss-distribution (tight) or Renyi-DP accountant.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the figure and its inputs as JSON.")
def privacy(noise_multiplier: float | None, target_epsilon: float | None, sample_rate: float, steps: int,
            delta: float, accountant: str, json_path: str | None) -> None:
    """Epsilon of STEPS Poisson-subsampled Gaussian steps (add/remove-one adjacency) at DELTA, computed by
    dp-accounting; or, with --epsilon, the noise multiplier that meets it over the planned steps."""
    from protocols.dp.accounting import epsilon_for, noise_multiplier_for

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
