"""Federated evaluation over Flower through the round's protection (privfed.apps.flower.evaluation / secure_eval).

Fast checks (in-memory Grid, real ClientApp handlers and pickled node state): the carrier follows the one disclosure
rule; the secure sum's totals equal the clear sums (property test, in-process); bounds and bad sums are refused, never
clipped; a round whose protection hides per-client figures sends no node's figures to the server (every reply the
server receives is inspected) and its totals equal the clear computation; a deviating server asking for clear sums in
such a round is refused. The live deployment (real SuperLink and SuperNodes) is the last test, marked ``flower``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("flwr")
pytest.importorskip("torch")

from flwr.app import Context, Message, RecordDict  # noqa: E402

from protocols import registry  # noqa: E402
from protocols.errors import MessageError  # noqa: E402
from privfed.apps.flower import secure_eval, server_app, training  # noqa: E402
from privfed.apps.flower.config import parse_run_config  # noqa: E402
from privfed.apps.flower.evaluation import (EVAL_KEYS, EVAL_PHASE_TYPE, EVAL_SCALE, SECURE_SUM_FALLBACK,  # noqa: E402
                                            decode_totals, encode_sums, evaluation_options,
                                            evaluation_protection, metrics_from_totals)
from privfed.runtime.local import run_round  # noqa: E402
from privfed.threat import catalogue  # noqa: E402
from privfed.threat.disclosure import reveals_client_figures  # noqa: E402
from test_flower_driver import NODE_IDS, MemoryGrid, _task_identity  # noqa: E402,F401 (autouse fixture)
from test_flower_nodedata import deployment  # noqa: E402,F401 (fixture)


# --- the rule and the encoding ----------------------------------------------------------------------------------------
def test_carrier_follows_the_disclosure_rule() -> None:
    for name, entry in catalogue.CATALOGUE.items():
        carrier = evaluation_protection(name)
        assert (carrier is None) == reveals_client_figures(name), name
        if carrier is not None:  # a cryptographic protocol without DP: the round's own, or the fallback
            assert catalogue.CATALOGUE[carrier].update_hiding == catalogue.CRYPTOGRAPHIC
            assert not catalogue.CATALOGUE[carrier].has_dp
            assert carrier == (entry.protocol if entry.update_hiding == catalogue.CRYPTOGRAPHIC else SECURE_SUM_FALLBACK)
    assert evaluation_protection("secagg+dp") == "secagg" and evaluation_protection("dp-sgd") == "secagg"
    assert evaluation_protection("no-such-protection") == SECURE_SUM_FALLBACK


_count = st.integers(min_value=0, max_value=200_000)


@st.composite
def _node_sums(draw: Any) -> dict[str, float]:
    units = draw(_count)
    predictions = draw(st.integers(min_value=0, max_value=units))
    return {"loss_sum": draw(st.floats(min_value=0, max_value=30)) * units, "units": float(units),
            "correct": float(draw(st.integers(min_value=0, max_value=predictions))),
            "predictions": float(predictions), "samples": float(draw(_count))}


@settings(max_examples=12, deadline=None)
@given(st.lists(_node_sums(), min_size=3, max_size=5), st.sampled_from([None, "after-upload"]))
def test_secure_sum_totals_equal_the_clear_sums(nodes: list[dict[str, float]], drop: str | None) -> None:
    protocol = registry.create("secagg", evaluation_options({}, "secagg"))
    updates = {cid: encode_sums(sums) for cid, sums in enumerate(nodes)}
    report = run_round(protocol, 1, updates, drops={0: drop} if drop else {}, transcript=False)
    assert report.result is not None, report.aborted
    totals, bounds = decode_totals(report.result)
    counted = list(report.result.survivors)
    for key in EVAL_KEYS:
        exact = sum(nodes[c][key] for c in counted)
        assert abs(totals[key] - exact) <= bounds[key] + 1e-9 * max(1.0, exact), key
        if key != "loss_sum":
            assert bounds[key] < 1e-3  # counts come back exact to well under one unit


@pytest.mark.parametrize("sums,what", [
    ({"loss_sum": 1.0, "units": EVAL_SCALE * 2, "correct": 0.0, "predictions": 0.0, "samples": 1.0}, "public bounds"),
    ({"loss_sum": 1e12, "units": 10.0, "correct": 0.0, "predictions": 0.0, "samples": 1.0}, "public bounds"),
    ({"loss_sum": math.nan, "units": 10.0, "correct": 0.0, "predictions": 0.0, "samples": 1.0}, "finite"),
    ({"loss_sum": 1.0, "units": -1.0, "correct": 0.0, "predictions": 0.0, "samples": 1.0}, "non-negative"),
    ({"loss_sum": 1.0, "units": 1.0}, "incomplete"),
])
def test_sums_outside_the_bounds_are_refused_not_clipped(sums: dict[str, float], what: str) -> None:
    with pytest.raises(MessageError, match=what):
        encode_sums(sums)


# --- in-memory deployment ---------------------------------------------------------------------------------------------
class RecordingGrid(MemoryGrid):
    """A MemoryGrid that keeps every message the server pushed and every reply it pulled."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pushed: list[Message] = []
        self.pulled: list[Message] = []

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        messages = list(messages)
        self.pushed.extend(messages)
        return super().push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        replies = super().pull_messages(message_ids)
        self.pulled.extend(replies)
        return replies


