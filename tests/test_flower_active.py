"""Active-adversary modes over Flower (in-memory Grid, real ClientApp handlers and pickled node state): each node
takes its roster and signing key from its own node config, the server its public roster from the run; an active
SecAgg round gives the exact weighted mean; a node with a wrong key, a node outside the roster and a server that
sends its own roster are refused with the check named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.flower
pytest.importorskip("flwr")
pytest.importorskip("protocols.secagg")

from flwr.app import Context, RecordDict  # noqa: E402

from protocols.errors import ConfigError  # noqa: E402
from protocols.identity import key_file_name, make_identities, write_key_file, write_roster  # noqa: E402
from privfed.apps.flower import server_app  # noqa: E402
from privfed.apps.flower.config import build_protocol, parse_run_config  # noqa: E402
from privfed.apps.flower.identity import announced_id, node_options  # noqa: E402
from privfed.bench.aggregation import synthetic_updates  # noqa: E402
from test_flower_driver import (CLIENTS, NODE_IDS, PARAMS, SEED, MemoryGrid, _node_config,  # noqa: E402
                                _run_config, _task_identity)

#: t = 2 of 3 tolerates one dropout; 2t > n + n_C holds with no corrupted client declared (n_C = 0)
ACTIVE = {"active": True, "threshold": 2, "corruption_fraction": 0.0}


def _registrar(directory: Path, ids: range = range(CLIENTS)) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    roster, identities = make_identities(list(ids))
    write_roster(directory / "roster.json", roster)
    for identity in identities.values():
        write_key_file(directory, identity)
    return directory / "roster.json", directory


@pytest.fixture()
def keys(tmp_path: Path) -> tuple[Path, Path]:
    return _registrar(tmp_path / "registrar")


def _nodes(roster: Path, key_dir: Path, override: dict[int, dict[str, Any]] | None = None):
    def config(partition: int) -> dict[str, Any]:
        # the node operator's own assumption (the run's corruption_fraction = 0 alone would not lower it)
        own = {"roster": str(roster), "signing-key": str(key_dir / key_file_name(partition)),
               "corruption-fraction": 0.0}
        return {**_node_config(partition), **own, **(override or {}).get(partition, {})}
    return config


def _exact(ids: list[int]) -> np.ndarray:
    updates = synthetic_updates(CLIENTS, PARAMS, SEED)
    weights = np.array([updates[c].weight for c in ids])
    return weights @ np.stack([updates[c].vector.astype(np.float64) for c in ids]) / weights.sum()


def _run(tmp_path: Path, run_config: dict[str, Any], node_config) -> dict[str, Any]:
    path = tmp_path / "report.json"
    config = {**run_config, "report": str(path)}
    try:
        server_app.main(MemoryGrid(config, node_config=node_config),
                        Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=config))
    except RuntimeError:
        pass  # the report holds the error
    return json.loads(path.read_text())


def test_active_secagg_round_gives_the_exact_mean(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    roster, key_dir = keys
    config = _run_config("secagg", options=json.dumps(ACTIVE), roster=str(roster))
    report = _run(tmp_path, config, _nodes(roster, key_dir))
    assert "error" not in report, report.get("error")
    (record,) = report["rounds"]
    assert record["phases"][3] == "consistency-check" and record["survivor_ids"] == [0, 1, 2]
    assert np.max(np.abs(np.asarray(record["mean"]) - _exact([0, 1, 2]))) <= record["error_bound"] + 1e-12


def test_node_with_a_wrong_key_is_refused_with_the_check_named(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    roster, key_dir = keys
    _, other = _registrar(tmp_path / "impostor")  # another registrar's key for client 2
    config = _run_config("secagg", options=json.dumps(ACTIVE), roster=str(roster))
    report = _run(tmp_path, config, _nodes(roster, key_dir, {2: {"signing-key": str(other / key_file_name(2))}}))
    (record,) = report["rounds"]
    assert record["survivor_ids"] == [0, 1]
    assert "active check 'roster' failed" in record["dropped"]["2"]["reason"]
    assert np.max(np.abs(np.asarray(record["mean"]) - _exact([0, 1]))) <= record["error_bound"] + 1e-12


def test_node_whose_roster_the_server_does_not_share_fails_the_signature_check(tmp_path: Path,
                                                                            keys: tuple[Path, Path]) -> None:
    """Node 2 is consistent with *its* roster, but that roster is not the server's (nor its peers'): its signed
    advertisement fails the server's verification and it counts as rejected, naming the check."""
    roster, key_dir = keys
    own_roster, own_keys = _registrar(tmp_path / "elsewhere")
    config = _run_config("secagg", options=json.dumps(ACTIVE), roster=str(roster))
    report = _run(tmp_path, config, _nodes(roster, key_dir, {2: {"roster": str(own_roster),
                                                                 "signing-key": str(own_keys / key_file_name(2))}}))
    (record,) = report["rounds"]
    assert record["survivor_ids"] == [0, 1]
    assert "advertisement-signature" in record["rejected"]["2"]["reason"]


