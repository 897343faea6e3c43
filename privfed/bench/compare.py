"""Run one federated task under several protections and compare what each costs and what it gives.

Every protection trains the same task: the same data, partition, initial model, client sampling and seed; only
the plan (the protection used in every round) differs. Each figure comes from that run's own runtime clocks and
byte counters (``rounds.jsonl`` of each protection's run directory), so the rows are measured side by side on the
same machine in the same process, never estimated.

Columns (per protection): what it hides and from whom (from the threat catalogue), client seconds per round
(protocol compute + local training, mean per surviving client), server seconds per round, upload and download
bytes per client per round and their multiple of plaintext, the final evaluation metric and its change against
plaintext, epsilon, and the dropouts the protection tolerates. Download bytes include the float32 global model
each client receives every round (the same for every protection); ``protocol_download_bytes_per_client_per_round``
is the protocol's share alone.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from protocols.errors import ConfigError
from privfed.fl.config import ExperimentConfig
from privfed.fl.data import build_federated
from privfed.experiment.fedavg import FedAvgResult, run_fedavg

__all__ = ["DEFAULT_PROTECTIONS", "COMPARE_DEFAULTS", "COMPARE_SUBSETS", "COMPARE_EPSILON", "ATTACK_DEFAULTS", "compare_config",
           "run_compare", "run_frontier", "row_from_run", "subset_config"]

DEFAULT_PROTECTIONS: tuple[str, ...] = ("plaintext", "dp", "local-dp", "dp-sgd", "ckks", "paillier", "secagg",
                                        "secagg+dp")

#: the main job's size: a cross-device federation (one user per documented object of the standard library, a few
#: hundred users per round) where user-level DP learns at epsilon <= 8, every protection within 3 minutes on 2 cores
COMPARE_DEFAULTS: dict[str, Any] = {"data.source": "stdlib-users", "fl.rounds": 4, "fl.clients_per_round": 200,
                                    "train.max_batches": 2, "fl.transcripts": "false",
                                    "protection.options.secagg.graph": "harary",
                                    "protection.options.secagg+dp.graph": "harary",
                                    # user-level DP clips each update to L2 norm 3 (two Adam steps move ~2-3):
                                    # a clip of 1 throttles learning more than the noise does at 200 users
                                    "protection.options.dp.clip_norm": 3.0,
                                    "protection.options.secagg+dp.clip_norm": 3.0,
                                    "protection.options.local-dp.clip_norm": 3.0}

#: the sizing under ``--attacks`` (its own small word-level corpus of a few clients, privfed.audit.attack_run)
ATTACK_DEFAULTS: dict[str, Any] = {"fl.rounds": 3, "fl.clients_per_round": 5, "train.max_batches": 4}

#: protections whose cost at that size would not fit in the main job: measured on fewer clients and rounds, and
#: every output (table, JSON, CSV, plots) says so; ``--no-subsets`` runs them at full size
COMPARE_SUBSETS: dict[str, dict[str, int]] = {"paillier": {"clients_per_round": 5, "rounds": 1},
                                              "ckks": {"clients_per_round": 20, "rounds": 1},
                                              "dp-sgd": {"clients_per_round": 20, "rounds": 2}}

#: the main job calibrates every DP protection's noise to this target (at protection.delta) over its rounds
COMPARE_EPSILON = 8.0

Progress = Callable[[str, int, int], None]


def compare_config(config: ExperimentConfig, protection: str) -> ExperimentConfig:
    """The same experiment with ``protection`` in every round (and no plan-level threat check)."""
    return dataclasses.replace(config, plan=protection)


def subset_config(config: ExperimentConfig, subset: Mapping[str, int] | None) -> ExperimentConfig:
    """The experiment on fewer clients per round and/or rounds (never more than configured)."""
    if not subset:
        return config
    fl = config.fl
    clients = min(int(subset.get("clients_per_round", fl.clients_per_round)), fl.clients_per_round or 10**9)
    rounds = min(int(subset.get("rounds", fl.rounds)), fl.rounds)
    return dataclasses.replace(config, fl=dataclasses.replace(fl, clients_per_round=clients, rounds=rounds))


def _measured_on(config: ExperimentConfig, full: ExperimentConfig, n_clients: int) -> dict[str, Any]:
    per_round = min(config.fl.clients_per_round or n_clients, n_clients)
    full_round = min(full.fl.clients_per_round or n_clients, n_clients)
    subset = (per_round, config.fl.rounds) != (full_round, full.fl.rounds)
    return {"clients_per_round": per_round, "rounds": config.fl.rounds, "users": n_clients, "subset": subset,
            "note": (f"measured on a subset: {per_round} clients x {config.fl.rounds} round(s) instead of "
                     f"{full_round} x {full.fl.rounds} (its cost would not fit the main job); its eval loss is "
                     f"not comparable with the full rows") if subset else ""}


def _mean(records: list[dict[str, Any]], key: str) -> float:
    values = [float(r[key]) for r in records if isinstance(r.get(key), (int, float))]
    return sum(values) / len(values) if values else 0.0


def row_from_run(protection: str, result: FedAvgResult, wall_seconds: float) -> dict[str, Any]:
    """One comparison row from a finished run's per-round records."""
    from privfed.threat import catalogue

    records = result.rounds
    finished = [r for r in records if not r.get("aborted")]
    final = records[-1]["metrics"] if records else {}
    try:
        entry = catalogue.get(protection)
        hides_from, tolerates, hides = entry.hides_from, entry.tolerates_dropouts, entry.hides
        short = _short_hides_from(entry)
    except (KeyError, ConfigError):
        hides_from, tolerates, hides, short = "?", "?", "?", "?"
    protocol_seconds = _mean(finished, "client_seconds")
    training_seconds = _mean(finished, "local_training_seconds_per_client")
    return {
        "protection": protection,
        "hides": hides,
        "hides_from": hides_from,
        "hides_from_short": short,
        "dropouts_tolerated": tolerates,
        "rounds": len(records),
        "aborted_rounds": len(records) - len(finished),
        "client_seconds_per_round": protocol_seconds + training_seconds,
        "client_protocol_seconds_per_round": protocol_seconds,
        "local_training_seconds_per_round": training_seconds,
        "server_seconds_per_round": _mean(finished, "server_seconds"),
        "upload_bytes_per_client_per_round": _mean(finished, "upload_bytes_per_client"),
        # every protection also broadcasts the global model (float32) to each client each round
        "download_bytes_per_client_per_round": _mean(finished, "download_bytes_per_client") + 4 * result.layout.size,
        "protocol_download_bytes_per_client_per_round": _mean(finished, "download_bytes_per_client"),
        "model_parameters": result.layout.size,
        "final_metric": final.get("loss"),
        "final_metric_name": "eval loss",
        "final_accuracy": final.get("accuracy"),
        "epsilon": _epsilon(records, entry if hides != "?" else None),
        "epsilon_server": _epsilon(records, entry if hides != "?" else None, "server"),
        "max_verifier_error": max((r["verifier_max_abs_error"] for r in finished
                                   if r.get("verifier_max_abs_error") is not None), default=None),
        "wall_seconds": wall_seconds,
        "metric_per_round": [r["metrics"].get("loss") for r in records],
        "initial_metric": result.summary.get("initial_metrics", {}).get("loss"),
        "run_dir": str(result.out_dir) if result.out_dir else None,
    }


