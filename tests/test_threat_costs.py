"""Cost figures: shipped defaults, the user's cache, re-measurement with the bench harness."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from protocols.errors import ConfigError
from privfed.threat import CATALOGUE
from privfed.threat.costs import CostTable, cache_path, load_costs, measure, save_costs


def test_shipped_defaults_cover_every_protection_and_say_where_they_come_from(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRIVFED_CACHE_DIR", str(tmp_path / "empty"))
    table = load_costs()
    assert set(CATALOGUE) <= set(table.figures)
    assert "measured" in table.source and "ESTIMATED" in table.source  # paillier-per-value: too slow to bench
    assert all("provenance" in record for record in table.figures.values())
    assert table.score("plaintext") < table.score("secagg") < table.score("paillier") < table.score(
        "paillier-per-value")
    assert math.isinf(table.score("no-such-protection"))


def test_measure_save_and_cache_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRIVFED_CACHE_DIR", str(tmp_path))
    measured = measure(["plaintext", "no-such-protection"], clients=2, params=16)
    assert set(measured.figures) == {"plaintext"} and "no-such-protection" in measured.notes[0]
    assert measured.figures["plaintext"]["upload_bytes_per_client"] > 64
    path = save_costs(measured)
    assert path == cache_path() == tmp_path / "protection_costs.json"
    again = load_costs()  # another reference size: the cache alone is used
    assert (again.clients, again.params) == (2, 16) and again.path == str(path)


def test_cached_figures_win_per_protection_at_the_same_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRIVFED_CACHE_DIR", str(tmp_path))
    base = load_costs()
    save_costs(CostTable({"secagg": {"total_seconds": 99.0, "upload_bytes_per_client": 1}}, base.clients,
                         base.params, "mine"))
    merged = load_costs()
    assert merged.figures["secagg"]["total_seconds"] == 99.0 and "ckks" in merged.figures


def test_bad_cost_files_are_clear_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"clients": 5, "params": 10, "protections": {"x": {"total_seconds": -1,
                                                                                "upload_bytes_per_client": 0}}}))
    with pytest.raises(ConfigError, match="x.total_seconds"):
        load_costs(bad)
    bad.write_text("{")
    with pytest.raises(ConfigError, match="cannot read cost figures"):
        load_costs(bad)
