"""Accounting: known answers from tests/vectors/dp_known_answers.json, invariants, target mode, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("dp_accounting")

from click.testing import CliRunner  # noqa: E402

from protocols.dp.accounting import epsilon_for, noise_multiplier_for  # noqa: E402
from protocols.errors import ConfigError  # noqa: E402

VECTORS = json.loads((Path(__file__).parent / "vectors" / "dp_known_answers.json").read_text())
CASES = VECTORS["cases"]
DELTA = VECTORS["delta"]


def _id(case: dict) -> str:
    return f"q{case['sample_rate']}-z{case['noise_multiplier']}-T{case['steps']}"


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_pld_known_answer(case: dict) -> None:
    eps = epsilon_for(case["noise_multiplier"], case["sample_rate"], case["steps"], DELTA, "pld")
    assert abs(eps - case["pld"]) <= VECTORS["pld_abs_tolerance"]
    if "analytic_gaussian" in case:
        assert abs(eps - case["analytic_gaussian"]) <= VECTORS["pld_abs_tolerance"]


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_rdp_known_answer_and_rdp_not_below_pld(case: dict) -> None:
    eps = epsilon_for(case["noise_multiplier"], case["sample_rate"], case["steps"], DELTA, "rdp")
    assert abs(eps - case["rdp"]) <= VECTORS["rdp_rel_tolerance"] * case["rdp"]
    assert eps >= case["pld"]


def test_epsilon_grows_with_steps_and_rate_and_falls_with_noise() -> None:
    base = epsilon_for(1.0, 0.1, 20, DELTA, "rdp")
    assert epsilon_for(1.0, 0.1, 40, DELTA, "rdp") > base
    assert epsilon_for(1.0, 0.2, 20, DELTA, "rdp") > base
    assert epsilon_for(1.5, 0.1, 20, DELTA, "rdp") < base
    pld = epsilon_for(5.0, 1.0, 25, DELTA, "pld")
    assert epsilon_for(5.0, 1.0, 50, DELTA, "pld") > pld
    assert epsilon_for(6.0, 1.0, 25, DELTA, "pld") < pld
    assert epsilon_for(5.0, 0.5, 25, DELTA, "pld") < pld
    assert epsilon_for(5.0, 1.0, 25, DELTA, "rdp") >= pld


def test_target_mode_inverts_epsilon() -> None:
    z = noise_multiplier_for(7.0774, 1.0, 50, DELTA, "rdp")
    assert abs(z - 5.0) < 0.01
    assert epsilon_for(z, 1.0, 50, DELTA, "rdp") <= 7.0774
    z = noise_multiplier_for(6.573, 1.0, 50, DELTA, "pld")
    assert abs(z - 5.0) < 0.01
    assert epsilon_for(z, 1.0, 50, DELTA, "pld") <= 6.573


def test_unreachable_target_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="epsilon .* cannot be met"):
        noise_multiplier_for(1e-9, 1.0, 50, DELTA, "rdp")


@pytest.mark.parametrize("kwargs, name", [
    ({"delta": 0.0}, "delta"), ({"delta": 1.0}, "delta"), ({"delta": float("nan")}, "delta"),
    ({"sample_rate": 0.0}, "sample_rate"), ({"sample_rate": 1.5}, "sample_rate"),
    ({"noise_multiplier": 0.0}, "noise_multiplier"), ({"noise_multiplier": float("inf")}, "noise_multiplier"),
    ({"steps": 0}, "steps"), ({"accountant": "moments"}, "accountant"),
])
def test_bad_accounting_parameters_name_themselves(kwargs: dict, name: str) -> None:
    args = {"noise_multiplier": 1.0, "sample_rate": 0.5, "steps": 3, "delta": 1e-5, "accountant": "rdp", **kwargs}
    with pytest.raises(ConfigError, match=name):
        epsilon_for(**args)


def test_cli_prints_epsilon_and_writes_json(tmp_path: Path) -> None:
    from privfed.cli import main

    out = tmp_path / "eps.json"
    result = CliRunner().invoke(main, ["privacy", "--noise-multiplier", "5", "--sample-rate", "1", "--steps", "50",
                                       "--delta", "1e-5", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "6.5730" in result.output
    data = json.loads(out.read_text())
    assert abs(data["epsilon"] - 6.572970067) < 0.02
    assert data["noise_multiplier"] == 5.0 and data["steps"] == 50 and data["accountant"] == "pld"


def test_cli_target_mode_and_errors(tmp_path: Path) -> None:
    from privfed.cli import main

    out = tmp_path / "z.json"
    runner = CliRunner()
    result = runner.invoke(main, ["privacy", "--epsilon", "7.0774", "--sample-rate", "1", "--steps", "50",
                                  "--accountant", "rdp", "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert abs(data["noise_multiplier"] - 5.0) < 0.01 and data["target_epsilon"] == 7.0774
    bad = runner.invoke(main, ["privacy", "--noise-multiplier", "1", "--sample-rate", "2", "--steps", "5"])
    assert bad.exit_code != 0 and "sample_rate" in bad.output
    both = runner.invoke(main, ["privacy", "--noise-multiplier", "1", "--epsilon", "1", "--sample-rate", "1",
                                "--steps", "5"])
    assert both.exit_code != 0 and "exactly one" in both.output