def _short_hides_from(entry: Any) -> str:
    """A table-sized summary of the catalogue's statement (the full text stays in compare.json)."""
    if entry.update_hiding == "cryptographic":
        who = "server + < t colluders" if entry.collusion_model == "threshold" else "server, if no key holder colludes"
    elif entry.update_hiding == "noise":
        who = "server sees noised updates"
    else:
        who = "nobody: server sees updates"
    if entry.has_dp:
        who += f"; model users (ε, {entry.dp_unit}-level)"
    return who


def _epsilon(records: list[dict[str, Any]], entry: Any, observer: str = "model") -> float | str | None:
    """The run's final epsilon against ``observer`` (``model`` users, or the ``server`` with its colluders);
    infinite when the protection adds no DP noise (no DP guarantee: reported, never hidden)."""
    epsilon = records[-1].get(f"epsilon_{observer}") if records else None
    if epsilon is None and entry is not None and not entry.has_dp:
        return float("inf")
    return epsilon


def _relative(rows: list[dict[str, Any]]) -> None:
    base = next((r for r in rows if r["protection"] == "plaintext"), None)
    for row in rows:
        for key in ("upload_bytes_per_client_per_round", "download_bytes_per_client_per_round",
                    "client_seconds_per_round", "server_seconds_per_round"):
            denominator = base[key] if base else 0
            row[key.replace("_per_client_per_round", "_x_plaintext").replace("_per_round", "_x_plaintext")] = (
                row[key] / denominator if denominator else None)
        if base and base["final_metric"] is not None and row["final_metric"] is not None:
            row["final_metric_change"] = row["final_metric"] - base["final_metric"]
        else:
            row["final_metric_change"] = None


