"""The disclosure rule (what a run record may say about individual clients) and the transcript key, as properties."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import pickle
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from privfed.audit import scan_for_secrets
from privfed.runtime.transcript import TranscriptKey, transcript_entry
from privfed.threat import catalogue
from privfed.threat.disclosure import (per_client_figures, redact_round, redact_summary, reveals_client_figures,
                                       withheld_round_figures, withheld_summary_figures, withholds_client_aggregates)

NAMES = [*catalogue.CATALOGUE, "no-such-protection"]


def test_rule_is_the_catalogues_update_hiding() -> None:
    for name, entry in catalogue.CATALOGUE.items():
        assert reveals_client_figures(name) == (entry.update_hiding == "none"), name
        assert withholds_client_aggregates(name) == (entry.update_hiding != "none" and entry.has_dp), name
    assert {n for n in catalogue.CATALOGUE if reveals_client_figures(n)} == {"plaintext", "dp"}
    assert not reveals_client_figures("no-such-protection") and withholds_client_aggregates("no-such-protection")


_leaf = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False), st.booleans(),
                  st.none(), st.text(max_size=8))
_client_entry = st.dictionaries(st.sampled_from(["name", "samples", "train_loss", "steps", "note", "dp_event"]),
                                st.one_of(_leaf, st.dictionaries(st.sampled_from(["z", "q"]), _leaf, max_size=2)),
                                max_size=4)
_client_ids = st.integers(0, 40).map(str)


@st.composite
def round_records(draw: st.DrawFn) -> dict[str, Any]:
    record: dict[str, Any] = {"round": draw(st.integers(1, 50)), "protection": draw(st.sampled_from(NAMES)),
                              "sampled": draw(st.lists(st.integers(0, 40), max_size=5)),
                              "metrics": {"loss": 1.0, **draw(st.dictionaries(st.just("train_loss"), _leaf))},
                              "dropped": draw(st.dictionaries(_client_ids, st.fixed_dictionaries(
                                  {"phase": st.text(max_size=5), "reason": st.text(max_size=5)}), max_size=3))}
    record["clients"] = draw(st.dictionaries(_client_ids, _client_entry, max_size=5))
    record[draw(st.sampled_from(["per_client_steps", "losses_by_client", "upload_bytes", "nodes"]))] = draw(
        st.dictionaries(_client_ids, st.integers(0, 10**6), max_size=4))
    if draw(st.booleans()):
        record["clipped_fraction"] = draw(st.floats(0, 1))
    return record


@settings(max_examples=300, deadline=None)
@given(round_records())
def test_redaction_leaves_nothing_withheld_is_idempotent_and_removes_only_what_it_names(record: dict) -> None:
    original = copy.deepcopy(record)
    withheld = withheld_round_figures(record)
    redacted = redact_round(record)
    assert record == original  # the input is not modified
    assert withheld_round_figures(redacted) == [] and redact_round(redacted) == redacted
    if reveals_client_figures(record["protection"]):
        assert withheld == [] and redacted == record
    else:
        assert per_client_figures(redacted) == []
    # what stays is exactly what was not named: re-adding nothing else, every other leaf is unchanged
    assert _leaves(redacted) == {p: v for p, v in _leaves(record).items() if p not in withheld}


def _leaves(value: Any, path: str = "") -> dict[str, Any]:
    """Scalar leaves by path (an emptied table has none)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_leaves(item, f"{path}.{key}" if path else str(key)))
        return out
    if isinstance(value, list):
        out = {}
        for index, item in enumerate(value):
            out.update(_leaves(item, f"{path}[{index}]"))
        return out
    return {path: value}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(record=round_records(), client=_client_ids, field=st.text("abcdefgh_", min_size=1, max_size=10),
       value=st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False)))
def test_any_number_planted_in_a_client_table_under_a_hiding_protection_is_found(
        tmp_path: Path, record: dict, client: str, field: str, value: float) -> None:
    clean = redact_round(record)
    clean.setdefault("clients", {}).setdefault(client, {})[field] = value
    path = tmp_path / "rounds.jsonl"
    path.write_text(json.dumps(clean) + "\n")
    found = [f for f in scan_for_secrets(tmp_path) if f.kind == "per-client figure the protection hides"]
    if reveals_client_figures(record["protection"]):
        assert found == []
    else:
        assert any(f"clients.{client}.{field}" in f.detail for f in found)


@pytest.mark.parametrize("plan,withheld", [(["plaintext", "dp"], False), (["plaintext", "secagg"], True),
                                           ([], True), (["ckks"], True)])
def test_summary_client_table_withheld_unless_every_round_reveals(plan: list[str], withheld: bool) -> None:
    summary = {"plan": [{"round": i + 1, "protection": p} for i, p in enumerate(plan)],
               "data": {"clients": 2, "train_samples": {"json": 75, "re": 40}, "eval_samples": 36}}
    redacted = redact_summary(summary)
    assert ("train_samples" in redacted["data"]) == (not withheld)
    assert ("train_samples_withheld" in redacted["data"]) == withheld
    assert redacted["data"]["eval_samples"] == 36 and withheld_summary_figures(redacted) == []
    assert redact_summary(redacted) == redacted


def test_transcript_key_is_keyed_per_run_and_never_serialised() -> None:
    payload = b"\x01" * 100
    key, other = TranscriptKey(), TranscriptKey()
    digest = key.digest(payload)
    assert digest == key.digest(payload) and len(digest) == 64
    assert digest != other.digest(payload) and digest != hashlib.sha256(payload).hexdigest()
    assert key.matches(payload, digest) and not key.matches(payload + b"x", digest)
    assert hmac.new(key._key, payload, hashlib.sha256).hexdigest() == digest  # HMAC-SHA256, nothing home-made
    assert key._key.hex() not in repr(key)
    with pytest.raises(TypeError):
        pickle.dumps(key)
    assert copy.deepcopy(key) is key
    with pytest.raises(TypeError):
        transcript_entry("upload", "0", "server", payload, None)  # type: ignore[arg-type]
    entry = transcript_entry("upload", "0", "server", payload, key)
    assert entry.as_dict()["hmac_sha256"] == digest and entry.kind == "<malformed>" and entry.size == 100


def test_rundir_refuses_a_transcript_with_a_plain_hash(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from protocols.errors import ConfigError
    from privfed.experiment.rundir import RunDir

    run = RunDir(tmp_path)
    run.prepare({"seed": 0}, resume=False)
    good = {"phase": "p", "sender": "0", "recipient": "server", "kind": "k", "size": 1, "hmac_sha256": "ab" * 32}
    run.write_transcript(1, [good])
    with pytest.raises(ConfigError, match="keyed digest"):
        run.write_transcript(2, [{**good, "sha256": "cd" * 32}])
    with pytest.raises(ConfigError, match="keyed digest"):
        run.write_transcript(2, [{k: v for k, v in good.items() if k != "hmac_sha256"} | {"sha256": "cd" * 32}])
    run.append_round({"round": 1, "protection": "secagg", "clients": {"0": {"name": "a", "samples": 4}}})
    run.write_summary({"plan": [{"round": 1, "protection": "secagg"}], "data": {"train_samples": {"a": 4}}})
    assert scan_for_secrets(tmp_path) == []
    assert run.read_rounds()[0]["clients"] == {"0": {"name": "a"}}