def _numbers(content: RecordDict) -> list[float]:
    """Every number a reply carries in its config and metric records (payload bytes aside)."""
    out: list[float] = []
    for record in [*content.config_records.values(), *content.metric_records.values()]:
        for value in record.values():
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, (int, float)) and not isinstance(item, bool):
                    out.append(float(item))
    return out


def _clear_sums(deployment: dict[str, Any], vector: np.ndarray, round_id: int) -> list[dict[str, float]]:
    """Each node's sums computed directly on its own data (what the clear path would send)."""
    task = training.task_for(parse_run_config(deployment["run_config"]))
    content = training.model_records(vector, round_id)
    return [training.node_evaluate(content, training.node_data(task, Context(
        run_id=1, node_id=NODE_IDS[p], node_config=deployment["node_config"](p), state=RecordDict(),
        run_config=deployment["run_config"])), task) for p in range(3)]


def test_protected_round_evaluates_through_secagg_without_per_node_figures(
        deployment: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    run_config = {**deployment["run_config"], "protection": "plaintext,secagg"}
    seen: list[tuple[int, np.ndarray, dict[str, Any]]] = []
    real = secure_eval.evaluate_round

    def spy(grid: Any, run: Any, vector: np.ndarray, round_id: int, nodes: Any) -> dict[str, Any]:
        metrics = real(grid, run, vector, round_id, nodes)
        seen.append((round_id, vector.copy(), metrics))
        return metrics

    monkeypatch.setattr(training, "evaluate_round", spy)
    training._node_split.cache_clear()
    grid = RecordingGrid(run_config, node_config=deployment["node_config"])
    server_app.main(grid, Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=run_config))
    rounds = [json.loads(line) for line in (deployment["root"] / "run" / "rounds.jsonl").read_text().splitlines()]
    assert [(r["protection"], r["survivors"]) for r in rounds] == [("plaintext", 3), ("secagg", 3)]
    assert "in the clear" in rounds[0]["evaluation"] and "through secagg" in rounds[1]["evaluation"]

    (round_id, vector, metrics), = [s for s in seen if s[0] == 2]
    assert metrics["evaluation_carrier"] == "secagg" and metrics["evaluated_by"] == 3
    per_node = _clear_sums(deployment, vector, round_id)
    exact = metrics_from_totals({k: sum(n[k] for n in per_node) for k in EVAL_KEYS}, 3)
    assert metrics["samples"] == exact["samples"]
    assert abs(metrics["loss"] - exact["loss"]) <= 1e-6 * max(1.0, abs(exact["loss"]))
    assert abs(metrics.get("accuracy", 0.0) - exact.get("accuracy", 0.0)) <= 1e-6
    assert rounds[1]["metrics"]["loss"] == pytest.approx(metrics["loss"])

    # every reply the server received for round 2's evaluation: protocol payloads and timing, no node's figure
    evaluation = [m for m in grid.pulled if m.metadata.message_type == EVAL_PHASE_TYPE]
    assert len(evaluation) == 3 * len(rounds[1]["phases"])
    figures = {v for node in per_node for k, v in node.items() if v not in (0.0, 1.0)}
    for reply in evaluation:
        assert "privfed-eval" not in reply.content.metric_records
        assert set(reply.content.metric_records) <= {"metrics"}
        assert set(reply.content.metric_records["metrics"]) <= {"client-seconds", "state-seconds"}
        assert not figures & set(_numbers(reply.content))
    # and no clear `evaluate` message was sent after the secagg round (round 2), only before it (rounds 0 and 1)
    clear_rounds = {int(m.content.config_records["privfed-train"]["round"]) for m in grid.pushed
                    if m.metadata.message_type == training.EVAL_MESSAGE_TYPE}
    assert clear_rounds == {0, 1}
    from click.testing import CliRunner

    from privfed.cli import main as cli

    audit = CliRunner().invoke(cli, ["audit", str(deployment["root"] / "run")])
    assert audit.exit_code == 0, audit.output


