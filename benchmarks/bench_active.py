"""What active-adversary mode costs: active vs semi-honest SecAgg (and HE) measured side by side in one run.

Usage (from the repository root, with the project installed):

    nice python benchmarks/bench_active.py                # secagg 10 x 100k and 100 x 100k; ckks/paillier 10 x 10k
    nice python benchmarks/bench_active.py --quick        # secagg 10 x 100k only
    nice python benchmarks/bench_active.py --variants     # secagg+dp, ckks+dp 10 x 10k; threshold paillier 10 x 1k
    nice python benchmarks/bench_active.py --write benchmarks/results/active.md

Each pair of rows is one in-process round of the same data through ``privfed.runtime.local.run_round`` (both state
machines, real bytes), semi-honest first, then ``active=true`` (complete graph; in-process registrar: the roster is
made before the timed round). Reported per row: phases (round trips), upload and download bytes per client, the
bytes the active mode adds (signatures, the consistency round, for HE the relayed contributions), process CPU
seconds of the round (single-threaded), mean client seconds, server seconds, and the ratio active / semi-honest.
Median of ``--repeats`` rounds for 10 clients, one round otherwise. Synthetic data from numpy's generator with a
fixed seed (data only; keys, masks and signatures come from the OS).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from typing import Any

import numpy as np

from protocols import registry
from protocols.base import ClientUpdate
from privfed.runtime.local import run_round

MAX_WEIGHT = 100.0
SECAGG = [(10, 100_000), (100, 100_000)]
HE = [("ckks", 10, 10_000, {}), ("paillier", 10, 10_000, {})]
#: the active variants added later (issue 14): distributed DP and threshold decryption, small sizes
VARIANTS = [("secagg+dp", 10, 10_000, {}), ("ckks+dp", 10, 10_000, {}),
            ("paillier", 10, 1_000, {"decryption": "threshold"})]


def _updates(n: int, dim: int, seed: int = 7) -> dict[int, ClientUpdate]:
    rng = np.random.default_rng(seed)  # data only
    return {c: ClientUpdate(rng.uniform(-1, 1, dim).astype(np.float32), float(rng.integers(1, 101)))
            for c in range(n)}


def _measure(name: str, options: dict[str, Any], n: int, dim: int, repeats: int) -> dict[str, Any]:
    protocol = registry.create(name, {"max_weight": MAX_WEIGHT, **options})
    states: dict[int, dict] = {}
    run_round(protocol, 0, _updates(n, 8) if name.startswith("secagg") else _updates(n, dim, 1000),
              client_states=states, transcript=False)  # warm-up: registrar, HE keys
    rows = []
    for r in range(repeats):
        updates = _updates(n, dim, 7 + r)  # new inputs each round: an active client takes part once per input
        cpu, wall = time.process_time(), time.perf_counter()
        report = run_round(protocol, r + 1, updates, client_states=states, transcript=False)
        rows.append((time.process_time() - cpu, time.perf_counter() - wall, report))
        if report.aborted:
            raise SystemExit(f"{name} {options}: round aborted: {report.aborted}")
    cpu_s = statistics.median(r[0] for r in rows)
    wall_s = statistics.median(r[1] for r in rows)
    report = rows[-1][2]
    s = report.summary()
    label = name + ("[threshold]" if options.get("decryption") == "threshold" else "")
    return {"protection": label + (" active" if options.get("active") else ""), "clients": n, "params": dim,
            "phases": len(set(report.phases)), "upload_B": s["upload_bytes_per_client"],
            "download_B": s["download_bytes_per_client"], "cpu_s": cpu_s, "wall_s": wall_s,
            "client_s": s["client_seconds"], "server_s": s["server_seconds"],
            "up_by_phase": s["upload_bytes_by_phase"], "down_by_phase": s["download_bytes_by_phase"]}


def _pair(name: str, n: int, dim: int, options: dict[str, Any], repeats: int) -> list[str]:
    base = _measure(name, dict(options), n, dim, repeats)
    active = _measure(name, {**options, "active": True}, n, dim, repeats)
    lines = []
    for row in (base, active):
        ratio = "" if row is base else (f" {row['cpu_s'] / base['cpu_s']:.2f}x cpu, "
                                        f"+{row['upload_B'] - base['upload_B']:,.0f} B up, "
                                        f"+{row['download_B'] - base['download_B']:,.0f} B down per client, "
                                        f"+{row['phases'] - base['phases']} round trip")
        lines.append(f"| {row['protection']} | {n} x {dim:,} | {row['phases']} | {row['upload_B']:,.0f} | "
                     f"{row['download_B']:,.0f} | {row['cpu_s']:.3f} | {row['wall_s']:.3f} | {row['client_s']:.4f} | "
                     f"{row['server_s']:.4f} |{ratio} |")
    extra_phase = set(active["up_by_phase"]) - set(base["up_by_phase"])
    for phase in sorted(extra_phase):
        lines.append(f"|  ({phase}: {active['up_by_phase'][phase] / n:,.0f} B up, "
                     f"{active['down_by_phase'].get(phase, 0) / n:,.0f} B down per client) | | | | | | | | | |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--variants", action="store_true", help="only the active DP and threshold-Paillier rows")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", help="also write the table to this markdown file")
    args = parser.parse_args()
    header = ["| protection | clients x params | phases | upload B/client | download B/client | cpu s | wall s | "
              "client s | server s | active vs semi-honest |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    lines = list(header)
    configs = [] if args.variants else SECAGG[:1] if args.quick else SECAGG
    for n, dim in configs:
        lines += _pair("secagg", n, dim, {}, args.repeats if n <= 10 else 1)
        print("\n".join(lines[-3:]), flush=True)
    if not args.quick:
        for name, n, dim, options in (VARIANTS if args.variants else HE + VARIANTS):
            try:
                lines += _pair(name, n, dim, options, 1)
            except Exception as exc:  # noqa: BLE001 - an optional dependency missing: say so, keep the rest
                lines.append(f"| {name} | skipped: {type(exc).__name__}: {exc} |")
            print("\n".join(lines[-2:]), flush=True)
    meta = (f"\nMeasured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.machine()} "
            f"({os.cpu_count()} CPUs, shared), Python {platform.python_version()}.")
    text = "\n".join(lines) + "\n" + meta + "\n"
    print("\n" + text)
    if args.write:
        with open(args.write, "w") as handle:
            handle.write("# Active-adversary cost beside semi-honest (benchmarks/bench_active.py)\n\n"
                         f"Command: `nice python benchmarks/bench_active.py --write {args.write}`\n\n" + text)


if __name__ == "__main__":
    main()
