"""Run directories safe to share (issue 12, case 8): two runs of one configuration and seed share no digest but the
configuration's; per-client figures a protection hides stay out; the audit still says what each party received.

Training is seeded, so before this fix the transcripts' plain SHA-256 of every message repeated across runs (a
reader with a candidate data set could rerun and confirm membership) and rounds.jsonl held every client's sample
count and loss under SecAgg and CKKS. The runs here are tiny (4 clients, 2 batches, a 12-unit LSTM).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from privfed.audit import build_report, scan_for_secrets
from privfed.audit.secret_scan import digest_tokens, repeated_digests
from privfed.experiment.fedavg import FedAvgResult, run_fedavg
from privfed.fl.config import load_config
from privfed.threat.disclosure import reveals_client_figures

torch.set_num_threads(1)

TINY = ["data.max_chars_per_client=1500", "data.seq_len=16", "model.hidden=12", "model.embedding=6",
        "train.batch_size=16", "data.modules=['json', 're', 'argparse', 'difflib']", "fl.clients_per_round=4",
        "train.max_batches=2", "protection.options.dp.noise_multiplier=1.0",
        "protection.options.secagg+dp.noise_multiplier=1.0", "protection.options.ckks+dp.noise_multiplier=1.0"]
CLIENTS = 4


def _plan() -> list[str]:
    names = ["plaintext", "secagg", "dp", "secagg+dp", "local-dp"]
    try:
        import tenseal  # noqa: F401
        names += ["ckks", "ckks+dp"]
    except ImportError:
        pass
    return names


PLAN = _plan()


def _run(out: Path) -> FedAvgResult:
    spec = ",".join(f"{i + 1}:{name}" for i, name in enumerate(PLAN))
    config = load_config(overrides=[*TINY, f"plan='{spec}'", f"fl.rounds={len(PLAN)}"])
    return run_fedavg(config, out, record_server_view=True, keep_reports=True)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, FedAvgResult]:
    root = tmp_path_factory.mktemp("sharing")
    first = _run(root / "a")
    _run(root / "b")
    return root / "a", root / "b", first


def test_two_runs_of_one_config_and_seed_share_no_digest_but_the_config_digest(two_runs: Any) -> None:
    a, b, _ = two_runs
    assert [r["protection"] for r in map(json.loads, (a / "rounds.jsonl").read_text().splitlines())] == PLAN
    assert repeated_digests(a, b) == []
    # the exemption is needed and is the only one: the configuration digest is equal in both runs
    config_a = json.loads((a / "checkpoint.json").read_text())["config_digest"]
    assert config_a == json.loads((b / "checkpoint.json").read_text())["config_digest"]
    assert config_a not in digest_tokens(a)  # left out of the comparison, and nothing else is
    # every digest-shaped string the transcripts hold is a keyed digest (so the comparison above saw them)
    tokens = digest_tokens(a)
    keyed = {m["hmac_sha256"] for f in sorted((a / "transcripts").glob("round_*.json"))
             for m in json.loads(f.read_text())["messages"]}
    assert keyed and keyed <= set(tokens)


def test_comparison_detects_plain_digests_planted_in_both_runs(two_runs: Any, tmp_path: Path) -> None:
    """Control: a plain hash of a seeded message is what repeats; the comparison finds it."""
    a, b, result = two_runs
    payload = result.reports[0].server_view[0][2]  # round 1 (plaintext): a client's clipped update
    for source in (a, b):
        copy = tmp_path / source.name
        shutil.copytree(source, copy)
        path = copy / "transcripts" / "round_001.json"
        data = json.loads(path.read_text())
        data["messages"][0]["note"] = hashlib.sha256(payload).hexdigest()
        path.write_text(json.dumps(data))
    found = repeated_digests(tmp_path / "a", tmp_path / "b")
    assert len(found) == 1 and found[0].path == "transcripts/round_001.json"


def test_no_digest_of_any_message_and_no_secret_in_the_run_directory(two_runs: Any, tmp_path: Path) -> None:
    a, _, result = two_runs
    payloads = [payload for report in result.reports for _, _, payload in report.server_view]
    assert len(payloads) >= CLIENTS * len(PLAN)
    assert scan_for_secrets(a, client_data=payloads) == []
    # control: a plain digest of one of those payloads, under an innocent name, is found
    planted = tmp_path / "run"
    shutil.copytree(a, planted)
    (planted / "notes.json").write_text(json.dumps({"id": hashlib.sha1(payloads[-1]).hexdigest()}))
    found = scan_for_secrets(planted, client_data=payloads)
    assert {(f.path, f.kind) for f in found} == {("notes.json", "digest of client data")}


def test_per_client_figures_only_where_the_protection_shows_updates(two_runs: Any) -> None:
    a, _, result = two_runs
    written = [json.loads(line) for line in (a / "rounds.jsonl").read_text().splitlines()]
    for record, in_memory in zip(written, result.rounds):
        assert record == in_memory  # what --json and on_round see is what the directory holds
        clients = record["clients"]
        assert set(clients) == {str(c) for c in record["sampled"]}
        if reveals_client_figures(record["protection"]):
            assert all(isinstance(c["samples"], int) and "train_loss" in c for c in clients.values())
        else:
            assert all(set(c) == {"name"} for c in clients.values()), record["protection"]
        has_dp = record["protection"] in ("secagg+dp", "ckks+dp", "local-dp")
        assert ("train_loss" in record["metrics"]) == (not has_dp), record["protection"]
        assert ("clipped_fraction" in record) == (not has_dp), record["protection"]
        assert "loss" in record["metrics"]  # evaluation on the global split is always reported
    summary = json.loads((a / "summary.json").read_text())
    assert "train_samples" not in summary["data"] and "train_samples_withheld" in summary["data"]
    assert summary == result.summary


def test_audit_still_reports_what_each_party_received(two_runs: Any) -> None:
    a, _, result = two_runs
    report = build_report(a)
    assert report.secret_findings == ()
    assert [r.protection for r in report.rounds] == PLAN
    for audited, runtime in zip(report.rounds, result.reports):
        parties = {v.party: v for v in audited.received}
        assert set(parties) == {"server", *(str(c) for c in range(CLIENTS))}
        server = parties["server"]
        uploads = [payload for _, _, payload in runtime.server_view]
        assert server.messages == len(uploads) and server.bytes == sum(map(len, uploads))
        assert all(len(d) == 64 for v in audited.received for d in v.digests)
        # within the run the digests identify messages: the server's list is the runtime's transcript, in order
        assert list(server.digests) == [e.hmac_sha256 for e in runtime.transcript if e.recipient == "server"]
        assert not {hashlib.sha256(p).hexdigest() for p in uploads} & set(server.digests)
    # keyed digests still compare within the run: a broadcast is one distinct request; per-client requests differ
    plaintext, secagg = report.rounds[0], report.rounds[1]
    assert plaintext.requests["upload"] == (1, CLIENTS) and secagg.requests["unmask"] == (1, CLIENTS)
    assert "unmask 1/4 (identical)" in report.to_markdown()
    payload = report.as_dict()
    assert all("hmac_sha256" in view and "sha256" not in view
               for r in payload["rounds"] for view in r["received"])
    assert "keyed digest (HMAC-SHA256" in report.to_markdown()


def test_dp_sgd_round_keeps_no_per_client_figure(tmp_path: Path) -> None:
    """DP-SGD clients report steps, sample rates and their own DP events: none of it is written per client."""
    pytest.importorskip("opacus")
    config = load_config(overrides=[*TINY, "plan='1:dp-sgd'", "fl.rounds=1"])
    result = run_fedavg(config, tmp_path / "run")
    (line,) = (tmp_path / "run" / "rounds.jsonl").read_text().splitlines()
    record = json.loads(line)
    assert record == result.rounds[0] and record["dp_events"]["model"]["record"]["placement"] == "dp-sgd"  # the round's event stays
    for client in record["clients"].values():
        assert set(client) <= {"name", "dp_event"}
        assert not [v for v in client.get("dp_event", {}).values() if isinstance(v, (int, float))]
    assert "train_loss" not in record["metrics"] and "clipped_fraction" not in record
    assert scan_for_secrets(tmp_path / "run") == []
