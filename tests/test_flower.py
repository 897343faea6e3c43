"""privfed's protocols over a real Flower deployment on 127.0.0.1, checked against the in-process runtime.

Starts one SuperLink and 3 SuperNodes (separate processes, insecure mode, loopback only, free ports; never Flower's
Ray simulation engine), then — in one ``flwr run`` with a per-round protection plan, to keep the test short — runs
one round each of plaintext (with an injected dropout), ckks (keys dealt to files first), and secagg (with one node
really stopped after its upload: its SuperNode is killed, so its later reply never arrives and the server's
timeout turns it into a dropout). Every Flower result is compared with ``run_round`` on the same synthetic
inputs: identical survivors, means within the protocol's declared error bound of the exact weighted mean, and the
same per-phase payload bytes for surviving clients. Bytes and seconds are printed side by side (``pytest -s``).
Everything is torn down at the end, on failure too. Run with: ``pytest -m flower``.
"""

from __future__ import annotations

import importlib
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
#: a phase closes this long after its first reply (so the killed node costs this, not REPLY_TIMEOUT); live nodes
#: answer within seconds of each other: they are polled and their ClientApp processes started at the same time
STRAGGLER_GRACE = 30.0
RUN_TIMEOUT = 420.0


def _available(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


#: one round per protection, in this order, in one Flower run (a per-round protection plan); ckks and secagg join
#: when their modules import. The secagg round is last: it kills the SuperNode of partition 2 after its upload.
PLAN = ["plaintext"] + [p for p, m in (("ckks", "protocols.ckks"), ("secagg", "protocols.secagg")) if _available(m)]
VICTIM = 2
PLAINTEXT_DROPS = {1: "before-upload"}


def _round_of(protection: str) -> int:
    if protection not in PLAN:
        pytest.skip(f"{protection} is not available in this environment")
    return PLAN.index(protection) + 1


@pytest.fixture(scope="module")
def flower_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Start the deployment, run the plan in one ``flwr run``, tear everything down, return the ServerApp's report."""
    workdir = tmp_path_factory.mktemp("flower")
    node_config: dict[str, Any] = {"allow-fault-injection": True}
    run_config: dict[str, Any] = {
        "protection": ",".join(PLAN), "rounds": len(PLAN), "params": PARAMS, "seed": SEED, "clients": CLIENTS,
        "reply-timeout": REPLY_TIMEOUT, "straggler-grace": STRAGGLER_GRACE,
        "drops": ",".join(f"{_round_of('plaintext')}/{c}:{p}" for c, p in PLAINTEXT_DROPS.items())}
    if "ckks" in PLAN:  # the key authority deals keys first: the secret context to nodes, the public one to the server
        from privfed.runtime.flower.keys import deal

        nodes_dir, server_dir = deal(workdir / "keys", "ckks")
        node_config["key-dir"], run_config["key-dir"] = str(nodes_dir), str(server_dir)
    if "secagg" in PLAN:
        run_config.update({"stop-after-upload": VICTIM, "stop-round": _round_of("secagg")})
    with LoopbackDeployment(workdir, nodes=CLIENTS, node_config=node_config) as deployment:
        try:
            report = deployment.run(APP_DIR, run_config, timeout=RUN_TIMEOUT)
        except Exception:
            print(deployment.log_tail())
            raise
        report["victim_stopped"] = deployment.processes[f"supernode-{VICTIM}"].poll() is not None
    assert "error" not in report, report.get("error")
    assert len(report["rounds"]) == len(PLAN)
    return report


def _compare(report: Mapping[str, Any], protection: str, drops: Mapping[int, str] | None = None
             ) -> tuple[dict[str, Any], Any, dict]:
    round_id = _round_of(protection)
    flower = report["rounds"][round_id - 1]
    assert flower["protection"] == protection and flower["round"] == round_id
    updates = synthetic_updates(CLIENTS, PARAMS, SEED)
    protocol = registry.create(protection, {"max_weight": MAX_WEIGHT, "clip": VALUE_RANGE})
    local = run_round(protocol, round_id, updates, drops=dict(drops or {}), transcript=False)
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
    assert flower["completed_ids"] == list(local.completed)
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


def test_plaintext_with_injected_dropout(flower_report: dict[str, Any]) -> None:
    flower, local, updates = _compare(flower_report, "plaintext", PLAINTEXT_DROPS)
    _check(flower, local, updates)
    assert flower["dropped"] == {"1": {"phase": "upload", "reason": "injected dropout"}}
    assert flower["survivor_ids"] == [0, 2]


def test_ckks_round(flower_report: dict[str, Any]) -> None:
    flower, local, updates = _compare(flower_report, "ckks")
    _check(flower, local, updates, exact_bytes=False)  # compressed ciphertexts vary by a few bytes
    assert flower["survivor_ids"] == [0, 1, 2]


def test_secagg_round_with_node_stopped_after_upload(flower_report: dict[str, Any]) -> None:
    """The node of partition 2 uploads its masked input, then its SuperNode is killed: its unmask reply never
    comes, the server reconstructs its masks from the others' shares, and its input stays in the sum."""
    flower, local, updates = _compare(flower_report, "secagg", {VICTIM: "after-upload"})
    _check(flower, local, updates)
    dropped = flower["dropped"][str(VICTIM)]
    assert dropped == {"phase": registry.protocol_class("secagg").resolve_drop_phase("after-upload"),
                       "reason": "no reply in time"}
    assert flower_report["victim_stopped"]
    assert VICTIM not in flower["completed_ids"]