def run_compare(config: ExperimentConfig, protections: Sequence[str], out_dir: str | Path, *,
                progress: Progress | None = None,
                after_run: Callable[[str, FedAvgResult, dict[str, Any]], None] | None = None,
                record_server_view: bool = False, subsets: Mapping[str, Mapping[str, int]] | None = None,
                epsilon: float | None = None) -> list[dict[str, Any]]:
    """Train the task once per protection (data built once) and return one row each (see the module docstring).

    ``subsets`` runs the named protections on fewer clients/rounds (each row's ``measured_on`` says so);
    ``epsilon`` calibrates every DP protection without an explicit ``noise_multiplier`` to that target over its
    rounds (:func:`privfed.bench.frontier.noise_for_target`).

    ``after_run(protection, result, row)`` may add columns (the attack audit does); with ``record_server_view``
    each run keeps the bytes the server received (``result.reports``).
    """
    if not protections:
        raise ConfigError("--protections: name at least one protection")
    unknown = [p for p in protections if p not in _known()]
    if unknown:
        raise ConfigError(f"unknown protection(s) {unknown}; choose from {', '.join(_known())}")
    out = Path(out_dir)
    taken = [p for p in protections if (out / p.replace("+", "_") / "rounds.jsonl").exists()]
    if taken or (out / "compare.json").exists():
        raise ConfigError(f"{out} already holds a comparison ({', '.join(taken) or 'compare.json'}); "
                          f"choose another --out (results are never overwritten)")
    out.mkdir(parents=True, exist_ok=True)
    dataset = build_federated(config.data, config.seed)
    configs = {p: subset_config(compare_config(config, p), (subsets or {}).get(p)) for p in protections}
    noise: dict[str, float] = {}
    if epsilon is not None:  # calibrate every DP protection before anything runs (a refusal names the target)
        from privfed.bench.frontier import FRONTIER_PROTECTIONS, USER_LEVEL, noise_for_target, with_noise

        for p in protections:
            explicit = "noise_multiplier" in config.protection.options.get(p, {})
            if p in USER_LEVEL + FRONTIER_PROTECTIONS and not explicit:
                noise[p] = noise_for_target(p, epsilon, configs[p], dataset)
                configs[p] = with_noise(configs[p], p, noise[p])
    _warm_up(config, dataset)
    rows: list[dict[str, Any]] = []
    for index, protection in enumerate(protections):
        run_config = configs[protection]
        if progress is not None:
            progress(protection, index, len(protections))
        started = time.perf_counter()
        result = run_fedavg(run_config, out / protection.replace("+", "_"),
                            dataset=dataset, record_server_view=record_server_view,
                            keep_reports=record_server_view)
        row = row_from_run(protection, result, time.perf_counter() - started)
        row["measured_on"] = _measured_on(run_config, config, len(dataset.clients))
        if protection in noise:
            row.update(target_epsilon=epsilon, noise_multiplier=noise[protection])
        if after_run is not None:
            after_run(protection, result, row)
        rows.append(row)
    _relative(rows)
    return rows


