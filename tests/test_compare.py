"""``privfed compare``: one task under several protections, rows measured from each run, outputs written."""

from __future__ import annotations

import csv
import json
import math

import pytest
from click.testing import CliRunner

from privfed.cli import main

TINY = ["-c", "model.hidden=16", "-c", "model.embedding=8", "-c", "data.max_chars_per_client=1500",
        "-c", "train.max_batches=2"]
FIELDS = {"protection", "client_seconds_per_round", "server_seconds_per_round", "upload_bytes_per_client_per_round",
          "download_bytes_per_client_per_round", "final_metric", "epsilon", "hides_from", "dropouts_tolerated"}


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    result = CliRunner().invoke(main, ["compare", "--protections", "plaintext,secagg,dp", "--rounds", "2",
                                       "--clients", "4", "--out", str(out), *TINY])
    assert result.exit_code == 0, result.output
    return out, json.loads((out / "compare.json").read_text()), result.output


def test_one_row_per_protection_with_the_contract_fields(compared) -> None:
    _, data, output = compared
    rows = {r["protection"]: r for r in data["rows"]}
    assert list(rows) == ["plaintext", "secagg", "dp"]
    for row in rows.values():
        assert FIELDS <= set(row)
        assert row["rounds"] == 2 and row["aborted_rounds"] == 0
    assert "privfed compare" in output


def test_rows_are_measured_from_the_runs(compared) -> None:
    out, data, _ = compared
    rows = {r["protection"]: r for r in data["rows"]}
    for name, row in rows.items():
        records = [json.loads(line) for line in (out / name / "rounds.jsonl").read_text().splitlines()]
        uploads = [r["upload_bytes_per_client"] for r in records]
        assert row["upload_bytes_per_client_per_round"] == pytest.approx(sum(uploads) / len(uploads))
    plain, secagg = rows["plaintext"], rows["secagg"]
    assert plain["upload_bytes_x_plaintext"] == 1.0
    assert 1.0 < secagg["upload_bytes_x_plaintext"] < 1.1  # masked uint32 plus key material
    assert secagg["final_metric"] == pytest.approx(plain["final_metric"], rel=0.01)


def test_epsilon_is_infinite_without_dp_and_finite_with_it(compared) -> None:
    _, data, _ = compared
    rows = {r["protection"]: r for r in data["rows"]}
    assert rows["plaintext"]["epsilon"] == "inf" and rows["secagg"]["epsilon"] == "inf"
    assert isinstance(rows["dp"]["epsilon"], float) and math.isfinite(rows["dp"]["epsilon"])


def test_csv_and_plots_exist(compared) -> None:
    out, _, _ = compared
    with (out / "compare.csv").open() as handle:
        assert [r["protection"] for r in csv.DictReader(handle)] == ["plaintext", "secagg", "dp"]
    for name in ("metric_per_round.png", "cost_per_protection.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_protection_fails_clearly(tmp_path) -> None:
    result = CliRunner().invoke(main, ["compare", "--protections", "plaintext,nope", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "unknown protection" in result.output


def test_existing_comparison_is_never_overwritten(compared) -> None:
    out, _, _ = compared
    result = CliRunner().invoke(main, ["compare", "--protections", "plaintext", "--out", str(out)])
    assert result.exit_code != 0 and "already holds a comparison" in result.output
