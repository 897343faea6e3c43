"""scan_for_secrets: finds keys, seeds and shares in any encoding, and stays quiet on public run data."""

from __future__ import annotations

import base64
import hashlib
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


# --- issue 12, case 8: what fingerprints a client (plain digests, hidden per-client figures, URL-safe blobs) ---

def _kinds(tmp_path: Path, **kwargs) -> set[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return {(f.path, f.kind) for f in scan_for_secrets(tmp_path, **kwargs)}


@pytest.fixture(scope="module")
def tenseal_contexts():  # type: ignore[no-untyped-def]
    """A private context whose URL-safe base64 the *standard* decoder accepts without error (it drops ``-``/``_``
    and the rest happens to be 4-aligned): decoded that way it is garbage, which is how a URL-safe context escaped
    the scan before (about one context in four)."""
    ts = pytest.importorskip("tenseal")
    for _ in range(64):
        ctx = ts.context(ts.SCHEME_TYPE.CKKS, 4096, coeff_mod_bit_sizes=[40, 20, 40])
        private = ctx.serialize(save_secret_key=True)
        text = base64.urlsafe_b64encode(private)
        if (len(text) - text.count(b"-") - text.count(b"_")) % 4 == 0:
            break
    assert base64.b64decode(text) != private  # the trap: no error, wrong bytes
    public = ctx.copy()
    public.make_context_public()
    return private, public.serialize()


@pytest.mark.parametrize("encode", [
    lambda b: base64.urlsafe_b64encode(b).decode(),
    lambda b: base64.urlsafe_b64encode(b).decode().rstrip("="),
    lambda b: base64.b64encode(b).decode(),
    lambda b: b.hex(),
    lambda b: "runs/ctx/" + base64.urlsafe_b64encode(b).decode(),  # glued to characters of the other alphabet
    lambda b: "a_b-" + base64.b64encode(b).decode(),
], ids=["urlsafe", "urlsafe-unpadded", "standard", "hex", "urlsafe-after-slash", "standard-after-dash"])
def test_private_tenseal_context_found_in_every_encoding(tmp_path: Path, tenseal_contexts, encode) -> None:  # type: ignore[no-untyped-def]
    private, public = tenseal_contexts
    (tmp_path / "leak.json").write_text(json.dumps({"context": encode(private)}))
    (tmp_path / "public.json").write_text(json.dumps({"context": encode(public)}))
    assert _kinds(tmp_path) == {("leak.json", "TenSEAL secret key")}


def test_der_private_keys_found_inside_blobs(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, x25519

    der = serialization.Encoding.DER
    pkcs8, none = serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    x = x25519.X25519PrivateKey.generate()
    (tmp_path / "x.json").write_text(json.dumps({"k": base64.urlsafe_b64encode(
        x.private_bytes(der, pkcs8, none)).decode()}))
    e = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "e.txt").write_text(e.private_bytes(der, pkcs8, none).hex())
    (tmp_path / "pub.json").write_text(json.dumps({"k": base64.b64encode(x.public_key().public_bytes(
        der, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()}))
    assert _kinds(tmp_path) == {("x.json", "DER private key"), ("e.txt", "DER private key")}


def test_plain_digest_fields_flagged_keyed_and_config_digests_not(tmp_path: Path) -> None:
    message = {"phase": "upload", "sender": "0", "recipient": "server", "kind": "update", "size": 10}
    (tmp_path / "transcripts").mkdir()
    (tmp_path / "transcripts" / "round_001.json").write_text(json.dumps({"round": 1, "messages": [
        {**message, "sha256": hashlib.sha256(b"update").hexdigest()}]}))
    (tmp_path / "other.json").write_text(json.dumps({"stats": [{"md5": hashlib.md5(b"x").hexdigest()},
                                                               {"payload_hash": base64.b64encode(os.urandom(32))
                                                                .decode()}]}))
    (tmp_path / "ok.json").write_text(json.dumps({"messages": [{**message, "hmac_sha256": "ab" * 32}],
                                                  "config_digest": "cd" * 32, "digest_bits": 256,
                                                  "sha256_note": "not a digest"}))
    found = [f for f in scan_for_secrets(tmp_path) if f.kind == "unkeyed digest"]
    assert sorted((f.path, f.detail.split(":")[0]) for f in found) == [
        ("other.json", "stats[0].md5"), ("other.json", "stats[1].payload_hash"),
        ("transcripts/round_001.json", "messages[0].sha256")]


@pytest.mark.parametrize("algorithm", ["sha256", "sha1", "md5", "sha512", "sha3_256", "blake2b"])
@pytest.mark.parametrize("encode", [bytes.hex, lambda d: base64.b64encode(d).decode(),
                                    lambda d: base64.urlsafe_b64encode(d).decode().rstrip("=")],
                         ids=["hex", "base64", "urlsafe"])
def test_digest_of_registered_client_data_found_under_any_name(tmp_path: Path, algorithm, encode) -> None:  # type: ignore[no-untyped-def]
    updates = [os.urandom(400) for _ in range(30)]
    digest = hashlib.new(algorithm, updates[17]).digest()
    (tmp_path / "rounds.jsonl").write_text(json.dumps({"note": f"id={encode(digest)};"}) + "\n")
    (tmp_path / "clean.json").write_text(json.dumps({"id": hashlib.new(algorithm, os.urandom(400)).hexdigest()}))
    found = scan_for_secrets(tmp_path, client_data=updates)
    assert {(f.path, f.kind) for f in found} == {("rounds.jsonl", "digest of client data")}
    assert all(f"#17" in f.detail and algorithm in f.detail for f in found)


def _record(protection: str, **extra) -> dict:  # type: ignore[no-untyped-def]
    return {"round": 1, "protection": protection, "sampled": [0, 1], "survivor_ids": [0, 1],
            "dropped": {"1": {"phase": "upload", "reason": "injected dropout"}},
            "clients": {"0": {"name": "json"}, "1": {"name": "re"}}, "metrics": {"loss": 2.0}, **extra}


@pytest.mark.parametrize("protection,planted,flagged", [
    ("secagg", {"clients": {"0": {"name": "a", "samples": 40}, "1": {"name": "b"}}}, True),
    ("ckks", {"clients": {"0": {"name": "a", "train_loss": 2.5}}}, True),
    ("local-dp", {"per_client_steps": {"0": 3, "1": 4}}, True),
    ("paillier", {"clients": {"0": {"name": "a", "dp_event": {"sample_rate": 0.1}}}}, True),
    ("no-such-protection", {"clients": {"0": {"name": "a", "samples": 40}}}, True),
    ("secagg+dp", {"metrics": {"loss": 2.0, "train_loss": 1.9}}, True),
    ("ckks+dp", {"clipped_fraction": 0.01}, True),
    ("secagg", {"metrics": {"loss": 2.0, "train_loss": 1.9}, "clipped_fraction": 0.01}, False),
    ("secagg", {"upload_bytes": {"0": {"upload": 100}}, "nodes": {"0": 7}}, False),
    ("plaintext", {"clients": {"0": {"name": "a", "samples": 40, "train_loss": 2.5}}}, False),
    ("dp", {"clients": {"0": {"name": "a", "samples": 40}}}, False),
])
def test_per_client_figures_under_a_hiding_protection_flagged(tmp_path: Path, protection, planted, flagged) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "rounds.jsonl").write_text(json.dumps(_record(protection, **planted)) + "\n")
    # the same record inside a Flower-style report (rounds nested in a list) is found too
    (tmp_path / "flower.json").write_text(json.dumps({"runtime": "flower", "rounds": [_record(protection, **planted)]}))
    kinds = _kinds(tmp_path)
    expected = {("rounds.jsonl", "per-client figure the protection hides"),
                ("flower.json", "per-client figure the protection hides")}
    assert kinds == (expected if flagged else set())


def test_summary_per_client_sample_counts_flagged_under_a_hiding_plan(tmp_path: Path) -> None:
    summary = {"plan": [{"round": 1, "protection": "plaintext"}, {"round": 2, "protection": "secagg"}],
               "data": {"clients": 2, "train_samples": {"json": 75, "re": 40}, "eval_samples": 36}}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    found = [f for f in scan_for_secrets(tmp_path) if f.kind == "per-client figure the protection hides"]
    assert [f.detail for f in found] == ["summary: data.train_samples"]
    summary["plan"] = [{"round": 1, "protection": "plaintext"}, {"round": 2, "protection": "dp"}]
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    assert scan_for_secrets(tmp_path) == []
