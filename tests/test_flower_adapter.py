"""privfed's Flower adapter: an existing quickstart-style Flower app (examples/flower/adapter) switched to
privfed's SecAgg by a ClientApp mod and one server call — run on the in-memory Grid through the real handlers."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.flower
pytest.importorskip("flwr")
pytest.importorskip("protocols.secagg")

from flwr.app import ArrayRecord, Context, Message, RecordDict  # noqa: E402

from privfed.apps.flower import client_app as privfed_client  # noqa: E402
from privfed.apps.flower.adapter import flatten_arrays, unflatten_arrays  # noqa: E402
from test_flower_driver import MemoryGrid, _task_identity  # noqa: E402,F401 (autouse fixture)

APP = Path(__file__).resolve().parents[1] / "examples" / "flower" / "adapter" / "quickstart_app.py"


@pytest.fixture()
def example(monkeypatch: pytest.MonkeyPatch) -> Any:
    spec = importlib.util.spec_from_file_location("quickstart_app", APP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(privfed_client, "app", module.client_app)  # MemoryGrid delivers to this ClientApp
    return module


def test_quickstart_app_learns_through_secagg(example: Any, tmp_path: Path) -> None:
    seen: list[Message] = []

    def spy(node: int, reply: Message) -> Message:
        seen.append(reply)
        return reply

    config = {"num-server-rounds": 4, "result": str(tmp_path / "result.json")}
    grid = MemoryGrid(config, node_config=lambda p: {"partition-id": p}, tamper=spy)
    example.main(grid, Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=config))
    result = json.loads((tmp_path / "result.json").read_text())
    assert [r["survivors"] for r in result["rounds"]] == [[0, 1, 2]] * 4
    assert np.allclose(result["weights"], example.TRUE_WEIGHTS, atol=0.15)
    train_replies = [m for m in seen if m.metadata.message_type.startswith("train")]
    assert train_replies and all(not m.content.array_records for m in train_replies)  # trained arrays stay home


def test_node_refuses_a_protection_it_did_not_accept(example: Any) -> None:
    from privfed.apps.flower.adapter import privfed_round

    grid = MemoryGrid({}, node_config=lambda p: {"partition-id": p})
    arrays = ArrayRecord([np.zeros(3)])
    new, report = privfed_round(grid, arrays, grid.get_node_ids(), 1, "plaintext", {"max_weight": 100})
    assert report is None and np.array_equal(flatten_arrays(new), np.zeros(3))  # nobody trained: unchanged


def test_flatten_round_trip() -> None:
    record = ArrayRecord([np.arange(6, dtype=np.float32).reshape(2, 3), np.ones(2)])
    back = unflatten_arrays(flatten_arrays(record), record)
    assert list(back.keys()) == list(record.keys())
    for a, b in zip(back.to_numpy_ndarrays(), record.to_numpy_ndarrays()):
        assert a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b)


def test_quickstart_app_on_a_loopback_deployment(tmp_path: Path) -> None:
    """The example app, unchanged, on a real SuperLink and 3 SuperNodes (127.0.0.1), torn down afterwards."""
    from privfed.runtime.flower.loopback import LoopbackDeployment, _descendants

    with LoopbackDeployment(tmp_path, nodes=3) as deployment:
        try:
            deployment.submit(APP.parent, {"num-server-rounds": 2, "result": str(tmp_path / "result.json")},
                              timeout=120)
            result = deployment.wait_report(tmp_path / "result.json", timeout=400)
        except Exception:
            print(deployment.log_tail())
            raise
        family = [p.pid for p in deployment.processes.values()]
        family += _descendants(family)
    assert [r["survivors"] for r in result["rounds"]] == [[0, 1, 2]] * 2
    assert np.linalg.norm(np.array(result["weights"]) - np.array([1.0, -2.0, 0.5])) < 1.0
    assert not [pid for pid in family if Path(f"/proc/{pid}").exists()
                and Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]
