"""Active SecAgg on a real loopback Flower deployment (``pytest -m flower``): ``privfed keys roster``, then
``loopback.sh start 4 --data-root DIR --key-dir KEYS`` gives node i only its own key file and the public roster in its
node config; node 3's file is an impostor's key (another registrar's key for client 3).

In the one deployment, two runs: ``privfed run`` with ``runtime.roster`` and ``protection.options.secagg.active=true``
trains one round on node-local data (3 survivors, node 3 dropped naming the ``roster`` check, the consistency-check
phase ran), then a run of the example app on synthetic vectors gives the exact weighted mean of nodes 0-2 within
the declared bound. ``loopback.sh stop`` leaves no process behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.flower
pytest.importorskip("flwr")
pytest.importorskip("protocols.secagg")

from click.testing import CliRunner  # noqa: E402

from privfed.bench.aggregation import synthetic_updates  # noqa: E402
from privfed.cli import main as cli  # noqa: E402
from privfed.runtime.flower.loopback import _descendants, free_ports, toml_value  # noqa: E402
from protocols.identity import key_file_name, make_identities, write_key_file  # noqa: E402
from test_flower_submit import ROOT, _running  # noqa: E402

NODES, IMPOSTOR, PARAMS, SEED = 4, 3, 32, 3


def test_active_secagg_on_a_loopback_deployment(tmp_path: Path) -> None:
    runner = CliRunner()
    keys = tmp_path / "keys"
    made = runner.invoke(cli, ["keys", "roster", "--clients", str(NODES), "--out", str(keys / "roster.json"),
                               "--key-dir", str(keys)])
    assert made.exit_code == 0, made.output
    _, impostor = make_identities([IMPOSTOR])  # a key for client 3 that the roster does not bind
    (keys / key_file_name(IMPOSTOR)).unlink()
    write_key_file(keys, impostor[IMPOSTOR])
    public = "\n".join(open(p, encoding="utf-8").read() for p in sorted((ROOT / "privfed" / "fl").glob("*.py")))
    (tmp_path / "public.txt").write_text(public)
    for i, source in enumerate(sorted((ROOT / "privfed" / "threat").glob("*.py"))[:NODES]):
        (tmp_path / "data" / f"node-{i}").mkdir(parents=True)
        (tmp_path / "data" / f"node-{i}" / "notes.txt").write_text(source.read_text(encoding="utf-8")[:3000])
    schema = runner.invoke(cli, ["schema", "--source", "text", "--path", str(tmp_path / "public.txt"), "--out",
                                 str(tmp_path / "schema.json"), "--hidden", "8", "--embedding", "4",
                                 "--max-unknown", "0.2"])
    assert schema.exit_code == 0, schema.output
    port = free_ports(1 + NODES)  # the SuperLink's, then one per node (loopback.sh: base + i)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PRIVFED_FLOWER_DIR": str(tmp_path / "flower"), "PRIVFED_SUPERLINK_PORT": str(port),
           "PRIVFED_NODE_PORT_BASE": str(port + 1), "PYTHONPATH": os.pathsep.join(sys.path)}
    script = ROOT / "examples" / "flower" / "loopback.sh"
    started = subprocess.run(["bash", str(script), "start", str(NODES), "--data-root", str(tmp_path / "data"),
                              "--key-dir", str(keys)], env=env, cwd=tmp_path, capture_output=True, text=True,
                             timeout=120)
    pids = [int(p) for p in (tmp_path / "flower" / "pids").read_text().split()] if started.returncode == 0 else []
    report_path = tmp_path / "synthetic.json"
    try:
        assert started.returncode == 0, started.stderr
        assert "signs with" in started.stdout
        result = runner.invoke(cli, [
            "run", "-c", "runtime.kind=flower", "-c", f"runtime.superlink=127.0.0.1:{port}",
            "-c", "runtime.timeout=600", "-c", f"runtime.roster={keys / 'roster.json'}",
            "-c", "runtime.straggler_grace=20", "-c", "data.source=text",
            "-c", f"data.schema={tmp_path / 'schema.json'}", "-c", 'plan="secagg"',
            "-c", "protection.options.secagg.active=true", "-c", "fl.rounds=1",
            "-c", f"fl.clients_per_round={NODES}", "-c", "train.max_batches=1", "--out", str(tmp_path / "RUN")])
        assert result.exit_code == 0, result.output
        # the same deployment, synthetic vectors through the example app: the exact mean is checkable
        run_config = {"protection": "secagg", "update-source": "synthetic", "params": PARAMS, "seed": SEED,
                      "clients": NODES, "options": json.dumps({"active": True}), "roster": str(keys / "roster.json"),
                      "reply-timeout": 90.0, "straggler-grace": 20.0, "report": str(report_path)}
        overrides = tmp_path / "synthetic.toml"
        overrides.write_text("".join(f"{k} = {toml_value(v)}\n" for k, v in run_config.items()))
        submitted = subprocess.run([str(Path(sys.executable).parent / "flwr"), "run", str(ROOT / "examples" / "flower"),
                                    "privfed-loopback", "--run-config", str(overrides)], capture_output=True, text=True,
                                   env={**env, "FLWR_HOME": str(tmp_path / "flower" / "flwr-home")}, timeout=120)
        assert submitted.returncode == 0, submitted.stdout + submitted.stderr
        deadline = time.monotonic() + 300
        while not report_path.exists() and time.monotonic() < deadline:
            time.sleep(1)
    finally:
        family = pids + _descendants(pids)
        stopped = subprocess.run(["bash", str(script), "stop"], env=env, cwd=tmp_path, capture_output=True,
                                 text=True, timeout=60)
    assert stopped.returncode == 0 and not _running(family)
    (trained,) = [json.loads(line) for line in (tmp_path / "RUN" / "rounds.jsonl").read_text().splitlines()]
    assert trained["protection"] == "secagg" and trained["survivors"] == NODES - 1, trained
    assert "active check 'roster' failed" in trained["dropped"][str(IMPOSTOR)]["reason"]
    assert "consistency-check" in trained["phases"]  # the active protocol ran
    assert np.isfinite(trained["metrics"]["loss"])
    report = json.loads(report_path.read_text())
    assert "error" not in report, report["error"]
    (record,) = report["rounds"]
    assert "consistency-check" in record["phases"] and record["survivor_ids"] == [0, 1, 2]
    assert "active check 'roster' failed" in record["dropped"][str(IMPOSTOR)]["reason"]
    updates = synthetic_updates(NODES, PARAMS, SEED)
    weights = np.array([updates[c].weight for c in range(3)])
    exact = weights @ np.stack([updates[c].vector.astype(np.float64) for c in range(3)]) / weights.sum()
    assert np.max(np.abs(np.asarray(record["mean"]) - exact)) <= record["error_bound"] + 1e-12
    print("\nactive secagg on loopback: trained round", round(trained["round_seconds"], 1), "s; synthetic round",
          round(record["total_seconds"], 1), "s; phases", record["phases"])
