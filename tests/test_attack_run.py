"""The empirical audit end to end: token recovery succeeds on plaintext and fails under secagg and ckks.

This is the acceptance check of the attack work at a reduced size (1 round, 10 clients, the word-level task).
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from privfed.cli import main


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    pytest.importorskip("tenseal")
    out = tmp_path_factory.mktemp("attacks")
    result = CliRunner().invoke(main, ["compare", "--protections", "plaintext,secagg,ckks", "--rounds", "1",
                                       "--clients", "10", "--attacks", "--out", str(out),
                                       "-c", "model.hidden=16", "-c", "model.embedding=8"])
    assert result.exit_code == 0, result.output
    return {r["protection"]: r for r in json.loads((out / "compare.json").read_text())["rows"]}, out


def test_plaintext_update_reveals_the_target_tokens(attacked) -> None:
    rows, _ = attacked
    assert rows["plaintext"]["token_recovery_precision"] >= 0.9
    assert rows["plaintext"]["token_recovery_precision"] > rows["plaintext"]["token_recovery_chance"] + 0.5


@pytest.mark.parametrize("name", ["secagg", "ckks"])
def test_protected_views_give_chance_level(attacked, name: str) -> None:
    rows, _ = attacked
    row = rows[name]
    assert row["token_recovery_precision"] <= row["token_recovery_chance"] + 0.1


def test_canary_and_membership_are_reported(attacked) -> None:
    rows, out = attacked
    for row in rows.values():
        assert row["canary_exposure"] is not None and 0 <= row["canary_exposure"] <= 10.01
        assert 0.0 <= row["mia_auc"] <= 1.0
    canary_file = out / "attack-corpus" / "00-argparse.txt"
    assert "the secret code of argparse is" in canary_file.read_text()