def test_node_never_takes_the_roster_from_the_server(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    """A server that names its own roster (and key directory) in the protection options: nodes use their own roster,
    so the substituted keys are refused; a node with no roster of its own refuses every active round."""
    roster, key_dir = keys
    fake_roster, fake_keys = _registrar(tmp_path / "server-made")
    options = {**ACTIVE, "roster": str(fake_roster)}
    server_side = build_protocol(parse_run_config(_run_config("secagg", options=json.dumps(options))))
    assert server_side.roster == str(fake_roster)
    node = node_options(options | {"key_dir": str(fake_keys)}, _nodes(roster, key_dir)(0))
    assert node["roster"] == str(roster.resolve()) and node["key_dir"] is None
    with pytest.raises(ConfigError, match="takes neither from the server"):
        node_options(options, _node_config(0))
    report = _run(tmp_path, _run_config("secagg", options=json.dumps(options)), _nodes(roster, key_dir))
    (record,) = report["rounds"]
    assert record["survivor_ids"] == [] and record["aborted"]
    assert all("advertisement-signature" in record["rejected"][str(c)]["reason"] for c in range(CLIENTS))


def test_server_needs_a_roster_and_holds_no_key(keys: tuple[Path, Path]) -> None:
    roster, key_dir = keys
    with pytest.raises(ConfigError, match="needs the public roster on the server"):
        build_protocol(parse_run_config(_run_config("secagg", options=json.dumps(ACTIVE))))
    with pytest.raises(ConfigError, match="holds no signing key"):
        build_protocol(parse_run_config(_run_config("secagg", roster=str(roster),
                                                    options=json.dumps({**ACTIVE, "key_dir": str(key_dir)}))))


def test_enrolment_announces_the_key_id(keys: tuple[Path, Path], tmp_path: Path) -> None:
    """The key's client id is announced; an unusable identity still enrols (under its partition id) so that the
    node's refusal is recorded in the round, as in-process."""
    roster, key_dir = keys
    assert announced_id(_nodes(roster, key_dir)(1), 1) == 1
    assert announced_id(_nodes(roster, key_dir)(1), -1) == 1  # no partition-id: the key names the client
    assert announced_id(_nodes(roster, key_dir, {1: {"signing-key": str(key_dir / key_file_name(2))}})(1), 1) == 1
    _, other = _registrar(tmp_path / "other")
    assert announced_id({"roster": str(roster), "signing-key": str(other / key_file_name(0))}, 0) == 0
    assert announced_id({"roster": str(roster)}, 0) == 0


def test_node_with_a_key_for_another_client_refuses(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    """Node 1 holds client 2's key file (a misconfiguration, or a node trying to speak for another): it enrols as
    partition 1, refuses to act as client 1 naming the roster check, and the round completes without it."""
    roster, key_dir = keys
    config = _run_config("secagg", options=json.dumps(ACTIVE), roster=str(roster))
    report = _run(tmp_path, config, _nodes(roster, key_dir, {1: {"signing-key": str(key_dir / key_file_name(2))}}))
    (record,) = report["rounds"]
    assert record["survivor_ids"] == [0, 2]
    assert "active check 'roster' failed" in record["dropped"]["1"]["reason"]
    assert np.max(np.abs(np.asarray(record["mean"]) - _exact([0, 2]))) <= record["error_bound"] + 1e-12


def test_active_paillier_releasing_to_the_server_is_refused_by_nodes_with_identities(tmp_path: Path,
                                                                                      keys: tuple[Path, Path]) -> None:
    """HE over Flower with nodes that hold identities (operators who distrust the server): a plaintext released to
    the server lets it play two key holders against each other (differencing), so every such node refuses an HE
    round with release=server, naming the check; no result, nothing decrypted."""
    pytest.importorskip("phe")
    from privfed.runtime.flower.keys import deal

    roster, key_dir = keys
    dealt = {"key_bits": 1024, "insecure_test_keys": True}
    nodes_dir, server_dir = deal(tmp_path / "he", "paillier", dealt)
    config = _run_config("paillier", options=json.dumps({**dealt, "active": True}), roster=str(roster),
                         **{"key-dir": str(server_dir)})
    node_config = _nodes(roster, key_dir)
    report = _run(tmp_path, config, lambda p: {**node_config(p), "key-dir": str(nodes_dir)})
    (record,) = report["rounds"]
    assert record["survivor_ids"] == [] and record.get("mean") is None
    assert all("active check 'release' failed" in d["reason"] for d in record["dropped"].values())
    with pytest.raises(Exception, match="release"):
        node_options({"active": True, "release": "key-holders", "decryption": "threshold"},
                     {"roster": str(roster), "signing-key": str(key_dir / key_file_name(0))}, "paillier")
    assert node_options({"active": True, "release": "key-holders"},
                        {"roster": str(roster), "signing-key": str(key_dir / key_file_name(0))},
                        "paillier")["min_clients"] == 3


def test_plan_check_over_flower_accepts_a_malicious_server_only_with_active_mode(tmp_path: Path,
                                                                                keys: tuple[Path, Path]) -> None:
    """The submitting side checks the plan with the protection's options (as the in-process loop does), so
    threat.server=malicious is accepted for secagg with active=true and refused without it."""
    pytest.importorskip("torch")
    from privfed.apps.flower.submit import FlowerRuntime, _run_config as submit_config
    from privfed.fl.config import ModelConfig, load_config
    from privfed.fl.schema import schema_from_text

    roster, _ = keys
    (tmp_path / "public.txt").write_text("a few words of public text for the schema. " * 20)
    schema_from_text(tmp_path / "public.txt", seq_len=8, model=ModelConfig(hidden=4, embedding=4)).save(
        tmp_path / "schema.json")
    base = ["data.source=text", f"data.schema={tmp_path / 'schema.json'}", "plan=secagg", "fl.clients_per_round=3",
            "threat.server=malicious"]
    runtime = FlowerRuntime.from_table({"kind": "flower", "roster": str(roster)})
    run_config = submit_config(load_config(None, [*base, "protection.options.secagg.active=true",
                                                  "protection.options.secagg.threshold=3"]), runtime, tmp_path / "R")
    assert set(run_config["protection"].split(",")) == {"secagg"} and run_config["roster"] == str(roster.resolve())
    with pytest.raises(ConfigError, match="active"):
        submit_config(load_config(None, base), runtime, tmp_path / "R")


def test_loopback_gives_each_node_only_its_own_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                   keys: tuple[Path, Path]) -> None:
    from privfed.runtime.flower.loopback import LoopbackDeployment

    roster, key_dir = keys
    deployment = LoopbackDeployment(tmp_path, nodes=3, node_config={"roster": str(roster)},
                                    node_configs={p: {"signing-key": str(key_dir / key_file_name(p))}
                                                  for p in range(3)})
    argv: dict[str, list[str]] = {}
    monkeypatch.setattr(deployment, "_spawn", lambda key, args: argv.setdefault(key, args))
    deployment.superlink_port = 1
    for partition in range(3):
        deployment.start_node(partition, wait=False)
    for partition in range(3):
        node_config = argv[f"supernode-{partition}"][-1]
        assert f'signing-key="{key_dir / key_file_name(partition)}"' in node_config
        assert all(key_file_name(other) not in node_config for other in range(3) if other != partition)


def test_loopback_script_checks_the_key_dir_before_starting_anything(tmp_path: Path,
                                                                   keys: tuple[Path, Path]) -> None:
    import subprocess

    script = Path(__file__).resolve().parents[1] / "examples" / "flower" / "loopback.sh"
    env = {"PATH": "/usr/bin:/bin", "PRIVFED_FLOWER_DIR": str(tmp_path / "flower")}
    roster, key_dir = keys

    def start(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(script), "start", *args], env=env, capture_output=True, text=True,
                              timeout=30)
    (tmp_path / "empty").mkdir()
    assert "no roster" in start("2", "--key-dir", str(tmp_path / "empty")).stderr
    assert "no " + str(key_dir / "client-3.key.json") in start("4", "--key-dir", str(key_dir)).stderr
    assert start("2", "--roster", str(roster)).returncode == 2
    assert not (tmp_path / "flower" / "pids").exists()  # nothing was started