def test_a_server_asking_for_clear_sums_in_a_protected_round_is_refused(deployment: dict[str, Any]) -> None:
    run_config = {**deployment["run_config"], "protection": "secagg"}
    grid = MemoryGrid(run_config, node_config=deployment["node_config"])
    task = training.task_for(parse_run_config(run_config))
    from privfed.fl.models import flatten

    replies = secure_eval.collect(grid, [training.model_message(flatten(task.template), 1, n,
                                                                training.EVAL_MESSAGE_TYPE) for n in NODE_IDS], 1.0)
    assert len(replies) == 3
    for reply in replies:
        assert "privfed-eval" not in reply.content.metric_records
        assert "never in the clear" in reply.content.config_records["privfed-refused"]["reason"]
    metrics = secure_eval.clear_evaluation(grid, flatten(task.template), 1, dict(enumerate(NODE_IDS)), 1.0)
    assert metrics["evaluated_by"] == 0 and math.isnan(metrics["loss"])


def test_evaluation_phase_without_the_model_is_refused(deployment: dict[str, Any]) -> None:
    """A later phase before the first (no model, no machine) or a replayed first phase is a refusal."""
    from privfed.runtime.flower.envelope import STATUS_REFUSED, Request, pack_request, unpack_reply

    run_config = {**deployment["run_config"], "protection": "secagg"}
    grid = MemoryGrid(run_config, node_config=deployment["node_config"])
    message = Message(pack_request(Request(1, "share-keys", 0, b"\x00" * 8)), dst_node_id=NODE_IDS[0],
                      message_type=EVAL_PHASE_TYPE)
    (reply,) = grid.pull_messages(grid.push_messages([message]))
    answer = unpack_reply(reply.content)
    assert answer.status == STATUS_REFUSED and "without this round's model" in answer.reason


# --- live loopback deployment -----------------------------------------------------------------------------------------
_RECORDING_APP = '''"""privfed's apps, with a ServerApp that appends every reply it pulls to a file (the server's received view)."""
import json

from flwr.serverapp import ServerApp

from privfed.apps.flower import client_app as _client
from privfed.apps.flower import server_app as _server

VIEW = {view!r}
client_app = _client.app
server_app = ServerApp()


class _Recording:
    def __init__(self, grid):
        self._grid = grid

    def __getattr__(self, name):
        return getattr(self._grid, name)

    def pull_messages(self, message_ids):
        replies = self._grid.pull_messages(message_ids)
        with open(VIEW, "a", encoding="utf-8") as out:
            for reply in replies:
                content = None if reply.has_error() else reply.content
                out.write(json.dumps({{
                    "type": reply.metadata.message_type,
                    "metrics": {{k: dict(v) for k, v in content.metric_records.items()}} if content else {{}},
                    "config": {{k: {{kk: vv for kk, vv in v.items() if not isinstance(vv, bytes)}}
                               for k, v in content.config_records.items()}} if content else {{}},
                    "arrays": {{k: sorted(v) for k, v in content.array_records.items()}} if content else {{}}}}) + "\\n")
        return replies


@server_app.main()
def main(grid, context):
    _server.main(_Recording(grid), context)
'''


