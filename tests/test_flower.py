"""privfed's protocols over a real Flower deployment on 127.0.0.1, checked against the in-process runtime.

Starts one SuperLink and 3 SuperNodes (separate processes, insecure mode, loopback only, free ports; never Flower's
Ray simulation engine), then runs one round each of plaintext (with an injected dropout), ckks, and secagg (with
one node really stopped after its upload: its SuperNode is killed, so its later reply never arrives and the
server's timeout turns it into a dropout). Every Flower result is compared with ``run_round`` on the same synthetic
inputs: identical survivors, means within the protocol's declared error bound of the exact weighted mean, and the
same per-phase payload bytes for surviving clients. Bytes and seconds are printed side by side (``pytest -s``).
Everything is torn down at the end, on failure too. Run with: ``pytest -m flower``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pytest

pytestmark = pytest.mark.flower
pytest.importorskip("flwr")

from protocols import registry  # noqa: E402
from privfed.bench.aggregation import MAX_WEIGHT, VALUE_RANGE, synthetic_updates  # noqa: E402
from privfed.runtime.flower.loopback import LoopbackDeployment  # noqa: E402
from privfed.runtime.local import run_round  # noqa: E402

APP_DIR = Path(__file__).resolve().parents[1] / "examples" / "flower"
CLIENTS, PARAMS, SEED = 3, 64, 11
#: generous per-phase reply timeout (each phase starts a fresh ClientApp process per node on shared CPUs)
REPLY_TIMEOUT = 90.0
#: in the run where a node is killed, its phase closes this long after the first live reply arrived (live nodes
#: answer within a few seconds of each other: they are polled and started at the same time)
STRAGGLER_GRACE = 20.0
RUN_TIMEOUT = 240.0


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory):
    workdir = tmp_path_factory.mktemp("flower")
    node_config: dict[str, Any] = {"allow-fault-injection": True}
    try:  # the CKKS key authority deals keys before the run: secret context to the nodes, public to the server
        from privfed.runtime.flower.keys import deal
    except ImportError:
        pass
    else:
        nodes_dir, server_dir = deal(workdir / "keys", "ckks")
        node_config["key-dir"] = str(nodes_dir)
        KEY_DIRS["server"] = str(server_dir)
    loopback = LoopbackDeployment(workdir, nodes=CLIENTS, node_config=node_config)
    with loopback:
        yield loopback


KEY_DIRS: dict[str, str] = {}


def _run_both(deployment: LoopbackDeployment, protection: str, *, drops: Mapping[int, str] | None = None,
              extra: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], Any, dict]:
    options = {"max_weight": MAX_WEIGHT, "clip": VALUE_RANGE}
    updates = synthetic_updates(CLIENTS, PARAMS, SEED)
    local = run_round(registry.create(protection, options), 1, updates, drops=dict(drops or {}), transcript=False)
    config = {"protection": protection, "params": PARAMS, "seed": SEED, "clients": CLIENTS,
              "reply-timeout": REPLY_TIMEOUT, **(extra or {})}
    try:
        report = deployment.run(APP_DIR, config, timeout=RUN_TIMEOUT)
    except Exception:
        print(deployment.log_tail())
        raise
    assert "error" not in report, report.get("error")
    (flower,) = report["rounds"]
    _print_figures(protection, flower, local.summary())
    return flower, local, updates


def _print_figures(protection: str, flower: Mapping[str, Any], local: Mapping[str, Any]) -> None:
    keys = ("survivors", "upload_bytes_per_client", "download_bytes_per_client", "client_seconds",
            "server_seconds", "total_seconds")
    print(f"\n[{protection}] " + json.dumps({
        "flower": {k: flower[k] for k in keys}, "in-process": {k: local[k] for k in keys},
        "flower_exchange_seconds": flower["exchange_seconds"], "dropped": flower["dropped"]}))


def _check(flower: Mapping[str, Any], local, updates, *, exact_bytes: bool = True) -> None:
    """Same survivors, both means within the declared bound of the exact weighted mean, same phases, and (for
    protocols whose message sizes are fixed) the same payload bytes per client and phase. One known difference:
    a node that really stops at a phase did receive that phase's request over Flower (it is counted as sent),
    while the local runtime's injected dropout delivers nothing — so drop-phase downloads are not compared."""
    assert local.result is not None, local.aborted
    assert flower["aborted"] is None, flower["aborted"]
    survivors = list(local.result.survivors)
    assert flower["survivor_ids"] == survivors
    weights = np.array([updates[c].weight for c in survivors])
    exact = weights @ np.stack([updates[c].vector.astype(np.float64) for c in survivors]) / weights.sum()
    bound = float(local.result.error_bound)
    assert flower["error_bound"] == pytest.approx(bound)
    tolerance = bound + 1e-9 * (1 + float(np.abs(exact).max()))
    assert np.max(np.abs(np.asarray(flower["mean"]) - exact)) <= tolerance
    assert np.max(np.abs(local.result.mean - exact)) <= tolerance
    assert flower["phases"] == local.phases
    drop_phase = {int(c): d["phase"] for c, d in flower["dropped"].items()}
    for cid in survivors:
        if exact_bytes:
            assert flower["upload_bytes"][str(cid)] == dict(local.upload_bytes[cid])
            downloads = {p: n for p, n in flower["download_bytes"][str(cid)].items() if p != drop_phase.get(cid)}
            assert downloads == dict(local.download_bytes[cid])
        else:
            assert set(flower["upload_bytes"][str(cid)]) == set(local.upload_bytes[cid])
        assert flower["client_seconds_by_client"][str(cid)] >= 0.0
    assert flower["server_seconds"] >= 0.0 and flower["total_seconds"] >= flower["server_seconds"]


def test_plaintext_with_injected_dropout(deployment: LoopbackDeployment) -> None:
    drops = {1: "before-upload"}
    flower, local, updates = _run_both(deployment, "plaintext", drops=drops, extra={"drops": "1:before-upload"})
    _check(flower, local, updates)
    assert flower["dropped"] == {"1": {"phase": "upload", "reason": "injected dropout"}}
    assert flower["survivor_ids"] == [0, 2]


def test_ckks_round(deployment: LoopbackDeployment) -> None:
    pytest.importorskip("tenseal")
    pytest.importorskip("protocols.ckks")
    flower, local, updates = _run_both(deployment, "ckks", extra={"key-dir": KEY_DIRS["server"]})
    _check(flower, local, updates, exact_bytes=False)
    assert flower["survivor_ids"] == [0, 1, 2]


def test_secagg_round_with_node_stopped_after_upload(deployment: LoopbackDeployment) -> None:
    """Runs last: it kills the SuperNode of partition 2 once that node has uploaded its masked input."""
    pytest.importorskip("protocols.secagg")
    victim = 2
    flower, local, updates = _run_both(
        deployment, "secagg", drops={victim: "after-upload"},
        extra={"stop-after-upload": victim, "straggler-grace": STRAGGLER_GRACE})
    _check(flower, local, updates)
    dropped = flower["dropped"][str(victim)]
    assert dropped["phase"] == registry.protocol_class("secagg").resolve_drop_phase("after-upload")
    assert dropped["reason"] == "no reply in time"
    assert deployment.processes[f"supernode-{victim}"].poll() is not None