@pytest.mark.parametrize("name", ["secagg", "secagg+dp", "paillier", "ckks", "ckks+dp", None])
def test_a_node_with_identities_refuses_a_downgrade_by_the_server(keys: tuple[Path, Path], name: str | None) -> None:
    """The run configuration is the server's to write: a node whose operator gave it a roster and a key takes part
    in a protection that has an active mode only with active=true (check 'downgrade'), whatever the run asks."""
    from protocols.identity import ActiveCheckFailed

    roster, key_dir = keys
    node = {"roster": str(roster), "signing-key": str(key_dir / key_file_name(0))}
    for options in ({}, {"active": False}):
        with pytest.raises(ActiveCheckFailed, match="downgrade"):
            node_options(options, node, name)
    assert node_options({"active": False}, node, "plaintext") == {"active": False}  # the protections pin rules it
    assert node_options({}, {}, "secagg") == {}  # a node without identities is not an active-mode node


def test_a_node_never_runs_under_weaker_assumptions_than_its_own(keys: tuple[Path, Path]) -> None:
    """Corrupted-client counts and the HE contribution floor come from the node's config when the run's are lower
    (a server cannot set corruption_fraction = 0 or min_clients = 1 to make its attack fit the checks); a run asking
    for stronger ones keeps them."""
    roster, key_dir = keys
    node = {"roster": str(roster), "signing-key": str(key_dir / key_file_name(0))}
    weak = {"active": True, "corruption_fraction": 0.0, "colluders": 0, "threshold": 0.51}
    pinned = node_options(weak, {**node, "colluders": 2}, "secagg")
    assert pinned["corruption_fraction"] == 0.1 and pinned["colluders"] == 2 and pinned["threshold"] == 0.51
    assert node_options({**weak, "corruption_fraction": 0.3}, node, "secagg")["corruption_fraction"] == 0.3
    he = {"active": True, "release": "key-holders"}
    assert node_options({**he, "min_clients": 1}, {**node, "colluders": 4}, "paillier")["min_clients"] == 6
    assert node_options({**he, "min_clients": 9}, node, "ckks")["min_clients"] == 9
    dp = node_options({"active": True, "colluders": 0}, {**node, "colluders": 1}, "secagg+dp")
    assert dp["colluders"] == 1 and "corruption_fraction" not in dp
    # a node pinned at C = 1 refuses the weak run's cohort of 3 at t = 2 in its own protocol (2t > n + n_C fails)
    protocol = build_protocol(parse_run_config({"protection": "secagg", "clients": 3, "options": json.dumps(weak)}),
                              "secagg", secret=True, node_config={**node, "colluders": 1})
    assert protocol.active is True and protocol.colluders == 1
    for bad in ({"colluders": -1}, {"colluders": 1.5}, {"corruption-fraction": "x"}, {"colluders": True}):
        with pytest.raises(ConfigError, match="node-config"):
            node_options({"active": True}, {**node, **bad}, "secagg")
