"""``privfed run`` over Flower: the [runtime] table, the generated app, and (marked ``flower``, real processes) the
whole path — loopback.sh with --data-root, privfed schema, privfed run on the deployment, privfed audit, stop."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

pytest.importorskip("flwr")

from click.testing import CliRunner  # noqa: E402

from protocols.errors import ConfigError  # noqa: E402
from privfed.apps.flower.config import _KEYS, parse_run_config  # noqa: E402
from privfed.apps.flower.submit import FlowerRuntime, load_with_runtime, split_runtime, write_app  # noqa: E402
from privfed.cli import main as cli  # noqa: E402
from privfed.runtime.flower.loopback import _descendants, free_ports  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_runtime_table_is_validated() -> None:
    assert FlowerRuntime(kind="flower").plain  # loopback: plain HTTP by default
    with pytest.raises(ConfigError, match="root_certificates"):
        FlowerRuntime(kind="flower", superlink="10.0.0.5:9093")  # another host needs TLS or an explicit choice
    assert FlowerRuntime(kind="flower", superlink="10.0.0.5:9093", root_certificates="ca.pem").plain is False
    for bad in ({"kind": "ray"}, {"superlink": "nohost"}, {"timeout": 0}, {"insecure": "yes"}, {"surprise": 1},
                {"kind": "flower", "insecure": True, "root_certificates": "ca.pem"}):
        with pytest.raises(ConfigError, match="runtime"):
            FlowerRuntime.from_table(bad)


def test_runtime_keys_are_split_from_the_experiment(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text('[runtime]\nkind = "flower"\n\n[fl]\nrounds = 2\n')
    table, runtime, rest = split_runtime(str(tmp_path / "c.toml"), ["runtime.superlink=127.0.0.1:9999",
                                                                    "fl.clients_per_round=2"])
    assert table == {"fl": {"rounds": 2}} and rest == ["fl.clients_per_round=2"]
    assert runtime == {"kind": "flower", "superlink": "127.0.0.1:9999"}
    config, flower = load_with_runtime(str(tmp_path / "c.toml"), ["fl.clients_per_round=2"], 7)
    assert (config.fl.rounds, config.fl.clients_per_round, config.seed, flower.kind) == (2, 2, 7, "flower")


def test_flower_run_needs_a_schema() -> None:
    result = CliRunner().invoke(cli, ["run", "-c", "runtime.kind=flower", "--out", "unused"])
    assert result.exit_code != 0 and "data.schema" in result.output


def test_generated_app_declares_every_run_config_key(tmp_path: Path) -> None:
    """Flower keeps only run-config overrides whose keys the app declares: every key the apps read must be there,
    and the defaults must parse."""
    app = write_app(tmp_path / "app")
    declared = tomllib.loads((app / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    assert set(declared) == set(_KEYS)
    parse_run_config(declared)
    example = tomllib.loads((ROOT / "examples" / "flower" / "pyproject.toml").read_text())
    assert set(example["tool"]["flwr"]["app"]["config"]) == set(_KEYS)


def _running(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.append(pid)
    return alive


@pytest.mark.flower
def test_privfed_run_on_a_loopback_deployment(tmp_path: Path) -> None:
    """Three node folders, a schema from public text, loopback.sh --data-root, privfed run with a plaintext then a
    secagg round: every node survives, the loss falls, privfed audit reads the run, and stop leaves no process."""
    public = "\n".join(open(p, encoding="utf-8").read() for p in sorted((ROOT / "privfed" / "fl").glob("*.py")))
    (tmp_path / "public.txt").write_text(public)
    texts = sorted((ROOT / "privfed" / "threat").glob("*.py"))[:3]
    for i, source in enumerate(texts):
        (tmp_path / "data" / f"node-{i}").mkdir(parents=True)
        (tmp_path / "data" / f"node-{i}" / "notes.txt").write_text(source.read_text(encoding="utf-8")[:4000])
    port = free_ports(1 + len(texts))  # the SuperLink's, then one per node (loopback.sh: base + i)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PRIVFED_FLOWER_DIR": str(tmp_path / "flower"), "PRIVFED_SUPERLINK_PORT": str(port),
           "PRIVFED_NODE_PORT_BASE": str(port + 1), "PYTHONPATH": os.pathsep.join(sys.path)}
    script = ROOT / "examples" / "flower" / "loopback.sh"
    runner = CliRunner()
    made = runner.invoke(cli, ["schema", "--source", "text", "--path", str(tmp_path / "public.txt"), "--out",
                               str(tmp_path / "schema.json"), "--hidden", "16", "--embedding", "8", "--max-unknown",
                               "0.2"])
    assert made.exit_code == 0, made.output
    started = subprocess.run(["bash", str(script), "start", "3", "--data-root", str(tmp_path / "data")], env=env,
                             cwd=tmp_path, capture_output=True, text=True, timeout=120)
    pids = [int(p) for p in (tmp_path / "flower" / "pids").read_text().split()] if started.returncode == 0 else []
    try:
        assert started.returncode == 0, started.stderr
        result = runner.invoke(cli, [
            "run", "-c", "runtime.kind=flower", "-c", f"runtime.superlink=127.0.0.1:{env['PRIVFED_SUPERLINK_PORT']}",
            "-c", "runtime.timeout=600", "-c", "data.source=text", "-c", f"data.schema={tmp_path / 'schema.json'}",
            "-c", 'plan="1:plaintext,2:secagg"', "-c", "fl.rounds=2", "-c", "fl.clients_per_round=3",
            "-c", "train.max_batches=3", "--out", str(tmp_path / "RUN")])
        assert result.exit_code == 0, result.output
    finally:
        family = pids + _descendants(pids)  # SuperExec, ServerApp and ClientApp processes run in sessions of their own
        stopped = subprocess.run(["bash", str(script), "stop"], env=env, cwd=tmp_path, capture_output=True,
                                 text=True, timeout=60)
    assert stopped.returncode == 0 and not _running(family)
    rounds = [json.loads(line) for line in (tmp_path / "RUN" / "rounds.jsonl").read_text().splitlines()]
    assert [(r["protection"], r["survivors"]) for r in rounds] == [("plaintext", 3), ("secagg", 3)]
    summary = json.loads((tmp_path / "RUN" / "summary.json").read_text())
    assert summary["final_metrics"]["loss"] < summary["initial_metrics"]["loss"]
    print("\nround seconds:", {r["protection"]: round(r["round_seconds"], 1) for r in rounds},
          "ratio", round(rounds[1]["round_seconds"] / rounds[0]["round_seconds"], 2))
    audit = runner.invoke(cli, ["audit", str(tmp_path / "RUN")])
    assert audit.exit_code == 0, audit.output


def test_malformed_schema_is_refused_before_anything_runs(tmp_path: Path) -> None:
    (tmp_path / "schema.json").write_text('{"format": "privfed-schema/1", "source": "text", "seq_len": 1}')
    result = CliRunner().invoke(cli, ["run", "-c", "runtime.kind=flower", "-c", "data.source=text",
                                      "-c", f"data.schema={tmp_path / 'schema.json'}", "--out", str(tmp_path / "RUN")])
    assert result.exit_code != 0 and "schema seq_len" in result.output
    assert not (tmp_path / "RUN").exists()


def test_runtime_flower_is_transport_only() -> None:
    """privfed/runtime/flower moves bytes: it imports no application, training, data, threat or experiment code."""
    import re

    pattern = re.compile(r"^\s*(from|import)\s+privfed\.(apps|fl|threat|experiment|bench|audit|cli)\b", re.M)
    offenders = [p.name for p in (ROOT / "privfed" / "runtime" / "flower").glob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


def test_a_local_runtime_table_runs_in_process() -> None:
    from privfed.fl.config import load_config

    config = load_config(None, ["runtime.kind=local", "fl.rounds=2"])
    assert config.fl.rounds == 2 and "runtime" not in config.to_table()


def test_a_misspelt_runtime_is_refused() -> None:
    result = CliRunner().invoke(cli, ["run", "-c", "runtime.kind=flwr", "-c", "fl.rounds=1"])
    assert result.exit_code != 0 and "runtime.kind" in result.output
