"""``python -m privfed.runtime.flower.keys``: the dealer's options (key_bits for Paillier, parameter_set for CKKS) are
validated, honoured, and refused by name when they do not apply."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("tenseal")

from privfed.runtime.flower.keys import deal_options, main  # noqa: E402
from protocols.errors import ConfigError  # noqa: E402


def test_key_bits_reaches_the_dealt_paillier_modulus(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("phe")
    main([str(tmp_path / "k"), "--protection", "paillier", "--options",
          json.dumps({"key_bits": 1024, "insecure_test_keys": True})])
    meta = json.loads((tmp_path / "k" / "server" / "paillier.json").read_text())
    assert meta["key_bits"] == 1024 and int(meta["n"], 16).bit_length() == 1024
    assert "key_bits" in capsys.readouterr().out


@pytest.mark.parametrize("protection,options,named", [
    ("paillier", {"key_bits": 1024}, "shorter than"),  # short keys only with insecure_test_keys
    ("paillier", {"key_bits": 1000, "insecure_test_keys": True}, "multiple of 256"),
    ("paillier", {"key_bits": "2048"}, "integer"),
    ("paillier", {"key_bits": True}, "integer"),
    ("paillier", {"parameter_set": "n4096"}, "parameter_set"),
    ("ckks", {"key_bits": 2048}, "key_bits"),
    ("ckks", {"parameter_set": "n3"}, "unknown CKKS parameter set"),
    ("secagg", {}, "needs no dealt keys"),
])
def test_options_that_do_not_apply_are_refused_by_name(protection: str, options: dict, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        deal_options(protection, options)


def test_cli_reports_a_refusal_without_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "k"), "--protection", "paillier", "--options", '{"key_bits": 1024}'])
    assert exit_info.value.code == 2
    assert "shorter than 2048" in capsys.readouterr().err
    assert not (tmp_path / "k").exists()  # nothing dealt