@pytest.mark.flower
def test_live_secagg_round_evaluation_reaches_the_server_only_as_a_total(deployment: dict[str, Any],
                                                                         tmp_path: Path) -> None:
    """Real SuperLink and SuperNodes (warm ClientApps), node-local folders: round 2 is SecAgg, so its evaluation runs
    as a SecAgg secure sum; every reply the ServerApp process pulled is written down by that process and inspected:
    none of the evaluation replies carries a node's figure, and the recorded totals equal the clear computation."""
    from privfed.apps.flower.submit import write_app
    from privfed.experiment.rundir import decode_vector
    from privfed.runtime.flower.loopback import LoopbackDeployment

    app = write_app(tmp_path / "app")
    view = tmp_path / "server-view.jsonl"
    (app / "privfed_flower_app.py").write_text(_RECORDING_APP.format(view=str(view)), encoding="utf-8")
    run_config = {**deployment["run_config"], "protection": "plaintext,secagg", "reply-timeout": 300.0,
                  "run-dir": str(tmp_path / "run")}
    with LoopbackDeployment(tmp_path / "flower", nodes=3, data_root=deployment["root"]) as live:
        try:
            report = live.run(app, run_config, timeout=900)
        except Exception:
            print(live.log_tail())
            raise
    assert "error" not in report, report.get("error")
    rounds = [json.loads(line) for line in (tmp_path / "run" / "rounds.jsonl").read_text().splitlines()]
    assert [(r["protection"], r["survivors"]) for r in rounds] == [("plaintext", 3), ("secagg", 3)]
    assert rounds[1]["metrics"]["evaluated_by"] == 3 and "through secagg" in rounds[1]["evaluation"]

    checkpoint = json.loads((tmp_path / "run" / "checkpoint.json").read_text())
    assert checkpoint["round"] == 2
    training._node_split.cache_clear()
    per_node = _clear_sums(deployment, decode_vector(checkpoint["vector"]), 2)
    exact = metrics_from_totals({k: sum(n[k] for n in per_node) for k in EVAL_KEYS}, 3)
    assert rounds[1]["metrics"]["samples"] == exact["samples"]
    assert abs(rounds[1]["metrics"]["loss"] - exact["loss"]) <= 1e-5 * max(1.0, abs(exact["loss"]))

    received = [json.loads(line) for line in view.read_text().splitlines()]
    evaluation = [r for r in received if r["type"] == EVAL_PHASE_TYPE]
    assert len(evaluation) == 3 * 4  # three nodes, SecAgg's four phases
    figures = {v for node in per_node for v in node.values() if v not in (0.0, 1.0)}
    for reply in evaluation:
        assert "privfed-eval" not in reply["metrics"] and set(reply["metrics"]) <= {"metrics"}
        assert set(reply["metrics"].get("metrics", {})) <= {"client-seconds", "state-seconds"}
        assert set(reply["config"]) == {"privfed"} and set(reply["arrays"]) <= {"payload"}
        numbers = {float(v) for record in [*reply["metrics"].values(), *reply["config"].values()]
                   for v in record.values() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        assert not figures & numbers
    clear = [r for r in received if r["type"] == training.EVAL_MESSAGE_TYPE]
    assert len(clear) == 2 * 3  # the initial model's and round 1's (plaintext) evaluations only


def test_paillier_round_evaluates_through_paillier_with_the_dealt_keys(deployment: dict[str, Any],
                                                                       tmp_path: Path) -> None:
    """An HE round's evaluation runs through the same family with the same dealt keys (the server holds the modulus
    only); its totals equal the clear computation within the reported bounds."""
    pytest.importorskip("phe")
    from privfed.experiment.rundir import decode_vector
    from privfed.runtime.flower.keys import deal

    options = {"key_bits": 1024, "insecure_test_keys": True}
    nodes_dir, server_dir = deal(tmp_path / "keys", "paillier", options)
    run_config = {**deployment["run_config"], "protection": "paillier", "rounds": 1, "key-dir": str(server_dir),
                  "options": json.dumps(options), "run-dir": str(tmp_path / "run")}

    def node_config(p: int) -> dict[str, Any]:
        return {**deployment["node_config"](p), "key-dir": str(nodes_dir)}

    training._node_split.cache_clear()
    grid = RecordingGrid(run_config, node_config=node_config)
    server_app.main(grid, Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=run_config))
    (record,) = [json.loads(line) for line in (tmp_path / "run" / "rounds.jsonl").read_text().splitlines()]
    assert record["survivors"] == 3 and "through paillier" in record["evaluation"]
    metrics = record["metrics"]
    assert metrics["evaluation_carrier"] == "paillier" and metrics["evaluated_by"] == 3
    vector = decode_vector(json.loads((tmp_path / "run" / "checkpoint.json").read_text())["vector"])
    per_node = _clear_sums(deployment, vector, 1)
    totals = {k: sum(n[k] for n in per_node) for k in EVAL_KEYS}
    exact = metrics_from_totals(totals, 3)
    bounds = metrics["evaluation_error_bounds"]
    assert metrics["samples"] == exact["samples"]
    assert abs(metrics["loss"] * totals["units"] - totals["loss_sum"]) <= bounds["loss_sum"] + bounds["units"] * 10 + 1e-6
    clear = [int(m.content.config_records["privfed-train"]["round"]) for m in grid.pushed
             if m.metadata.message_type == training.EVAL_MESSAGE_TYPE]
    assert clear == []  # not even the initial model's: round 1's protection governs it


