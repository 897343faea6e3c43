"""Seconds per round of a privfed run on a loopback Flower deployment, in the acceptance shape of issue 15.

Three node folders of real text (privfed's own sources, a different file per node), ``privfed schema`` on public
material, ``examples/flower/loopback.sh start 3 --data-root DIR``, then

    privfed run -c runtime.kind=flower -c runtime.superlink=127.0.0.1:PORT -c data.source=text
        -c data.schema=schema.json -c plan="1-2:plaintext,3:secagg" -c fl.rounds=3 -c fl.clients_per_round=3 --out RUN

It prints every round's seconds (and how they split: local training, the protocol exchanges, evaluation) and the
ratio of the SecAgg round to the second plaintext round, both measured in the same run on the same deployment (the
issue's target: at most 2.5), and whether ``privfed audit RUN`` accepts the run directory. A benchmark, not a test:
it asserts nothing about time.

    PYTHONPATH=. python benchmarks/bench_flower_rounds.py [--rounds-plan "1-2:plaintext,3:secagg"] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from privfed.runtime.flower.loopback import free_ports  # noqa: E402


def _prepare(work: Path) -> None:
    public = "\n".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "privfed" / "fl").glob("*.py")))
    (work / "public.txt").write_text(public, encoding="utf-8")
    for i, source in enumerate(sorted((ROOT / "privfed" / "threat").glob("*.py"))[:3]):
        (work / "data" / f"node-{i}").mkdir(parents=True, exist_ok=True)
        (work / "data" / f"node-{i}" / "notes.txt").write_text(source.read_text(encoding="utf-8")[:4000],
                                                             encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plan", default="1-2:plaintext,3:secagg")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--extra", action="append", default=[], help="more -c overrides for privfed run")
    parser.add_argument("--keep", type=Path, default=None, help="work directory to keep (default: a temporary one)")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="privfed-flower-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    _prepare(work)
    bindir = Path(sys.executable).parent
    privfed = [str(bindir / "privfed")] if (bindir / "privfed").exists() else [sys.executable, "-m", "privfed.cli"]
    port = free_ports(4)  # the SuperLink's, then one per node (loopback.sh: base + i)
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "PRIVFED_FLOWER_DIR": str(work / "flower"),
           "PRIVFED_SUPERLINK_PORT": str(port), "PRIVFED_NODE_PORT_BASE": str(port + 1),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    script = ROOT / "examples" / "flower" / "loopback.sh"
    subprocess.run([*privfed, "schema", "--source", "text", "--path", str(work / "public.txt"), "--out",
                    str(work / "schema.json"), "--max-unknown", "0.2"], env=env, check=True, capture_output=True)
    subprocess.run(["bash", str(script), "start", "3", "--data-root", str(work / "data")], env=env, cwd=work,
                   check=True, capture_output=True, timeout=180)
    try:
        clock = time.perf_counter()
        overrides = ["runtime.kind=flower", f"runtime.superlink=127.0.0.1:{port}", "runtime.timeout=1800",
                     "data.source=text", f"data.schema={work / 'schema.json'}", f'plan="{args.plan}"',
                     f"fl.rounds={args.rounds}", "fl.clients_per_round=3", *args.extra]
        done = subprocess.run([*privfed, "run", *[a for o in overrides for a in ("-c", o)], "--out", str(work / "RUN")],
                              env=env, cwd=work, capture_output=True, text=True)
        wall = time.perf_counter() - clock
    finally:
        subprocess.run(["bash", str(script), "stop"], env=env, cwd=work, capture_output=True, timeout=120)
    if done.returncode != 0:
        print(done.stdout[-3000:], done.stderr[-3000:], file=sys.stderr)
        return 1
    rounds = [json.loads(line) for line in (work / "RUN" / "rounds.jsonl").read_text().splitlines()]
    audit = subprocess.run([*privfed, "audit", str(work / "RUN")], env=env, cwd=work, capture_output=True, text=True)
    print(f"privfed run wall seconds: {wall:.1f}  (work directory {work})")
    print(f"privfed audit RUN: {'ok' if audit.returncode == 0 else 'FAILED'} (exit {audit.returncode})")
    # exchanges: the round's protocol phases (training folded into the first) + its evaluation's (1 in the clear)
    print("round protection survivors  round_s  train_s  protocol_s  phases  eval_s  exchanges  loss")
    for r in rounds:
        exchanges = r.get("exchange_seconds") or []
        total = len(exchanges) + int(r.get("metrics", {}).get("evaluation_phases", 1))
        print(f"{r['round']:>5} {r['protection']:<10} {r.get('survivors', 0):>9} {r['round_seconds']:>8.1f} "
              f"{r.get('local_training_wall_seconds', 0.0):>8.1f} {r.get('total_seconds', 0.0):>11.1f} "
              f"{len(exchanges):>7} {r.get('evaluation_seconds', 0.0):>7.1f} {total:>10}  "
              f"{r.get('metrics', {}).get('loss')}")
    protections = [r["protection"] for r in rounds]
    plain = [r for r in rounds if r["protection"] == "plaintext"]
    secure = [r for r in rounds if r["protection"] != "plaintext"]
    if len(plain) >= 2 and secure:
        ratio = secure[-1]["round_seconds"] / plain[1]["round_seconds"]
        print(f"{secure[-1]['protection']} round / second plaintext round: {ratio:.2f}x (target <= 2.5x)  "
              f"plan {protections}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