def run_frontier(config: ExperimentConfig, protections: Sequence[str], epsilons: Sequence[float],
                 out_dir: str | Path, *, progress: Progress | None = None,
                 subsets: Mapping[str, Mapping[str, int]] | None = None
                 ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Plaintext once (the ceiling), then every DP protection at every target epsilon, same task and seed; noise
    calibrated for each target before anything runs (see :mod:`privfed.bench.frontier`). Returns (rows, ceiling)."""
    from privfed.bench.frontier import calibrate_all, frontier_row, with_noise

    names = [p for p in dict.fromkeys(protections) if p != "plaintext"]
    if not names:
        raise ConfigError("--epsilons: name at least one DP protection (dp, secagg+dp, local-dp, dp-sgd)")
    out = Path(out_dir)
    if (out / "frontier.json").exists() or (out / "compare.json").exists():
        raise ConfigError(f"{out} already holds a comparison; choose another --out (results are never overwritten)")
    dataset = build_federated(config.data, config.seed)
    configs = {p: subset_config(compare_config(config, p), (subsets or {}).get(p)) for p in names}
    multipliers: dict[tuple[str, float], float] = {}
    for p in names:  # every target calibrated (or refused) before the first round
        multipliers.update(calibrate_all([p], epsilons, configs[p], dataset))
    out.mkdir(parents=True, exist_ok=True)
    _warm_up(config, dataset)
    jobs = [("plaintext", None)] + [(p, e) for p in names for e in epsilons]
    rows: list[dict[str, Any]] = []
    ceiling: dict[str, Any] = {}
    for index, (protection, target) in enumerate(jobs):
        if progress is not None:
            progress(protection if target is None else f"{protection} at epsilon {target:g}", index, len(jobs))
        started = time.perf_counter()
        if target is None:
            run_config = compare_config(config, "plaintext")
            result = run_fedavg(run_config, out / "plaintext", dataset=dataset)
            ceiling = row_from_run("plaintext", result, time.perf_counter() - started)
            ceiling["measured_on"] = _measured_on(run_config, config, len(dataset.clients))
            continue
        z = multipliers[(protection, target)]
        run_config = with_noise(configs[protection], protection, z)
        result = run_fedavg(run_config, out / f"{protection.replace('+', '_')}_eps{target:g}", dataset=dataset)
        row = row_from_run(protection, result, time.perf_counter() - started)
        row["measured_on"] = _measured_on(run_config, config, len(dataset.clients))
        rows.append(frontier_row(protection, target, z, result, row))
    _relative([ceiling, *rows])
    return rows, ceiling


def _warm_up(config: ExperimentConfig, dataset: Any) -> None:
    """One untimed local training and evaluation, so the first protection does not pay torch's one-off start-up
    cost (allocator, kernels, optimiser state: about 0.4 s per client in round 1 otherwise), and privfed's compiled
    kernels loaded."""
    from privfed.fl.models import build_model
    from privfed.fl.train import evaluate, select_trainer

    from protocols.jit import warm_up

    warm_up()  # the compiled quantizer: compiled once per machine, loaded once per process, never in a timed round
    model = build_model(dataset.model_spec(config.model), config.seed)
    select_trainer("standard")(model, dataset.clients[0].train, config.train,
                               {"seed": 0, "round": 0, "client_id": 0})
    evaluate(model, dataset.eval)


def _known() -> list[str]:
    from protocols import registry

    return registry.names()
