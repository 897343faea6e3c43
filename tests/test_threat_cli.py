"""``privfed plan``: the printed plan, its JSON, and refusals with a non-zero exit."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from privfed.cli import main


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["plan", *args])
    return result.exit_code, result.output


def test_refuses_plaintext_under_hbc_server(tmp_path: Path) -> None:
    code, out = run("--rounds", "3", "--threat", "server=honest-but-curious", "--plan", "plaintext",
                    "--json", str(tmp_path / "p.json"))
    assert code != 0
    assert "round 1" in out and "'plaintext'" in out and "would meet it" in out
    assert json.loads((tmp_path / "p.json").read_text())["rounds"] == []


def test_accepts_ckks_then_secagg_and_writes_json(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    code, out = run("--rounds", "6", "--threat", "server=honest-but-curious", "--plan", "1-3:ckks,4-6:secagg",
                    "--clients", "10", "--json", str(path))
    assert code == 0, out
    payload = json.loads(path.read_text())
    assert [r["round"] for r in payload["rounds"]] == [1, 2, 3, 4, 5, 6]
    assert [r["protection"] for r in payload["rounds"]] == ["ckks"] * 3 + ["secagg"] * 3
    assert all(isinstance(r["reason"], str) and r["reason"] for r in payload["rounds"])
    assert payload["threat"]["server"] == "honest-but-curious"


def test_epsilon_target_without_dp_refused() -> None:
    code, out = run("--rounds", "4", "--threat", "server=honest-but-curious,epsilon=8,delta=1e-5",
                    "--plan", "1-4:secagg")
    assert code != 0 and "round 1" in out and "DP noise" in out


def test_protocol_options_reach_the_check() -> None:
    threat = "server=honest-but-curious,collusion=7"
    code, out = run("--rounds", "2", "--threat", threat, "--plan", "secagg", "--clients", "10")
    assert code != 0 and "secagg.threshold=8" in out
    code, out = run("--rounds", "2", "--threat", threat, "--plan", "secagg", "--clients", "10",
                    "-o", "secagg.threshold=8")
    assert code == 0, out


def test_bad_threat_is_a_clean_error() -> None:
    code, out = run("--rounds", "2", "--threat", "server=evil", "--plan", "plaintext")
    assert code == 1 and "server must be one of" in out and "Traceback" not in out