def test_active_round_evaluates_through_an_active_secure_sum(deployment: dict[str, Any], tmp_path: Path) -> None:
    """Under a malicious server the evaluation sums are as much a node's own as its update: an active SecAgg round's
    evaluation runs active SecAgg too (signed advertisements, the consistency check), each node signing with the key
    of its own node config. A node whose key is another registrar's drops out of the training round and of the
    evaluation alike, with the check named."""
    from protocols.identity import key_file_name, make_identities, write_key_file, write_roster

    def registrar(directory: Path) -> Path:
        directory.mkdir()
        roster, identities = make_identities([0, 1, 2])
        write_roster(directory / "roster.json", roster)
        for identity in identities.values():
            write_key_file(directory, identity)
        return directory

    keys, impostor = registrar(tmp_path / "keys"), registrar(tmp_path / "impostor")
    active = {"active": True, "threshold": 2, "corruption_fraction": 0.0}

    def node_config(p: int) -> dict[str, Any]:
        own = keys if p != 2 else impostor
        return {**deployment["node_config"](p), "roster": str(keys / "roster.json"),
                "signing-key": str(own / key_file_name(p)), "corruption-fraction": 0.0}

    run_config = {**deployment["run_config"], "protection": "secagg", "rounds": 1,
                  "options": json.dumps({"secagg": active}), "roster": str(keys / "roster.json")}
    training._node_split.cache_clear()
    grid = RecordingGrid(run_config, node_config=node_config)
    server_app.main(grid, Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=run_config))
    (record,) = [json.loads(line) for line in (deployment["root"] / "run" / "rounds.jsonl").read_text().splitlines()]
    assert record["survivors"] == 2 and "active check 'roster' failed" in record["dropped"]["2"]["reason"]
    metrics = record["metrics"]
    assert metrics["evaluation_carrier"] == "secagg" and metrics["evaluated_by"] == 2
    assert metrics["evaluation_phases"] == 5  # the active protocol's phases, the consistency check among them
    evaluation = [m for m in grid.pushed if m.metadata.message_type == EVAL_PHASE_TYPE and m.metadata.dst_node_id
                  in NODE_IDS[:2]]
    assert evaluation and all("privfed-eval" not in m.content.metric_records for m in grid.pulled)


