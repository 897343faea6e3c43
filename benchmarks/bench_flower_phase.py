"""Seconds per protocol phase on a loopback Flower deployment, Flower's own SuperNodes against privfed's launchers.

For each variant, one loopback deployment (SuperLink + 3 SuperNodes) runs ``--rounds`` SecAgg rounds on the bench's
synthetic vectors (no training: the phase cost is transport and process start-up only), and the mean seconds of a
phase exchange (server push to last reply pulled) is printed with its ratio to the first variant, measured in the
same invocation:

* ``flower``: ``flower-supernode`` as shipped (3 s idle poll, a cold ``flwr-clientapp`` process per message);
* ``poll``: privfed's launcher with the short idle poll only (``PRIVFED_FORK_CLIENTAPPS=0``);
* ``poll+warm``: the launcher with warm (forked) ClientApp processes;
* ``poll+warm+pulls``: plus objects still in flight retried within 0.01-0.05 s instead of Flower's 1-10 s backoff
  (:mod:`privfed.runtime.flower.objects`), and the node's 0.01 s wait for its ClientApp's reply: the loopback default.

The first three run with ``PRIVFED_QUICK_PULLS=0`` (Flower's object-pull backoff), as they did before the last
variant existed.

    PYTHONPATH=. python benchmarks/bench_flower_phase.py [--rounds 2] [--variants flower,poll,poll+warm,poll+warm+pulls]

A benchmark, not a test: machine load moves every figure; compare variants within one invocation.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from privfed.runtime.flower.loopback import LoopbackDeployment  # noqa: E402

#: variant -> (privfed's SuperNode launcher, PRIVFED_FORK_CLIENTAPPS, PRIVFED_QUICK_PULLS)
VARIANTS = {"flower": (False, "1", "0"), "poll": (True, "0", "0"), "poll+warm": (True, "1", "0"),
            "poll+warm+pulls": (True, "1", "1")}


def measure(variant: str, rounds: int, work: Path) -> tuple[list[float], float]:
    fast, fork, quick = VARIANTS[variant]
    os.environ["PRIVFED_FORK_CLIENTAPPS"] = fork
    os.environ["PRIVFED_QUICK_PULLS"] = quick
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    clock = time.perf_counter()
    with LoopbackDeployment(work / variant, nodes=3, fast_nodes=fast) as deployment:
        report = deployment.run(ROOT / "examples" / "flower", {
            "protection": "secagg", "rounds": rounds, "params": 1000, "clients": 3, "reply-timeout": 120.0},
            timeout=120.0 * 4 * rounds)
    if report.get("error"):
        raise RuntimeError(report["error"])
    phases = [seconds for r in report["rounds"] for _, seconds in r["exchange_seconds"]]
    return phases, time.perf_counter() - clock


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--variants", default="flower,poll,poll+warm,poll+warm+pulls")
    args = parser.parse_args()
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    work = Path(tempfile.mkdtemp(prefix="privfed-flower-phase-"))
    base = None
    print(f"{'variant':<15} {'phases':>6} {'mean_s':>7} {'median_s':>8} {'max_s':>6} {'wall_s':>7}  ratio")
    for name in names:
        phases, wall = measure(name, args.rounds, work)
        mean = statistics.fmean(phases)
        base = base or mean
        print(f"{name:<15} {len(phases):>6} {mean:>7.2f} {statistics.median(phases):>8.2f} {max(phases):>6.2f} "
              f"{wall:>7.1f}  {mean / base:.2f}x", flush=True)
    try:
        print(f"load average: {os.getloadavg()[0]:.1f}")
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
