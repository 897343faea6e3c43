"""``privfed run``: runs a tiny config end to end, resumes, and fails clearly (non-zero) on bad config or plans."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from click.testing import CliRunner

from privfed.cli.run import run

torch.set_num_threads(1)

TINY = ["-c", "data.max_chars_per_client=1200", "-c", "data.seq_len=16", "-c", "model.hidden=8",
        "-c", "model.embedding=4", "-c", "data.modules=['json','re','argparse']", "-c", "fl.clients_per_round=2"]


def test_run_writes_run_directory_and_resumes(tmp_path: Path) -> None:
    config = tmp_path / "exp.toml"
    config.write_text('[fl]\nrounds = 3\n[model]\ncell = "gru"\n')
    out = tmp_path / "run"
    runner = CliRunner()
    first = runner.invoke(run, [str(config), *TINY, "--seed", "4", "--out", str(out), "--stop-after", "2",
                                "--threads", "1"])
    assert first.exit_code == 0, first.output
    assert [json.loads(x)["round"] for x in (out / "rounds.jsonl").read_text().splitlines()] == [1, 2]
    second = runner.invoke(run, [str(config), *TINY, "--seed", "4", "--out", str(out), "--resume",
                                 "--json", str(tmp_path / "s.json")])
    assert second.exit_code == 0, second.output
    assert [json.loads(x)["round"] for x in (out / "rounds.jsonl").read_text().splitlines()] == [1, 2, 3]
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["status"] == "complete" and summary["seed"] == 4
    assert summary["config"]["model"]["cell"] == "gru" and summary["rounds_completed"] == 3
    assert sorted(p.name for p in (out / "transcripts").iterdir()) == ["round_001.json", "round_002.json",
                                                                         "round_003.json"]


def test_errors_exit_non_zero_with_a_message(tmp_path: Path) -> None:
    runner = CliRunner()
    bad = runner.invoke(run, ["-c", "fl.rounds=0"])
    assert bad.exit_code != 0 and "fl.rounds must be >= 1" in bad.output
    refused = runner.invoke(run, [*TINY, "-c", "threat.server=honest-but-curious", "-c", "fl.rounds=1",
                                  "--out", str(tmp_path / "refused")])
    assert refused.exit_code != 0 and "error:" in refused.output and "plaintext" in refused.output
    assert not (tmp_path / "refused" / "rounds.jsonl").exists()
    resume_without_out = runner.invoke(run, ["--resume"])
    assert resume_without_out.exit_code != 0 and "--out" in resume_without_out.output


def test_resume_with_only_out_reuses_the_saved_config_and_refuses_changes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    runner = CliRunner()
    first = runner.invoke(run, [*TINY, "-c", "fl.rounds=3", "-c", "model.cell=gru", "--seed", "3", "--out", str(out),
                                "--stop-after", "1"])
    assert first.exit_code == 0, first.output
    again = runner.invoke(run, ["--out", str(out), "--resume", "--json", str(tmp_path / "s.json")])
    assert again.exit_code == 0, again.output
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["status"] == "complete" and summary["rounds_completed"] == 3 and summary["seed"] == 3
    assert summary["config"]["model"]["cell"] == "gru" and summary["resumed_from_round"] == 1
    changed = runner.invoke(run, ["--out", str(out), "--resume", "-c", "fl.rounds=5"])
    assert changed.exit_code != 0 and "configuration differs" in changed.output


def test_clients_per_round_above_the_client_count_is_a_printed_warning(tmp_path: Path) -> None:
    result = CliRunner().invoke(run, [*TINY, "-c", "fl.rounds=1", "-c", "fl.clients_per_round=50",
                                      "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "warning:" in result.output and "fl.clients_per_round = 50" in result.output
    assert "only 3 clients" in " ".join(result.output.split())
