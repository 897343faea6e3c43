"""Quickstart: a short federated run through privfed's Python API.

Next-character prediction on the Python standard library's own docstrings (one client per module, offline), a
small LSTM, plaintext FedAvg for 3 rounds of 5 clients. Prints the evaluation loss per round and what each client
uploaded, then where the run directory is (rounds.jsonl, transcripts/, checkpoint.json, summary.json).

    python examples/quickstart.py [OUT_DIR]

Change the protection with an override, e.g. ``"plan=dp"`` (central DP) or ``"plan=1-2:plaintext,3:secagg"``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from privfed.experiment import run_fedavg
from privfed.fl import load_config


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="privfed-quickstart-"))
    config = load_config(overrides=["fl.rounds=3", "fl.clients_per_round=5", "model.cell=lstm"], seed=0)

    def report(record: dict, _report: object) -> None:
        metrics = record["metrics"]
        print(f"round {record['round']}: {record['protection']:<10} survivors {record['survivors']}/"
              f"{len(record['sampled'])}  eval loss {metrics['loss']:.4f}  accuracy {metrics['accuracy']:.3f}  "
              f"upload {record['upload_bytes_per_client']:,.0f} B/client")

    result = run_fedavg(config, out / "run", on_round=report)
    initial, final = result.summary["initial_metrics"], result.summary["final_metrics"]
    print(f"eval loss {initial['loss']:.4f} -> {final['loss']:.4f} over {len(result.rounds)} rounds; "
          f"{result.summary['model']['parameters']:,} parameters; run directory {result.out_dir}")


if __name__ == "__main__":
    main()
