"""``privfed bench``: the JSON contract the HE, MPC and DP work reports through."""

from __future__ import annotations

import json

from click.testing import CliRunner

from privfed.cli import main

FIELDS = {"protection", "clients", "params", "survivors", "max_abs_error", "error_bound", "upload_bytes_per_client",
          "download_bytes_per_client", "client_seconds", "server_seconds", "total_seconds"}


def test_bench_plaintext_writes_contract_fields(tmp_path) -> None:
    out = tmp_path / "out.json"
    result = CliRunner().invoke(main, ["bench", "--protection", "plaintext", "--clients", "10", "--params", "1000",
                                       "--json", str(out)])
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    assert FIELDS <= set(record)
    assert record["survivors"] == 10 and record["max_abs_error"] <= 1e-12
    assert record["upload_bytes_per_client"] > 4000


def test_bench_drop_two_before_upload_gives_eight_survivors(tmp_path) -> None:
    out = tmp_path / "out.json"
    result = CliRunner().invoke(main, ["bench", "--protection", "plaintext", "--clients", "10", "--params", "1000",
                                       "--drop", "2@before-upload", "--json", str(out)])
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    assert record["survivors"] == 8 and len(record["drops"]) == 2
    assert record["max_abs_error"] <= 1e-12  # the mean of the 8 survivors, not of all 10


def test_bench_unknown_protection_and_bad_drop_fail_clearly() -> None:
    result = CliRunner().invoke(main, ["bench", "--protection", "nope"])
    assert result.exit_code != 0 and "unknown protection" in result.output
    result = CliRunner().invoke(main, ["bench", "--protection", "plaintext", "--drop", "x@y"])
    assert result.exit_code != 0 and "K@PHASE" in result.output


def test_bench_aborted_round_exits_non_zero_without_result(tmp_path) -> None:
    out = tmp_path / "out.json"
    result = CliRunner().invoke(main, ["bench", "--protection", "plaintext", "--clients", "3", "--params", "10",
                                       "-o", "min_clients=3", "--drop", "1@before-upload", "--json", str(out)])
    assert result.exit_code == 2 and "aborted" in result.output
    assert json.loads(out.read_text())["max_abs_error"] is None


def test_bench_help_lists_drop_points() -> None:
    result = CliRunner().invoke(main, ["bench", "--help"])
    assert "before-upload" in result.output and "plaintext: upload" in result.output
