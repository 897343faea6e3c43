"""Full-round SecAgg / SecAgg+ timings beside a plaintext baseline measured in the same run.

Usage (from the repository root, with the project installed):

    nice python benchmarks/bench_secagg.py              # 10 x 100k (complete), 100 x 100k and 1000 x 10k (Harary)
    nice python benchmarks/bench_secagg.py --quick      # 10 x 100k only
    nice python benchmarks/bench_secagg.py --write benchmarks/results/secagg.md

Each row is one in-process round through ``privfed.runtime.local.run_round`` (both state machines, real bytes, no
network): wall-clock seconds of the whole round (median of 5 rounds for 10 clients, one round otherwise), the
process CPU seconds of the same round (the round is single-threaded, so CPU seconds approximate the wall clock of a
quiet machine and are far less sensitive to other jobs), the server's share, the mean client seconds, upload bytes
per client and their ratio to float32, and the maximal error against the exact float64 weighted mean beside the
declared bound. The plaintext row is measured in the same process just before.
Synthetic data come from numpy's generator with a fixed seed (data only; every key and mask comes from the OS).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from typing import Any

import numpy as np

from protocols import registry
from protocols.base import ClientUpdate
from privfed.runtime.local import run_round

MAX_WEIGHT = 100.0
CONFIGS = [  # (clients, params, secagg options, repeats)
    (10, 100_000, {"graph": "complete"}, 5),
    (100, 100_000, {"graph": "harary"}, 1),
    (1000, 10_000, {"graph": "harary"}, 1),
]


def synthetic(clients: int, params: int, seed: int = 0) -> dict[int, ClientUpdate]:
    rng = np.random.default_rng(seed)  # experiment data only
    return {c: ClientUpdate(rng.uniform(-1, 1, params).astype(np.float32), float(rng.integers(1, 101)))
            for c in range(clients)}


def measure(name: str, options: dict[str, Any], ups: dict[int, ClientUpdate], repeats: int) -> dict[str, Any]:
    protocol = registry.create(name, {"max_weight": MAX_WEIGHT, "clip": 1.0, **options})
    seconds, cpu, report = [], [], None
    for _ in range(repeats):
        started, cpu_started = time.perf_counter(), time.process_time()
        report = run_round(protocol, 1, ups, transcript=False)
        seconds.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    assert report is not None and report.result is not None, report.aborted if report else "no run"
    result = report.result
    survivors = list(result.survivors)
    w = np.array([ups[c].weight for c in survivors])
    exact = w @ np.stack([ups[c].vector.astype(np.float64) for c in survivors]) / w.sum()
    summary = report.summary()
    params = next(iter(ups.values())).vector.size
    return {
        "protection": name, "clients": len(ups), "params": params,
        "seconds": statistics.median(seconds), "cpu_seconds": statistics.median(cpu), "server_seconds": report.server_seconds,
        "client_seconds": summary["client_seconds"],
        "upload": summary["upload_bytes_per_client"], "ratio": summary["upload_bytes_per_client"] / (4 * params),
        "error": float(np.abs(result.mean - exact).max()), "bound": float(result.error_bound),
        "graph": result.info.get("graph", "-"), "k": result.info.get("neighbours", "-"),
        "t": result.info.get("threshold", "-"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 x 100k only")
    parser.add_argument("--write", metavar="PATH", help="also write the markdown table here")
    args = parser.parse_args()
    rows = []
    for clients, params, options, repeats in CONFIGS[:1] if args.quick else CONFIGS:
        ups = synthetic(clients, params)
        base = measure("plaintext", {}, ups, repeats)
        sec = measure("secagg", options, ups, repeats)
        sec["slowdown"] = sec["seconds"] / base["seconds"]
        rows += [base, sec]
        print(f"{clients} x {params}: plaintext {base['seconds']:.3f} s, secagg ({sec['graph']}, k={sec['k']}, "
              f"t={sec['t']}) {sec['seconds']:.3f} s ({sec['slowdown']:.0f}x; CPU {sec['cpu_seconds']:.3f} s), upload {sec['ratio']:.4f}x float32, "
              f"max |error| {sec['error']:.2e} <= bound {sec['bound']:.2e}", flush=True)
    header = ("| clients x params | protection | graph (k, t) | round s (median, wall) | round CPU s | server s "
              "| client s (mean) | upload B/client | x float32 | max abs error | error bound |")
    lines = [header, "|" + "---|" * 11]
    for r in rows:
        graph = "-" if r["protection"] == "plaintext" else f"{r['graph']} ({r['k']}, {r['t']})"
        seconds = f"{r['seconds']:.3f}" + (f" ({r['slowdown']:.0f}x)" if "slowdown" in r else "")
        lines.append(f"| {r['clients']} x {r['params']:,} | {r['protection']} | {graph} | {seconds} | "
                     f"{r['cpu_seconds']:.3f} | "
                     f"{r['server_seconds']:.3f} | {r['client_seconds']:.4f} | {r['upload']:,.0f} | "
                     f"{r['ratio']:.4f} | {r['error']:.2e} | {r['bound']:.2e} |")
    table = "\n".join(lines)
    print(table)
    if args.write:
        load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
        machine = (f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
                   f"load average at the end {load}")
        command = "nice python benchmarks/bench_secagg.py" + (" --quick" if args.quick else "") + \
            f" --write {args.write}"
        text = (f"# SecAgg benchmark\n\nCommand: `{command}`\n\nMachine: {machine} (shared with other jobs "
                f"while measured: figures are upper bounds). One in-process round via `run_round`; the 10-client "
                f"row is the median of 5 rounds, the others a single round. 1000 clients use 10,000 params "
                f"to keep memory and time modest.\n\n{table}\n")
        with open(args.write, "w") as handle:
            handle.write(text)


if __name__ == "__main__":
    sys.exit(main())
