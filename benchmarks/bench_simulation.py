"""Cross-device simulation speed: clients trained per second, batched (privfed.fl.batched) against the sequential loop
measured in the same run, and the wall clock of whole plaintext FedAvg rounds at 1,000 clients per round.

Usage (from the repository root, with the project installed):

    nice python benchmarks/bench_simulation.py                  # 100 and 1,000 clients per round
    nice python benchmarks/bench_simulation.py --quick          # 100 clients only
    nice python benchmarks/bench_simulation.py --write benchmarks/results/simulation.md

Task: the embedded default (next-character prediction, one user per documented object of the standard library,
the default LSTM: embedding 16, hidden 64, one local epoch of batch 32, at most 2 batches, as ``privfed compare``). The clients are the first N users in a
fixed random order from the experiment seed (data only). For each N: local training of those N clients from the same
global model, one client at a time (``privfed.fl.train.train_standard``, a fresh model copy each, as the FedAvg loop
did) and batched, with the wall clock and the process CPU seconds (CPU seconds are much less sensitive to other jobs
on a shared machine), clients per second, the speed-up, and the largest difference between the two results (float
tolerance; Adam amplifies summation-order differences on near-zero gradients). Then ``run_fedavg`` with plaintext
FedAvg, 1,000 clients per round (batched and sequential, same process): seconds per round including aggregation
through the protocol state machines and evaluation.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import sys
import time
from typing import Any, Callable

import numpy as np
import torch

from privfed.experiment.fedavg import run_fedavg
from privfed.fl.batched import train_batched
from privfed.fl.config import load_config
from privfed.fl.data import build_federated
from privfed.fl.models import ParamLayout, build_model, flatten
from privfed.fl.train import train_standard


#: the cross-device task of ``privfed compare`` (privfed.fl.corpus), two local batches per client at most
TASK = ["data.source=stdlib-users", "train.max_batches=2"]


def _clock(work: Callable[[], Any]) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def local_training(n: int, config: Any, data: Any) -> dict[str, Any]:
    spec = data.model_spec(config.model)
    model = build_model(spec, config.seed)
    layout, vector = ParamLayout.of(model), flatten(model)
    order = np.random.default_rng([config.seed, 99]).permutation(len(data.clients))[:n]
    clients = [data.clients[int(i)].train for i in order]
    seeds = [int(i) + 7 for i in order]

    def sequential() -> list[Any]:
        return [train_standard(copy.deepcopy(model), c, config.train, {"seed": s}) for c, s in zip(clients, seeds)]

    seq, seq_wall, seq_cpu = _clock(sequential)
    bat, bat_wall, bat_cpu = _clock(lambda: train_batched(spec, layout, vector, clients, config.train, seeds))
    diff = max(float(np.abs(a[0] - b[0]).max()) for a, b in zip(seq, bat))
    return {"clients": n, "samples": sum(len(c) for c in clients), "seq_wall": seq_wall, "seq_cpu": seq_cpu,
            "bat_wall": bat_wall, "bat_cpu": bat_cpu, "max_diff": diff,
            "max_update": max(float(np.abs(a[0]).max()) for a in seq)}


def fedavg_rounds(clients_per_round: int, rounds: int) -> dict[str, Any]:
    config = load_config(None, [*TASK, f"fl.clients_per_round={clients_per_round}", f"fl.rounds={rounds}",
                                "fl.transcripts=false"])
    data = build_federated(config.data, config.seed)
    out: dict[str, Any] = {"clients_per_round": clients_per_round, "users": len(data.clients)}
    for label, batched in (("batched", True), ("sequential", False)):
        result, wall, cpu = _clock(lambda: run_fedavg(config, None, dataset=data, batched_training=batched))
        out[label] = {"round_seconds": [r["round_seconds"] for r in result.rounds], "wall": wall, "cpu": cpu,
                      "final_loss": result.rounds[-1]["metrics"]["loss"]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 clients only, no FedAvg rounds")
    parser.add_argument("--write", metavar="PATH", help="also write the Markdown table to PATH")
    args = parser.parse_args()
    config = load_config(None, TASK)
    data = build_federated(config.data, config.seed)
    sizes = (100,) if args.quick else (100, 1000)
    local_training(20, config, data)  # untimed warm-up: torch's one-off start-up costs would go to the first loop
    lines = [f"# Simulation speed (privfed.fl.batched vs the sequential loop)", "",
             f"python {platform.python_version()}, torch {torch.__version__}, {os.cpu_count()} CPUs, "
             f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f} at start; "
             f"task: {len(data.clients)} users, {data.describe()['eval_samples']} eval samples", "",
             "| clients | samples | sequential s (CPU s) | clients/s | batched s (CPU s) | clients/s | speed-up "
             "wall (CPU) | max abs diff / max update |", "|---|---|---|---|---|---|---|---|"]
    for n in sizes:
        r = local_training(n, config, data)
        lines.append(f"| {n} | {r['samples']} | {r['seq_wall']:.2f} ({r['seq_cpu']:.2f}) | {n / r['seq_wall']:.0f} | "
                     f"{r['bat_wall']:.2f} ({r['bat_cpu']:.2f}) | {n / r['bat_wall']:.0f} | "
                     f"{r['seq_wall'] / r['bat_wall']:.1f}x ({r['seq_cpu'] / r['bat_cpu']:.1f}x) | "
                     f"{r['max_diff']:.1e} / {r['max_update']:.1e} |")
        print(lines[-1], flush=True)
    if not args.quick:
        f = fedavg_rounds(1000, 2)
        lines += ["", f"Plaintext FedAvg, {f['clients_per_round']} of {f['users']} users per round, 2 rounds "
                      "(whole loop: training, protocol round, evaluation):", "",
                  "| loop | seconds per round | wall s (CPU s) | final eval loss |", "|---|---|---|---|"]
        for label in ("sequential", "batched"):
            g = f[label]
            lines.append(f"| {label} | {', '.join(f'{s:.2f}' for s in g['round_seconds'])} | {g['wall']:.1f} "
                         f"({g['cpu']:.1f}) | {g['final_loss']:.4f} |")
            print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        with open(args.write, "w", encoding="utf-8") as handle:
            handle.write(text)


if __name__ == "__main__":
    sys.exit(main())