def test_evaluation_of_an_active_dp_round_is_active_too(tmp_path: Path) -> None:
    """secagg+dp in active mode carries its evaluation on plain secagg: the carrier inherits active mode, the roster
    and the counts from the round's own options (a semi-honest carrier would give a key-forging server each node's
    sums), on the server and on a node (which takes the roster from its own node config)."""
    from protocols.identity import key_file_name, make_identities, write_key_file, write_roster

    roster, identities = make_identities([0, 1, 2, 3])
    write_roster(tmp_path / "roster.json", roster)
    for identity in identities.values():
        write_key_file(tmp_path, identity)
    options = {"secagg+dp": {"active": True, "threshold": 3, "noise_multiplier": 1.0, "corruption_fraction": 0.0}}
    run = parse_run_config({"protection": "secagg+dp", "clients": 4, "options": json.dumps(options),
                            "roster": str(tmp_path / "roster.json")})
    server_side = secure_eval.evaluation_protocol(run, "secagg", "", secret=False, round_id=1)
    node_side = secure_eval.evaluation_protocol(run, "secagg", "", secret=True, round_id=1, node_config={
        "roster": str(tmp_path / "roster.json"), "signing-key": str(tmp_path / key_file_name(0))})
    for protocol in (server_side, node_side):
        assert protocol.name == "secagg" and getattr(protocol, "active", False) is True
    plain = parse_run_config({"protection": "secagg+dp", "clients": 4,
                              "options": json.dumps({"secagg+dp": {"noise_multiplier": 1.0}})})
    assert getattr(secure_eval.evaluation_protocol(plain, "secagg", "", secret=False), "active", False) is False


def test_server_held_evaluation_file(deployment: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """A server with public test data of its own (run-config server-eval, [runtime] evaluation_file) evaluates every
    round's global model on all of it, beside the nodes' federated metrics; it reads that file and never a node's
    data (the node loaders fail if the server calls them)."""
    from privfed.apps.flower.submit import FlowerRuntime, _run_config
    from privfed.fl.config import load_config

    root = deployment["root"]
    (root / "public-test.txt").write_text("secure aggregation hides each update from the server. " * 20)
    run_config = {**deployment["run_config"], "server-eval": str(root / "public-test.txt")}
    training._node_split.cache_clear()
    real_node_data = training.node_data
    calls: list[str] = []

    def node_data_only_on_nodes(task: Any, context: Any) -> Any:
        calls.append(str(context.node_config.get("data-path")))
        return real_node_data(task, context)

    monkeypatch.setattr(training, "node_data", node_data_only_on_nodes)
    server_app.main(MemoryGrid(run_config, node_config=deployment["node_config"]),
                    Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=run_config))
    rounds = [json.loads(line) for line in (root / "run" / "rounds.jsonl").read_text().splitlines()]
    summary = json.loads((root / "run" / "summary.json").read_text())
    assert "server_metrics" in summary["initial_metrics"]
    losses = [summary["initial_metrics"]["server_metrics"]["loss"]] + [r["server_metrics"]["loss"] for r in rounds]
    assert all(math.isfinite(x) for x in losses) and all(r["server_metrics"]["samples"] > 0 for r in rounds)
    assert all(r["server_metrics"]["file"].endswith("public-test.txt") for r in rounds)
    assert all("node-" in c for c in calls)  # node data only inside node handlers, never the server's file
    # the figure covers the whole file (no split held back)
    parsed = parse_run_config(run_config)
    task = training.task_for(parsed)
    split = training._node_split(task.schema_json, str(root / "public-test.txt"), parsed.seed)
    assert rounds[-1]["server_metrics"]["samples"] == len(split.train) + len(split.val)
    runtime = FlowerRuntime(kind="flower", evaluation_file=str(root / "public-test.txt"))
    config = load_config(None, ["data.source=text", f"data.schema={root / 'schema.json'}", "fl.clients_per_round=3"])
    assert _run_config(config, runtime, root / "OUT")["server-eval"] == str((root / "public-test.txt").resolve())
    with pytest.raises(Exception, match="does not exist"):
        _run_config(config, FlowerRuntime(kind="flower", evaluation_file=str(root / "missing.txt")), root / "OUT")
