"""scan_for_secrets: finds keys, seeds and shares in any encoding, and stays quiet on public run data."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from privfed.audit import scan_for_secrets


def test_clean_directory_has_no_findings(tmp_path: Path) -> None:
    (tmp_path / "summary.json").write_text(json.dumps({"seed": 0, "config": {"seed": 7}, "shares_per_client": 9,
                                                       "hmac_sha256": "ab" * 32, "config_digest": "cd" * 32}))
    (tmp_path / "rounds.jsonl").write_text(json.dumps({"round": 1, "survivors": 3}) + "\n")
    (tmp_path / "blob.bin").write_bytes(os.urandom(4096))
    assert scan_for_secrets(tmp_path, [os.urandom(32) for _ in range(50)]) == []


@pytest.mark.parametrize("encode", [
    lambda s: s,
    lambda s: s.hex().encode(),
    lambda s: base64.b64encode(b"x" + s + b"yz"),
    lambda s: base64.urlsafe_b64encode(b"ab" + s),
    lambda s: json.dumps({"blob": base64.b64encode(os.urandom(30) + s).decode()}).encode(),
])
def test_registered_secret_found_in_any_encoding(tmp_path: Path, encode) -> None:  # type: ignore[no-untyped-def]
    secret = os.urandom(32)
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "file.dat").write_bytes(os.urandom(100) + encode(secret) + os.urandom(100))
    decoys = [os.urandom(32) for _ in range(40)]  # many needles: exercises the indexed search
    findings = scan_for_secrets(tmp_path, [*decoys, secret])
    assert findings and all(f.path == "nested/file.dat" for f in findings)
    assert all("#40" in f.detail for f in findings)
    assert all(secret.hex() not in str(f) for f in findings)


def test_private_integers_pem_and_secret_named_fields(tmp_path: Path) -> None:
    p = (1 << 1023) + 1155
    (tmp_path / "a.txt").write_text(f"p={p}")
    (tmp_path / "b.txt").write_text(format(p, "x"))
    (tmp_path / "key.pem").write_text("-----BEGIN EC PRIVATE KEY-----\nMHc=\n-----END EC PRIVATE KEY-----\n")
    (tmp_path / "state.json").write_text(json.dumps({"client": {"mask_seed": "q" * 43, "seed": 3}}))
    kinds = {(f.path, f.kind) for f in scan_for_secrets(tmp_path, [p])}
    assert ("a.txt", "registered secret") in kinds and ("b.txt", "registered secret") in kinds
    assert ("key.pem", "PEM private key") in kinds
    assert ("state.json", "secret-named JSON field") in kinds


def test_tenseal_private_context_detected(tmp_path: Path) -> None:
    ts = pytest.importorskip("tenseal")
    ctx = ts.context(ts.SCHEME_TYPE.CKKS, 4096, coeff_mod_bit_sizes=[40, 20, 40])
    (tmp_path / "private.bin").write_bytes(ctx.serialize(save_secret_key=True))
    (tmp_path / "embedded.json").write_text(json.dumps({"ctx": base64.b64encode(
        ctx.serialize(save_secret_key=True)).decode()}))
    public = ctx.copy()
    public.make_context_public()
    (tmp_path / "public.bin").write_bytes(public.serialize())
    found = {f.path for f in scan_for_secrets(tmp_path) if f.kind == "TenSEAL secret key"}
    assert found == {"private.bin", "embedded.json"}
