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
from typing import Any, Callable, Sequence

from protocols.errors import ConfigError
from privfed.fl.config import ExperimentConfig
from privfed.fl.data import build_federated
from privfed.experiment.fedavg import FedAvgResult, run_fedavg

__all__ = ["DEFAULT_PROTECTIONS", "COMPARE_DEFAULTS", "compare_config", "run_compare", "row_from_run"]

DEFAULT_PROTECTIONS: tuple[str, ...] = ("plaintext", "dp", "local-dp", "dp-sgd", "ckks", "paillier", "secagg",
                                        "secagg+dp")

#: the main job's size: every protection above within 3 minutes on 2 cores (see README for a serious comparison)
COMPARE_DEFAULTS: dict[str, Any] = {"fl.rounds": 3, "fl.clients_per_round": 5, "train.max_batches": 4}

Progress = Callable[[str, int, int], None]


def compare_config(config: ExperimentConfig, protection: str) -> ExperimentConfig:
    """The same experiment with ``protection`` in every round (and no plan-level threat check)."""
    return dataclasses.replace(config, plan=protection)


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
                record_server_view: bool = False) -> list[dict[str, Any]]:
    """Train the task once per protection (data built once) and return one row each (see the module docstring).

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
    _warm_up(config, dataset)
    rows: list[dict[str, Any]] = []
    for index, protection in enumerate(protections):
        if progress is not None:
            progress(protection, index, len(protections))
        started = time.perf_counter()
        result = run_fedavg(compare_config(config, protection), out / protection.replace("+", "_"),
                            dataset=dataset, record_server_view=record_server_view,
                            keep_reports=record_server_view)
        row = row_from_run(protection, result, time.perf_counter() - started)
        if after_run is not None:
            after_run(protection, result, row)
        rows.append(row)
    _relative(rows)
    return rows


def _warm_up(config: ExperimentConfig, dataset: Any) -> None:
    """One untimed local training and evaluation, so the first protection does not pay torch's one-off start-up
    cost (allocator, kernels, optimiser state: about 0.4 s per client in round 1 otherwise)."""
    from privfed.fl.models import build_model
    from privfed.fl.train import evaluate, select_trainer

    model = build_model(dataset.model_spec(config.model), config.seed)
    select_trainer("standard")(model, dataset.clients[0].train, config.train,
                               {"seed": 0, "round": 0, "client_id": 0})
    evaluate(model, dataset.eval)


def _known() -> list[str]:
    from protocols import registry

    return registry.names()
