"""The privacy–utility frontier: each DP protection run at several target epsilons on the same task and seed.

For every (protection, target epsilon) the noise multiplier comes from the shared accounting through ONE function,
:func:`noise_for_target` (the target mode of the FedAvg loop for user-level DP, the accountant's calibration for
record-level DP-SGD), so that the accounting has a single home; the run then reports the epsilon its privacy ledger
actually spent, which must not exceed the target (a row that did would say so in ``within_target``). Every target
is calibrated before anything runs: a target that no noise can meet (too many rounds or steps for the largest
multiplier the accountant searches) is refused naming the protection and the best epsilon reachable.

Reading the frontier: x is the epsilon spent (smaller is more private), y the final global eval loss (lower is
better); plaintext (no DP, epsilon infinite) is the ceiling a DP line approaches as epsilon grows, and the initial
model's loss is the floor of usefulness: a point above it learned nothing. Lines of different DP *levels* are not
comparable at equal epsilon: user-level (``dp``, ``secagg+dp``, ``local-dp``) protects a user's whole data, record-
level (``dp-sgd``) one training record.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Callable, Sequence

from protocols.errors import ConfigError
from privfed.experiment.fedavg import FedAvgResult
from privfed.fl.config import ExperimentConfig
from privfed.fl.data import FederatedDataset

__all__ = ["FRONTIER_PROTECTIONS", "USER_LEVEL", "parse_epsilons", "noise_for_target",
           "calibrate_all", "with_noise", "frontier_plot", "FRONTIER_COLUMNS"]

FRONTIER_PROTECTIONS: tuple[str, ...] = ("dp", "secagg+dp", "local-dp", "dp-sgd")
USER_LEVEL: tuple[str, ...] = ("dp", "local-dp", "secagg+dp", "ckks+dp")
RECORD_LEVEL: tuple[str, ...] = ("dp-sgd",)
FRONTIER_COLUMNS = ("protection", "level", "target_epsilon", "epsilon", "within_target", "noise_multiplier",
                    "final_metric", "initial_metric", "final_metric_change", "final_accuracy", "rounds",
                    "clients_per_round", "wall_seconds")


def parse_epsilons(text: str) -> tuple[float, ...]:
    """``"1,2,4,8"`` -> (1.0, 2.0, 4.0, 8.0), sorted and de-duplicated; refuses empty, non-numeric, non-positive
    and non-finite entries, naming them."""
    parts = [p.strip() for p in str(text).split(",")]
    if not any(parts):
        raise ConfigError("--epsilons: give a comma-separated list of positive numbers, e.g. 1,2,4,8")
    values, bad = [], []
    for part in parts:
        try:
            value = float(part)
        except ValueError:
            bad.append(part or "(empty)")
            continue
        if not math.isfinite(value) or value <= 0:
            bad.append(part)
        else:
            values.append(value)
    if bad:
        raise ConfigError(f"--epsilons: {', '.join(repr(b) for b in bad)} is not a positive finite number")
    return tuple(sorted(set(values)))


def noise_for_target(protection: str, epsilon: float, config: ExperimentConfig, data: FederatedDataset) -> float:
    """The noise multiplier that makes ``protection`` spend at most ``epsilon`` (at ``protection.delta``) over the
    run's rounds: :func:`privfed.threat.budget.calibrate`, the target mode of the plan check and the FedAvg loop,
    over the same round events the run's ledger records (DP-SGD with the schedule derived from ``data``). Raises
    ConfigError naming the best reachable epsilon when the target cannot be met."""
    if protection not in USER_LEVEL + RECORD_LEVEL:
        raise ConfigError(f"{protection!r} adds no DP noise: there is no epsilon to calibrate "
                          f"(frontier protections: {', '.join(FRONTIER_PROTECTIONS)})")
    from privfed.experiment.fedavg import clients_per_round, planned_options
    from privfed.threat import ThreatModel
    from privfed.threat.budget import calibrate

    threat = ThreatModel(server="trusted", epsilon=float(epsilon), delta=config.protection.delta,
                         dp_unit="record" if protection in RECORD_LEVEL else "user")
    options = planned_options(config, data, [protection])
    options.setdefault(protection, {}).pop("noise_multiplier", None)
    rounds = [(r, protection) for r in range(1, config.fl.rounds + 1)]
    return calibrate([protection], rounds, threat, clients_per_round(config, len(data.clients)), options)


def calibrate_all(protections: Sequence[str], epsilons: Sequence[float], config: ExperimentConfig,
                  data: FederatedDataset) -> dict[tuple[str, float], float]:
    """Every (protection, target) multiplier, before anything runs; one refusal naming every unreachable target."""
    found: dict[tuple[str, float], float] = {}
    refused: list[str] = []
    for protection in protections:
        for epsilon in epsilons:
            try:
                found[(protection, epsilon)] = noise_for_target(protection, epsilon, config, data)
            except ConfigError as exc:
                if protection not in USER_LEVEL + RECORD_LEVEL:
                    raise
                refused.append(f"{protection} cannot meet epsilon {epsilon:g} over {config.fl.rounds} rounds ({exc})")
    if refused:
        raise ConfigError("unreachable epsilon target(s): " + "; ".join(refused))
    return found


def with_noise(config: ExperimentConfig, protection: str, noise_multiplier: float) -> ExperimentConfig:
    """The experiment with ``protection`` in every round and its noise multiplier set."""
    options = {k: dict(v) for k, v in config.protection.options.items()}
    options.setdefault(protection, {})["noise_multiplier"] = float(noise_multiplier)
    return dataclasses.replace(config, plan=protection,
                               protection=dataclasses.replace(config.protection, options=options))


def frontier_row(protection: str, target: float, noise_multiplier: float, result: FedAvgResult,
                 row: dict[str, Any]) -> dict[str, Any]:
    """A comparison row plus the frontier's columns (target, spent epsilon, level, multiplier)."""
    spent = row.get("epsilon")
    spent_value = float(spent) if isinstance(spent, (int, float)) else math.inf
    return {**row, "target_epsilon": target, "noise_multiplier": noise_multiplier,
            "level": "record" if protection in RECORD_LEVEL else "user",
            "within_target": spent_value <= target * (1 + 1e-9),
            "clients_per_round": result.config.fl.clients_per_round, "label": f"{protection} ε≤{target:g}"}


