"""Local training folded into the first protocol phase over Flower (in-memory Grid, real ClientApp handlers): the
model rides with each node's first request only, no separate ``train`` message is sent, so a plaintext round is one
protocol exchange plus evaluation; a replayed model later in the round is refused (a node trains once a round)."""

from __future__ import annotations

import json
from typing import Any

import pytest

pytestmark = pytest.mark.flower
pytest.importorskip("flwr")
pytest.importorskip("torch")

from flwr.app import Context, Message, RecordDict  # noqa: E402

from privfed.apps.flower import server_app, training  # noqa: E402
from privfed.apps.flower.config import parse_run_config  # noqa: E402
from privfed.runtime.flower.driver import PHASE_MESSAGE_TYPE  # noqa: E402
from privfed.runtime.flower.envelope import STATUS_REFUSED, STATUS_REPLY, Request, pack_request, unpack_reply  # noqa: E402
from test_flower_driver import NODE_IDS, MemoryGrid, _task_identity  # noqa: E402,F401 (autouse fixture)
from test_flower_evaluation import RecordingGrid  # noqa: E402
from test_flower_nodedata import deployment  # noqa: E402,F401 (fixture)


@pytest.mark.parametrize("protection,phases", [("plaintext", 1), ("secagg", 4)])
def test_model_rides_with_the_first_phase_only(deployment: dict[str, Any], protection: str, phases: int) -> None:
    run_config = {**deployment["run_config"], "protection": protection, "rounds": 1}
    run_config.pop("run-dir")
    report = deployment["root"] / f"{protection}.json"
    run_config["report"] = str(report)
    training._node_split.cache_clear()
    grid = RecordingGrid(run_config, node_config=deployment["node_config"])
    server_app.main(grid, Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=run_config))
    (record,) = json.loads(report.read_text())["rounds"]
    assert record["survivors"] == 3 and len(record["phases"]) == phases
    assert not [m for m in grid.pushed if m.metadata.message_type == training.TRAIN_MESSAGE_TYPE]
    protocol = [m for m in grid.pushed if m.metadata.message_type == PHASE_MESSAGE_TYPE]
    assert len(protocol) == 3 * phases
    carrying = [m for m in protocol if "privfed-model" in m.content.array_records]
    assert len(carrying) == 3 and {m.content.config_records["privfed"]["phase"] for m in carrying} == {
        record["phases"][0]}
    assert record["local_training"] == f"folded into phase {record['phases'][0]}"


def test_a_model_replayed_later_in_the_round_is_refused(deployment: dict[str, Any]) -> None:
    from privfed.fl.models import flatten

    run_config = {**deployment["run_config"], "protection": "secagg", "rounds": 1}
    grid = MemoryGrid(run_config, node_config=deployment["node_config"])
    task = training.task_for(parse_run_config(run_config))
    model = training.model_records(flatten(task.template), 1)

    def request(phase: str, payload: bytes) -> Message:
        content = pack_request(Request(1, phase, 0, payload))
        for key, value in model.items():
            content[key] = value
        return Message(content, dst_node_id=NODE_IDS[0], message_type=PHASE_MESSAGE_TYPE)

    from privfed.apps.flower.config import build_protocol

    protocol = build_protocol(parse_run_config(run_config), "secagg",
                              base=training.protocol_base_options(parse_run_config(run_config), "secagg"))
    first = protocol.server(1, (0, 1, 2), task.layout.size).start()  # a real first request from a server machine
    (reply,) = grid.pull_messages(grid.push_messages([request(first.phase, first.messages[0])]))
    assert unpack_reply(reply.content).status == STATUS_REPLY  # trained and answered the first phase
    (again,) = grid.pull_messages(grid.push_messages([request(first.phase, first.messages[0])]))
    answer = unpack_reply(again.content)
    assert answer.status == STATUS_REFUSED and "trains once a round" in answer.reason
