"""The privacy-utility frontier (privfed compare --epsilons), labelled subsets, and the stdlib-users corpus."""

from __future__ import annotations

import csv
import json
import math

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.errors import ConfigError
from privfed.bench import frontier
from privfed.bench.compare import run_compare
from privfed.cli import main
from privfed.fl import corpus
from privfed.fl.config import load_config

TINY = ["-c", "model.hidden=8", "-c", "model.embedding=4", "-c", "data.modules=['json','csv']",
        "-c", "data.max_chars_per_client=600", "--clients", "6", "--rounds", "2"]


@given(st.lists(st.floats(min_value=1e-3, max_value=1e3, allow_nan=False), min_size=1, max_size=6))
@settings(max_examples=50, deadline=None)
def test_epsilon_lists_parse_sorted_and_unique(values: list[float]) -> None:
    parsed = frontier.parse_epsilons(",".join(repr(v) for v in values))
    assert parsed == tuple(sorted(set(values)))


@given(st.lists(st.floats(min_value=0.1, max_value=10), max_size=3),
       st.sampled_from(["0", "-1", "nan", "inf", "-inf", "x", "", "1e", "--2"]))
@settings(max_examples=50, deadline=None)
def test_bad_epsilon_lists_are_refused_naming_the_entry(good: list[float], bad: str) -> None:
    with pytest.raises(ConfigError, match="--epsilons"):
        frontier.parse_epsilons(",".join([*map(repr, good), bad]))


@pytest.fixture(scope="module")
def frontier_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("frontier")
    result = CliRunner().invoke(main, ["compare", "--protections", "dp,secagg+dp", "--epsilons", "2,8",
                                       "--out", str(out), *TINY])
    assert result.exit_code == 0, result.output
    return out, json.loads((out / "frontier.json").read_text()), result.output


def test_frontier_rows_spend_at_most_their_target(frontier_run) -> None:
    out, data, output = frontier_run
    rows = data["rows"]
    assert [(r["protection"], r["target_epsilon"]) for r in rows] == [("dp", 2), ("dp", 8), ("secagg+dp", 2),
                                                                       ("secagg+dp", 8)]
    for row in rows:
        assert isinstance(row["epsilon"], float) and 0 < row["epsilon"] <= row["target_epsilon"] * (1 + 1e-9)
        assert row["within_target"] and row["level"] == "user"
        assert row["epsilon"] > 0.5 * row["target_epsilon"]  # calibrated, not just "very noisy"
    by_target = {(r["protection"], r["target_epsilon"]): r["noise_multiplier"] for r in rows}
    assert by_target[("dp", 2)] > by_target[("dp", 8)]  # a smaller epsilon needs more noise
    assert data["ceiling"]["protection"] == "plaintext" and data["ceiling"]["epsilon"] == "inf"
    assert (out / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with (out / "frontier.csv").open() as handle:
        assert [r["protection"] for r in csv.DictReader(handle)] == ["plaintext", "dp", "dp", "secagg+dp",
                                                                     "secagg+dp"]
    assert "frontier" in output


def test_unreachable_target_is_refused_before_running(tmp_path) -> None:
    out = tmp_path / "never"
    result = CliRunner().invoke(main, ["compare", "--protections", "dp", "--epsilons", "0.0001,8", "--out",
                                       str(out), *TINY])
    assert result.exit_code != 0
    assert "dp cannot meet epsilon 0.0001" in result.output and "best reachable" in result.output
    assert not out.exists()  # nothing ran


@pytest.mark.parametrize("bad", ["1,-2", "a,b", "0", ""])
def test_bad_epsilons_are_refused(tmp_path, bad: str) -> None:
    result = CliRunner().invoke(main, ["compare", "--epsilons", bad, "--out", str(tmp_path / "x"), *TINY])
    assert result.exit_code != 0 and "--epsilons" in result.output


def test_a_protection_without_noise_has_no_frontier(tmp_path) -> None:
    result = CliRunner().invoke(main, ["compare", "--protections", "secagg", "--epsilons", "4", "--out",
                                       str(tmp_path / "x"), *TINY])
    assert result.exit_code != 0 and "adds no DP noise" in result.output


def test_compare_calibrates_through_the_one_function_and_labels_subsets(tmp_path, monkeypatch) -> None:
    calls = []

    def fake(protection, epsilon, config, data):
        calls.append((protection, epsilon, config.fl.rounds))
        return 3.0

    monkeypatch.setattr(frontier, "noise_for_target", fake)
    config = load_config(None, ["model.hidden=8", "model.embedding=4", "data.source=stdlib-users",
                                "data.modules=['json']", "fl.rounds=2", "fl.clients_per_round=5",
                                "fl.transcripts=false"])
    rows = run_compare(config, ["plaintext", "dp"], tmp_path / "c", epsilon=4.0,
                       subsets={"dp": {"clients_per_round": 3, "rounds": 1}})
    assert calls == [("dp", 4.0, 1)]  # calibrated over the rounds the subset really runs
    plain, dp = rows
    assert dp["noise_multiplier"] == 3.0 and dp["target_epsilon"] == 4.0 and "target_epsilon" not in plain
    assert plain["measured_on"]["subset"] is False and plain["measured_on"]["clients_per_round"] == 5
    assert dp["measured_on"]["subset"] is True and dp["rounds"] == 1 and "subset" in dp["measured_on"]["note"]
    from privfed.bench.report import comparison_table, write_outputs

    paths = write_outputs(rows, tmp_path / "c", {})
    with paths["csv"].open() as handle:
        subset_column = {r["protection"]: r["subset"] for r in csv.DictReader(handle)}
    assert subset_column == {"plaintext": "no", "dp": "subset: 3 clients x 1 round(s)"}
    assert "dp*: subset" in str(comparison_table(rows).caption)


def test_stdlib_users_are_many_small_and_different() -> None:
    users = corpus.stdlib_users()
    assert len(users) >= 1000 and users == corpus.stdlib_users()
    assert all(len(text) >= corpus.MIN_CHARS for _, text in users)
    assert len({key for key, _ in users}) == len(users)
    sizes = sorted(len(text) for _, text in users)
    assert sizes[len(sizes) // 2] < 2000 < sizes[-1]  # mostly small, some large: naturally unbalanced
    only_json = corpus.stdlib_users(["json"])
    assert only_json and all(key.startswith("json/") for key, _ in only_json)
    with pytest.raises(ConfigError, match="nosuchmodule"):
        corpus.stdlib_users(["nosuchmodule"])
    assert max(len(t) for _, t in corpus.stdlib_users(["json"], max_chars=250)) == 250