def frontier_plot(rows: Sequence[dict[str, Any]], ceiling: dict[str, Any] | None, path: Path,
                  metric: Callable[[dict[str, Any]], Any] = lambda r: r.get("final_metric")) -> Path:
    """frontier.png: final eval loss against the epsilon spent, one line per protection, plaintext as the
    ceiling and the initial model as the floor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.8))
    markers = ["o", "s", "^", "D", "v", "P"]
    all_points: list[tuple[float, float]] = []
    for k, name in enumerate(dict.fromkeys(r["protection"] for r in rows)):
        points = sorted((float(r["epsilon"]) if isinstance(r.get("epsilon"), (int, float)) else r["target_epsilon"],
                         metric(r)) for r in rows if r["protection"] == name and metric(r) is not None)
        first = next(r for r in rows if r["protection"] == name)
        measured = first.get("measured_on") or {}
        subset = (f", subset: {measured['clients_per_round']} clients x {measured['rounds']} rounds"
                  if measured.get("subset") else "")
        ax.plot([p[0] for p in points], [p[1] for p in points], marker=markers[k % len(markers)],
                label=f"{name} ({first['level']}-level{subset})")
        all_points += points
    if ceiling is not None and metric(ceiling) is not None:
        ax.axhline(float(metric(ceiling)), color="black", linestyle="--", linewidth=1,
                   label="plaintext (no DP, ε = ∞): the ceiling")
    initial = next((r.get("initial_metric") for r in rows if r.get("initial_metric") is not None), None)
    if initial is not None:
        ax.axhline(float(initial), color="grey", linestyle=":", linewidth=1, label="initial model: nothing learned")
    floor = float(metric(ceiling)) if ceiling is not None and metric(ceiling) is not None else None
    if initial is not None and floor is not None and initial > floor:
        top = float(initial) + 1.5 * (float(initial) - floor)  # keep the interesting band readable
        off = [(x, y) for x, y in all_points if y > top]
        for x, y in off:
            ax.annotate(f"{y:.3g} ↑", (x, top), textcoords="offset points", xytext=(0, -12), ha="center",
                        fontsize=7)
        if off:
            ax.set_ylim(min(floor, min(y for _, y in all_points)) - 0.1 * (top - floor), top)
    ax.set_xscale("log", base=2)
    ticks = sorted({float(r["target_epsilon"]) for r in rows if r.get("target_epsilon") is not None})
    if ticks:
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.set_xlabel("ε spent over the run (δ from the config; smaller = more private)")
    ax.set_ylabel("final global eval loss (lower is better)")
    ax.set_title("Privacy–utility frontier: same task, seed and rounds; noise calibrated per target ε"
                 + ("\n(points above the plot: value ↑ at the top edge)" if ax.get_ylim()[1] < max(
                     (y for _, y in all_points), default=0) else ""), fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
