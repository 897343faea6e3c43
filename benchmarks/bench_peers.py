"""privfed's SecAgg against Flower's own SecAgg+ on the same inputs, alternating in one run, beside the AES floor.

Usage (from the repository root, with the project and flwr installed):

    python benchmarks/bench_peers.py                       # 10 x 100k, 20 x 100k, 10 x 1M
    python benchmarks/bench_peers.py --quick               # 10 x 100k only
    python benchmarks/bench_peers.py --toy                 # 4 x 1,000 (the smoke test's size)
    python benchmarks/bench_peers.py --write benchmarks/results/peers.md --profile benchmarks/results/profile_secagg.md \
        --readme README.md      # also peers.json, and README's table rendered from it (benchmarks/readme_peers.py)

(Not under ``nice`` on a machine shared with busy jobs: a niced run barely gets a core, and the wall clock then
measures the other jobs.)

For each size the same synthetic float32 vectors and integer weights go to four settings, run in turn (privfed
complete, Flower full, privfed sparse, Flower 5 shares) and repeated; each row reports the median of the repeats
(after one untimed warm-up run of each setting). Each timed round follows an untimed round of the same setting, as a
federated run's rounds follow each other, so that neither tool is timed on the caches the other tool's round just
filled (``--cold`` times each round straight after the previous setting's, the method of the first figures:
privfed's rounds are then about 2 ms slower, Flower's unchanged):

* privfed ``secagg`` with the complete graph (threshold 2n/3) and with a Harary graph of k = 4 neighbours (threshold 3),
  one in-process round through ``privfed.runtime.local.run_round`` (both state machines, real bytes);
* Flower's ``SecAggPlusWorkflow`` + ``secaggplus_mod`` (see ``flower_secagg.py``) with ``num_shares`` = n
  (everyone shares with everyone, threshold as privfed's) and ``num_shares`` = 5 (threshold 3), clipping range 1.
  Its fit instruction carries a one-value global model that the benchmark's clients ignore: privfed's timed round
  is the secure aggregation of updates already computed, so Flower's is the same work without a model broadcast
  (the full model added about 6 % to Flower's 10 x 1M round);
* the AES-256 keystream floor: the time one core takes to expand exactly the mask keystream the round needs (each
  client's self mask and one mask per neighbour, the server's removal of every self mask; 4-byte words) with
  OpenSSL's fastest AES counter-mode engine (AES-256-GCM over zeros, the engine privfed's masks use; see
  ``protocols/secagg/masking.py``), one context per key into a reused buffer, measured between the rounds; and
  for reference the same keystream from OpenSSL's AES-256-CTR mode (the slower engine, the floor as first measured).

privfed runs as installed: with numba (the ``all`` extra) its quantizer's inner loop is compiled
(``protocols/jit.py``, bit-identical to the numpy reference), loaded before timing by the warm-up runs.

Columns: round wall seconds, process CPU seconds (all threads), upload bytes per client (every client-to-server
message; Flower's as serialized protobuf) and their ratio to float32, the largest error against the exact float64
weighted mean. privfed's round uses the usable cores for quantising, masking and summing, so on an idle 2-core
machine its wall clock can fall below its CPU seconds. Synthetic data come from numpy's generator with a fixed seed
(data only).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_secagg import MAX_WEIGHT, synthetic  # noqa: E402
from flower_secagg import run_flower_secaggplus  # noqa: E402
import readme_peers  # noqa: E402

from privfed.runtime.local import run_round  # noqa: E402
from protocols import registry  # noqa: E402
from protocols.base import ClientUpdate  # noqa: E402

# (clients, params, repeats): nine repeats where a round is short, so that a median is not moved by the two or
# three rounds in nine that a shared machine slows by a third or more
SIZES = [(10, 100_000, 9), (20, 100_000, 3), (10, 1_000_000, 9)]
SPARSE_K = 4  # privfed Harary neighbours; Flower's 5 shares = the client and 4 neighbours


def keystream_floor(streams: int, words: int, repeats: int = 3, mode: str = "gcm") -> tuple[float, float]:
    """(wall, CPU) seconds for one core to expand ``streams`` AES-256 counter-mode keystreams of ``words`` 4-byte
    words (one GCM context per key over zeros: the keystream without privfed's per-segment contexts), each the
    best of ``repeats``."""
    zeros = bytes(4 * words)
    out = bytearray(4 * words + 16)
    best, best_cpu = float("inf"), float("inf")
    for _ in range(repeats):
        keys = [os.urandom(32) for _ in range(streams)]
        started, cpu_started = time.perf_counter(), time.process_time()
        for key in keys:
            engine = modes.GCM(bytes(12)) if mode == "gcm" else modes.CTR(bytes(16))
            Cipher(algorithms.AES(key), engine).encryptor().update_into(zeros, out)
        best = min(best, time.perf_counter() - started)
        best_cpu = min(best_cpu, time.process_time() - cpu_started)
    return best, best_cpu


def exact_mean(ups: dict[int, ClientUpdate]) -> np.ndarray:
    w = np.array([ups[c].weight for c in sorted(ups)])
    return w @ np.stack([ups[c].vector.astype(np.float64) for c in sorted(ups)]) / w.sum()


def privfed_round(ups: dict[int, ClientUpdate], options: dict[str, Any], exact: np.ndarray) -> dict[str, Any]:
    protocol = registry.create("secagg", {"max_weight": MAX_WEIGHT, "clip": 1.0, **options})
    started, cpu_started = time.perf_counter(), time.process_time()
    report = run_round(protocol, 1, ups, transcript=False)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    if report.result is None:
        raise RuntimeError(f"privfed round aborted: {report.aborted}")
    info = report.result.info
    return {"seconds": seconds, "cpu": cpu, "upload": report.summary()["upload_bytes_per_client"],
            "error": float(np.abs(report.result.mean - exact).max()),
            "setting": f"{info.get('graph')} (k={info.get('neighbours')}, t={info.get('threshold')})",
            "t": info.get("threshold")}


def flower_round(ups: dict[int, ClientUpdate], shares: int, threshold: int, exact: np.ndarray) -> dict[str, Any]:
    result = run_flower_secaggplus({c: u.vector for c, u in ups.items()}, {c: u.weight for c, u in ups.items()},
                                   num_shares=shares, threshold=threshold, clip=1.0)
    return {"seconds": result.seconds, "cpu": result.cpu_seconds, "upload": result.upload_bytes_per_client,
            "error": float(np.abs(result.mean - exact).max()),
            "setting": f"{'full' if shares == len(ups) else f'{shares} shares'} (t={threshold})"}


def median_row(runs: list[dict[str, Any]]) -> dict[str, Any]:
    row = dict(runs[0])
    for key in ("seconds", "cpu", "error"):
        row[key] = statistics.median(r[key] for r in runs)
    return row


def measure_size(clients: int, params: int, repeats: int, warm: bool = True) -> list[dict[str, Any]]:
    ups = synthetic(clients, params)
    exact = exact_mean(ups)
    complete_t = max(2, -(-2 * clients // 3))
    settings = [
        ("privfed", "complete", lambda: privfed_round(ups, {"graph": "complete"}, exact)),
        ("Flower", "full", lambda: flower_round(ups, clients, complete_t, exact)),
        ("privfed", "sparse", lambda: privfed_round(ups, {"graph": "harary", "neighbours": SPARSE_K}, exact)),
        ("Flower", "5 shares", lambda: flower_round(ups, SPARSE_K + 1, 3, exact)),
    ]
    runs: dict[int, list[dict[str, Any]]] = {i: [] for i in range(len(settings))}
    floors: dict[str, list[tuple[float, float]]] = {"complete": [], "sparse": []}
    ctr_floors: dict[str, list[tuple[float, float]]] = {"complete": [], "sparse": []}
    words = params + 1  # the weight slot rides along
    for _, _, run in settings:  # one untimed warm-up each (pool threads, buffers, imports), for both tools alike
        run()
    for _ in range(repeats):
        for i, (_, _, run) in enumerate(settings):
            if warm:  # an untimed round of the same setting first, as a federated run's rounds follow each other
                run()
            runs[i].append(run())
        # per client: self mask + one per neighbour; server: remove every survivor's self mask
        for graph, streams in (("complete", clients * clients + clients), ("sparse", clients * (SPARSE_K + 1) + clients)):
            floors[graph].append(keystream_floor(streams, words))
            ctr_floors[graph].append(keystream_floor(streams, words, mode="ctr"))  # OpenSSL's CTR mode, for reference
    rows = []
    for i, (tool, graph, _) in enumerate(settings):
        row = median_row(runs[i])
        kind = "complete" if graph in ("complete", "full") else "sparse"
        measured = floors[kind]
        row.update(tool=tool, graph=graph, clients=clients, params=params, ratio=row["upload"] / (4 * params),
                   floor=min(f[0] for f in measured), floor_cpu=min(f[1] for f in measured),
                   floor_ctr=min(f[0] for f in ctr_floors[kind]))
        rows.append(row)
    return rows


def report(rows: list[dict[str, Any]]) -> str:
    lines = ["| clients x params | tool | setting | round s (median) | CPU s | upload B/client | x float32 | "
             "max abs error | keystream floor s, 1 core (CPU s) | round / floor (CPU / CPU) | CTR-mode floor s | "
             "round / CTR floor | "
             "Flower / privfed (CPU / CPU) |",
             "|" + "---|" * 13]
    for r in rows:
        peer = next((p for p in rows if p["clients"] == r["clients"] and p["params"] == r["params"]
                     and p["tool"] == "Flower" and (p["graph"] == "full") == (r["graph"] == "complete")), None)
        speedup = f"{peer['seconds'] / r['seconds']:.1f}x ({peer['cpu'] / r['cpu']:.1f}x)" \
            if r["tool"] == "privfed" and peer else "-"
        over_floor = f"{r['seconds'] / r['floor']:.2f} ({r['cpu'] / max(r['floor_cpu'], 1e-9):.2f})" \
            if r["tool"] == "privfed" else "-"
        over_ctr = f"{r['seconds'] / r['floor_ctr']:.2f}" if r["tool"] == "privfed" else "-"
        lines.append(f"| {r['clients']} x {r['params']:,} | {r['tool']} | {r['setting']} | {r['seconds']:.3f} | "
                     f"{r['cpu']:.3f} | {r['upload']:,.0f} | {r['ratio']:.3f} | {r['error']:.2e} | "
                     f"{r['floor']:.3f} ({r['floor_cpu']:.3f}) | {over_floor} | {r['floor_ctr']:.3f} | "
                     f"{over_ctr} | {speedup} |")
    return "\n".join(lines)


def profile_hot_paths(clients: int, params: int) -> str:
    """cProfile (process CPU time as the clock, so other jobs on the machine do not inflate it) of one privfed
    round and one Flower round at the given size, top functions by own time. privfed runs single-threaded here so
    that the work of its pool threads is attributed to the functions doing it."""
    import protocols.encoding as encoding
    import protocols.parallel as parallel

    ups = synthetic(clients, params)
    exact = exact_mean(ups)
    out = io.StringIO()
    saved = parallel.usable_cores, encoding.usable_cores
    for label, run in (("privfed secagg, complete graph, one thread",
                        lambda: privfed_round(ups, {"graph": "complete"}, exact)),
                       ("Flower SecAgg+, full", lambda: flower_round(ups, clients, max(2, -(-2 * clients // 3)),
                                                                     exact))):
        parallel.usable_cores = encoding.usable_cores = lambda: 1
        try:
            run()  # warm
            profiler = cProfile.Profile(time.process_time)
            profiler.enable()
            run()
            profiler.disable()
        finally:
            parallel.usable_cores, encoding.usable_cores = saved
        out.write(f"## {label}: {clients} x {params:,}\n\n```\n")
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(22)
        out.write("```\n\n")
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="10 x 100k only")
    size.add_argument("--toy", action="store_true", help="4 x 1,000, one repeat (a smoke run)")
    parser.add_argument("--cold", action="store_true",
                        help="time each round straight after the previous setting's (no untimed round before it)")
    parser.add_argument("--write", metavar="PATH", help="also write the markdown table here")
    parser.add_argument("--profile", metavar="PATH", help="also write a cProfile of both tools at the largest size")
    parser.add_argument("--readme", metavar="PATH", help="with --write: render README's table from this run")
    args = parser.parse_args(argv)
    sizes = [(4, 1_000, 1)] if args.toy else SIZES[:1] if args.quick else SIZES
    rows = []
    for clients, params, repeats in sizes:
        got = measure_size(clients, params, repeats, warm=not args.cold)
        rows += got
        for r in got:
            print(f"{clients} x {params:,}: {r['tool']:7s} {r['setting']:28s} {r['seconds']:.3f} s "
                  f"(CPU {r['cpu']:.3f} s), upload {r['ratio']:.3f}x float32, max |error| {r['error']:.1e}, "
                  f"keystream floor {r['floor']:.3f} s (CPU {r['floor_cpu']:.3f} s)", flush=True)
    table = report(rows)
    print(table)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    machine = (f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, load average at "
               f"the end {load}")
    if args.write:
        import flwr
        command = "python benchmarks/bench_peers.py" + " ".join(
            [""] + [a for a in (argv if argv is not None else sys.argv[1:])])
        Path(args.write).write_text(
            f"# privfed SecAgg vs Flower SecAgg+ (same inputs, one run)\n\nCommand: `{command}`\n\n"
            f"Machine: {machine}; flwr {flwr.__version__}. Shared with other jobs while measured: wall seconds are "
            f"upper bounds, CPU seconds are steadier. Median of the repeats per size "
            f"({', '.join(str(r) for _, _, r in sizes)}) after one untimed "
            f"warm-up of each setting, settings alternating within each repeat"
            + (", each round timed straight after the previous setting's" if args.cold else
               ", each timed round after an untimed round of the same setting") + f".\n\n{table}\n")
        payload = {"command": command, "machine": machine, "flwr": flwr.__version__, "rows": rows}
        Path(args.write).with_suffix(".json").write_text(json.dumps(payload, indent=1) + "\n")
        if args.readme:
            readme_peers.update_readme(Path(args.readme), payload)
    if args.profile:
        clients, params, _ = sizes[-1]
        Path(args.profile).write_text(f"# Hot-path profiles ({machine})\n\n" + profile_hot_paths(clients, params))
    return 0


if __name__ == "__main__":
    sys.exit(main())
