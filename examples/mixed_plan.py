"""A mixed per-round protection plan, checked against a declared threat model, run, and audited.

    python examples/mixed_plan.py [OUT_DIR]

1. declares the adversary: an honest-but-curious server, no colluding clients, no dropouts expected;
2. checks the plan ``1-3:ckks,4-7:secagg+dp,8-10:paillier`` against it (``privfed plan`` does the same from the
   shell) and shows that a plan with plaintext in round 1 is refused;
3. runs 10 rounds of FedAvg of the embedded LSTM (small, to finish in a few minutes on 2 cores) under that plan —
   the same as ``privfed run`` with ``plan = "..."`` and a ``[threat]`` table in the config;
4. writes the audit report (``privfed audit OUT_DIR``): per round the protection, the threat check, what each party
   received, bytes, error against plaintext and cumulative epsilon, plus a scan of every file for secrets.

Needs the HE and DP extras: pip install -c constraints.txt -e ".[all]".
"""

from __future__ import annotations

import sys
from pathlib import Path

from privfed.audit import build_report
from privfed.fl.config import config_from_table
from privfed.experiment.fedavg import run_fedavg
from privfed.threat import PlanRefused, ThreatModel, resolve_plan

PLAN = "1-3:ckks,4-7:secagg+dp,8-10:paillier"
THREAT = {"server": "honest-but-curious", "collusion": 0, "dropout": 0.0}
CLIENTS = 5


def main(out_dir: Path) -> int:
    threat = ThreatModel.from_mapping(THREAT)
    print(f"threat model: {threat.describe()}")
    try:
        resolve_plan("1:plaintext,2-10:secagg", 10, threat, clients=CLIENTS)
    except PlanRefused as refused:
        print(f"as expected, a plan with plaintext in round 1 is refused:\n{refused}\n")
    for planned in resolve_plan(PLAN, 10, threat, clients=CLIENTS):
        print(f"round {planned.round:2d}: {planned.protection:10s} {planned.reason}")

    config = config_from_table({
        "plan": PLAN, "threat": THREAT,
        "fl": {"rounds": 10, "clients_per_round": CLIENTS},
        "model": {"hidden": 32, "embedding": 16},
        "train": {"max_batches": 4},
        "protection": {"options": {"secagg+dp": {"expected_clients": CLIENTS, "noise_multiplier": 1.0}}},
    })
    result = run_fedavg(config, out_dir)
    print(f"\nrun {result.summary['status']}: {out_dir}")

    report = build_report(out_dir)
    (out_dir / "audit.md").write_text(report.to_markdown(), encoding="utf-8")
    print(report.to_markdown().split("\n## Round 1")[0])
    print(f"full report: {out_dir / 'audit.md'}  (or: privfed audit {out_dir})")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("runs") / "mixed_plan"))
