"""privfed audit on a hand-written run directory in the FedAvg loop's format (fast; no training)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from privfed.audit import build_report
from privfed.cli import main
from privfed.runtime.transcript import TranscriptKey

KEY = TranscriptKey()  # the run's key: digests in the transcript are keyed, as the FedAvg loop writes them


def _round(r: int, protection: str, epsilon: Any, **extra: Any) -> dict[str, Any]:
    return {"round": r, "protection": protection, "participants": 4, "survivors": 3, "aborted": None,
            "dropped": {"2": {"phase": "masked-input", "reason": "injected dropout"}},
            "rejected": {"3": {"phase": "masked-input", "reason": "vector of the wrong length"}} if r == 2 else {},
            "upload_bytes_per_client": 1000.0 * r, "download_bytes_per_client": 50.0, "client_seconds": 0.01,
            "server_seconds": 0.02, "error_bound": 1e-6, "learned_by": "server",
            "verifier_max_abs_error": 5e-7, "epsilon_model": epsilon, "epsilon_server": epsilon, "metrics": {"loss": 2.0}, "contributors": 4, **extra}


def _transcript(r: int, key: TranscriptKey = KEY) -> dict[str, Any]:
    messages = []
    for cid in range(4):
        body = f"{r}-{cid}".encode()
        messages.append({"phase": "upload", "sender": "server", "recipient": str(cid), "kind": "upload-request",
                         "size": 61, "hmac_sha256": key.digest(body)})
        messages.append({"phase": "upload", "sender": str(cid), "recipient": "server", "kind": "update",
                         "size": 1000, "hmac_sha256": key.digest(body + b"!")})
    return {"round": r, "messages": messages}


def make_run(tmp_path: Path, threat: dict[str, Any] | None, protections: list[str],
             key: TranscriptKey = KEY) -> Path:
    run = tmp_path / "run"
    (run / "transcripts").mkdir(parents=True)
    config: dict[str, Any] = {"seed": 0, "plan": ",".join(f"{i + 1}:{p}" for i, p in enumerate(protections)),
                              "protection": {"clip": 1.0, "delta": 1e-5, "options": {"secagg": {"threshold": 3}}}}
    if threat is not None:
        config["threat"] = threat
    (run / "config.json").write_text(json.dumps(config))
    eps = [None if p in ("plaintext", "secagg", "ckks") else 1.5 * (i + 1) for i, p in enumerate(protections)]
    (run / "rounds.jsonl").write_text("".join(json.dumps(_round(i + 1, p, e)) + "\n"
                                              for i, (p, e) in enumerate(zip(protections, eps))))
    for i in range(len(protections)):
        (run / "transcripts" / f"round_{i + 1:03d}.json").write_text(json.dumps(_transcript(i + 1, key)))
    (run / "summary.json").write_text(json.dumps({"status": "complete", "config": config, "delta": 1e-5,
                                                  "epsilon_model": eps[-1], "epsilon_server": eps[-1]}))
    return run


def test_report_per_round_fields(tmp_path: Path) -> None:
    run = make_run(tmp_path, {"server": "honest-but-curious"}, ["secagg", "secagg+dp"])
    report = build_report(run)
    assert report.ok and report.threat_declared and report.status == "complete"
    first, second = report.rounds
    assert (first.protection, first.threat_ok, first.upload_bytes_per_client) == ("secagg", True, 1000.0)
    assert second.epsilon == 3.0 and second.error_includes_dp_noise and not first.error_includes_dp_noise
    assert second.rejected["3"]["reason"] == "vector of the wrong length"
    server = next(v for v in first.received if v.party == "server")
    assert (server.messages, server.bytes, dict(server.kinds)) == (4, 4000, {"upload/update": 4})
    assert len(server.digests[0]) == 64
    assert first.requests == {"upload": (4, 4)}  # each client's request differs (bodies "1-0" .. "1-3")
    markdown = report.to_markdown()
    assert "| 2 | secagg+dp | ok | 3/4 (4 in sum) |" in markdown and "inputs in the aggregate: 4" in markdown
    assert "rejected: client 3 at phase masked-input: vector of the wrong length" in markdown
    assert "dropped: client 2 at phase masked-input: injected dropout" in markdown
    assert "no secret keys, seeds, shares, plain message digests or hidden per-client figures found" in markdown
    assert "keyed digest (HMAC-SHA256" in markdown and KEY.digest(b"1-0!")[:16] in markdown
    payload = report.as_dict()
    assert payload["rounds"][1]["epsilon"] == 3.0 and payload["ok"] is True
    json.dumps(payload)


def test_round_that_falls_short_is_flagged_and_cli_exits_nonzero(tmp_path: Path) -> None:
    run = make_run(tmp_path, {"server": "honest-but-curious", "epsilon": 8}, ["plaintext", "secagg+dp"])
    report = build_report(run)
    assert report.rounds[0].threat_ok is False and "in the clear" in report.rounds[0].threat_check
    assert report.rounds[1].threat_ok is True and not report.ok
    out_json, out_md = tmp_path / "a.json", tmp_path / "a.md"
    result = CliRunner().invoke(main, ["audit", str(run), "--json", str(out_json), "--markdown", str(out_md)])
    assert result.exit_code == 1
    assert json.loads(out_json.read_text())["rounds"][0]["threat_ok"] is False
    assert "FALLS SHORT" in out_md.read_text()


def test_secret_in_run_dir_fails_the_audit(tmp_path: Path) -> None:
    run = make_run(tmp_path, None, ["plaintext"])
    (run / "leak.pem").write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    report = build_report(run)
    assert not report.ok and report.secret_findings[0].path == "leak.pem"
    assert "(none declared)" in report.to_markdown()


def test_not_a_run_directory(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["audit", str(tmp_path)])
    assert result.exit_code == 1 and "not a privfed run directory" in result.output


def test_final_epsilon_checked_against_the_target(tmp_path: Path) -> None:
    met = build_report(make_run(tmp_path / "a", {"server": "honest-but-curious", "epsilon": 8},
                                ["secagg+dp", "secagg+dp"]), scan=False)
    assert met.epsilon_ok is True and met.ok and "(target 8: met)" in met.to_markdown()
    missed = build_report(make_run(tmp_path / "b", {"server": "honest-but-curious", "epsilon": 2},
                                   ["secagg+dp", "secagg+dp"]), scan=False)
    assert missed.epsilon_ok is False and not missed.ok and "EXCEEDED" in missed.to_markdown()


def test_against_another_run_flags_only_shared_digests(tmp_path: Path) -> None:
    """Two runs written with their own keys share no digest; a plain digest planted in both is a finding."""
    first = make_run(tmp_path / "a", {"server": "honest-but-curious"}, ["secagg"])
    # the second run has its own key, as every run does
    second = make_run(tmp_path / "b", {"server": "honest-but-curious"}, ["secagg"], key=TranscriptKey())
    for run in (first, second):  # the configuration digest is equal by design and exempt
        (run / "checkpoint.json").write_text(json.dumps({"config_digest": "ab" * 32}))
    assert build_report(first, against=second).ok
    result = CliRunner().invoke(main, ["audit", str(first), "--against", str(second)])
    assert result.exit_code == 0, result.output
    for run in (first, second):
        path = run / "transcripts" / "round_001.json"
        data = json.loads(path.read_text())
        data["messages"][1]["note"] = "0123456789abcdef" * 4  # e.g. a plain hash of a seeded update
        path.write_text(json.dumps(data))
    report = build_report(first, against=second, scan=False)
    assert [(f.path, f.kind) for f in report.secret_findings] == [("transcripts/round_001.json",
                                                                   "digest repeated across runs")]
    result = CliRunner().invoke(main, ["audit", str(first), "--against", str(second)])
    assert result.exit_code == 1 and "digest repeated across runs" in result.output


def test_equal_requests_show_as_one_distinct_and_an_equivocation_as_two(tmp_path: Path) -> None:
    run = make_run(tmp_path, {"server": "honest-but-curious"}, ["secagg"])
    path = run / "transcripts" / "round_001.json"
    data = json.loads(path.read_text())
    for message in data["messages"]:
        if message["sender"] == "server":
            message["hmac_sha256"] = KEY.digest(b"alive=0,1,2,3")
    path.write_text(json.dumps(data))
    assert build_report(run, scan=False).rounds[0].requests == {"upload": (1, 4)}
    data["messages"][0]["hmac_sha256"] = KEY.digest(b"alive=0,1,3")  # one client told a different story
    path.write_text(json.dumps(data))
    report = build_report(run, scan=False)
    assert report.rounds[0].requests == {"upload": (2, 4)}
    assert "upload 2/4" in report.to_markdown()
    assert report.as_dict()["rounds"][0]["requests"] == {"upload": {"distinct": 2, "clients": 4}}
