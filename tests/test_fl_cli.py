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
