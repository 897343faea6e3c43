"""CKKS with TenSEAL: add-only correctness, roles (the server's context is public), dropouts, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

ts = pytest.importorskip("tenseal")  # the 'all' / 'he' extra; skipped when not installed

from protocols.base import ClientUpdate  # noqa: E402
from protocols.ckks import PARAMETER_SETS, SECURITY_TABLE_128, CKKSAuthority, CKKSProtocol, public_context  # noqa: E402
from protocols.errors import ConfigError, DecryptionError, HeadroomError, MessageError  # noqa: E402
from protocols.he_round import RESULTS_SLOT  # noqa: E402
from protocols.wire import FieldSpec, Message, MessageSpec, decode, encode, peek_header  # noqa: E402
from privfed.runtime.local import run_round  # noqa: E402

from contract.harness import exact_mean as exact, updates_for  # noqa: E402

MAX_WEIGHT = 10.0
SLOTS = 2048


@pytest.fixture(scope="session")
def authority() -> CKKSAuthority:
    return CKKSAuthority(PARAMETER_SETS["n4096"])


def protocol(authority: CKKSAuthority, **options) -> CKKSProtocol:
    return CKKSProtocol(authority=authority, max_weight=MAX_WEIGHT, **options)


def updates(n: int, dim: int, seed: int = 0) -> dict[int, ClientUpdate]:
    """Values uniform in [-1, 1], weights 1..10 (the contract suite's test data)."""
    return updates_for(n, dim, seed, scale=1.0)


def check(report, ups) -> float:
    assert report.aborted is None, report.aborted
    result = report.result
    error = float(np.max(np.abs(result.mean - exact(ups, result.survivors))))
    assert error <= result.error_bound
    assert error <= 1e-6
    return error


def test_defaults_are_cheap_and_validated() -> None:
    p = CKKSProtocol()
    assert p.phases == ("setup", "upload", "decrypt") and p.upload_phase == "upload"
    assert p.parameter_set == "n4096" and p.min_clients == 3 and p.release == "server"
    assert p.flood_std == 2.0 ** -25  # heuristic flooding on by default (IND-CPA^D, see module docstring)
    assert p._cache == {}  # no context generated at construction
    for bad in ({"parameter_set": "n2048"}, {"flood_std": -1.0}, {"min_clients": 2}, {"release": "all"},
                {"clip": -1.0}):
        with pytest.raises(ConfigError):
            CKKSProtocol(**bad)
    CKKSProtocol(min_clients=2, allow_small_rounds=True)


@pytest.mark.parametrize("name", sorted(PARAMETER_SETS))
def test_parameter_sets_are_128_bit_per_the_standard_table(name: str) -> None:
    params = PARAMETER_SETS[name]
    assert sum(params.coeff_mod_bit_sizes) <= SECURITY_TABLE_128[params.poly_modulus_degree]
    assert params.security_bits == 128
    assert params.describe()["security_bits"] == 128 and params.describe()["measured"]


def test_default_set_keeps_one_data_prime() -> None:
    params = PARAMETER_SETS["n4096"]
    assert len(params.coeff_mod_bit_sizes) == 2  # one data prime + the special prime


def test_round_is_accurate_and_chunked_by_slot_count(authority: CKKSAuthority) -> None:
    dim = 2 * SLOTS + 10  # dim + 1 weight slot -> 3 ciphertexts, no per-tensor waste
    ups = updates(4, dim, seed=1)
    report = run_round(protocol(authority), 1, ups)
    check(report, ups)
    result = report.result
    assert result.info["chunks_per_client"] == math.ceil((dim + 1) / SLOTS) == 3
    assert result.learned_by == "server" and result.info["decrypted_by"] == [0]
    assert result.total_weight == pytest.approx(sum(u.weight for u in ups.values()), rel=1e-6)
    # only the key holder's float64 release comes back besides ciphertexts
    assert report.upload_bytes[0]["decrypt"] == pytest.approx(8 * (dim + 1), rel=0.01)


def test_server_only_adds_and_its_context_is_public(authority: CKKSAuthority) -> None:
    p = protocol(authority)
    server = p.server(1, (0, 1, 2), 10)
    assert not server.codec.context.is_private()
    assert not ts.context_from(authority.public_material).is_private()
    with pytest.raises(ConfigError):
        public_context(ts.context_from(authority._secret).serialize(save_secret_key=True))


def test_no_secret_key_in_any_byte_the_server_received(authority: CKKSAuthority) -> None:
    ups = updates(3, 100, seed=2)
    report = run_round(protocol(authority), 1, ups, record_server_view=True)
    check(report, ups)
    received = [authority.public_material] + [payload for _, _, payload in report.server_view]
    # every blob the server got either is not a TenSEAL context or is a public one
    for blob in received:
        for candidate in _tenseal_blobs(blob):
            try:
                context = ts.context_from(candidate)
            except Exception:
                continue
            assert not context.is_private()
    # and the serialised secret context (hence its secret-key part) appears nowhere
    secret = authority._secret
    public = authority.public_material
    secret_only = next(secret[i:i + 64] for i in range(0, len(secret) - 64, 64) if secret[i:i + 64] not in public)
    for blob in received:
        assert secret_only not in blob


def _tenseal_blobs(blob: bytes) -> list[bytes]:
    """The blob itself and every bytes/list field of a privfed message inside it."""
    out = [blob]
    try:
        protocol_name, kind, round_id, sender = peek_header(blob)
    except MessageError:
        return out
    for spec in (MessageSpec(kind, {"key_id": FieldSpec("bytes"), "ciphertexts": FieldSpec("list"),
                                    "online_seconds": FieldSpec("float")}),):
        try:
            message = decode(blob, spec, protocol=protocol_name, round_id=round_id)
        except MessageError:
            continue
        out += list(message["ciphertexts"])
    return out


@pytest.mark.parametrize("point", ["before-upload", "after-upload", "setup"])
def test_dropouts(authority: CKKSAuthority, point: str) -> None:
    ups = updates(5, 300, seed=3)
    report = run_round(protocol(authority), 1, ups, drops={0: point, 2: point})
    check(report, ups)
    if point == "after-upload":
        assert report.result.survivors == (0, 1, 2, 3, 4)
        assert report.result.info["decrypted_by"] == [1]  # 0 was asked first and vanished
    else:
        assert report.result.survivors == (1, 3, 4)


def test_fewer_than_three_contributors_refused(authority: CKKSAuthority) -> None:
    ups = updates(3, 20)
    report = run_round(protocol(authority), 1, ups, drops={1: "before-upload"})
    assert report.result is None and "needs 3" in report.aborted
    allowed = protocol(authority, min_clients=2, allow_small_rounds=True)
    check(run_round(allowed, 1, ups, drops={1: "before-upload"}), ups)


def test_headroom_refused_for_too_many_clients(authority: CKKSAuthority) -> None:
    with pytest.raises(HeadroomError):
        protocol(authority, clip=100.0).server(1, tuple(range(20)), 10)


def test_key_holders_release(authority: CKKSAuthority) -> None:
    ups = updates(3, 50, seed=4)
    states: dict = {}
    report = run_round(protocol(authority, release="key-holders"), 1, ups, client_states=states)
    assert report.result.learned_by == "key-holders" and np.isnan(report.result.mean).all()
    for cid in range(3):
        mean, _ = states[cid][RESULTS_SLOT][1]
        assert np.max(np.abs(mean - exact(ups, (0, 1, 2)))) <= 1e-6


def test_noise_flooding_enters_the_bound_and_is_named(authority: CKKSAuthority) -> None:
    ups = updates(3, 2000, seed=5)
    flooded = run_round(protocol(authority, flood_std=1e-5), 1, ups)
    assert np.max(np.abs(flooded.result.mean - exact(ups, (0, 1, 2)))) <= flooded.result.error_bound
    assert "heuristic noise flooding" in flooded.result.info["ind_cpa_d"]
    plain = run_round(protocol(authority, flood_std=0.0), 1, ups)
    check(plain, ups)
    assert "exposes the secret key" in plain.result.info["ind_cpa_d"]
    # the flooding noise is really there: it dominates the error of the released mean
    weight = sum(u.weight for u in ups.values()) / MAX_WEIGHT
    flooded_error = np.std(flooded.result.mean - exact(ups, (0, 1, 2))) * weight
    assert 0.5e-5 < flooded_error < 2e-5
    assert flooded.result.error_bound > plain.result.error_bound


def _tamper_chunks(change):
    spec = MessageSpec("update", {"key_id": FieldSpec("bytes"), "ciphertexts": FieldSpec("list"),
                                  "online_seconds": FieldSpec("float")})

    def tamper(phase: str, cid: int, reply: bytes) -> bytes:
        if cid != 1 or phase != "upload":
            return reply
        protocol_name, kind, round_id, sender = peek_header(reply)
        fields = dict(decode(reply, spec, protocol=protocol_name, round_id=round_id).fields)
        change(fields)
        return encode(Message(protocol_name, kind, round_id, sender, fields))
    return tamper


def _corrupt(chunk: bytes) -> bytes:
    middle = len(chunk) // 2
    return chunk[:middle] + bytes(b ^ 0x5A for b in chunk[middle:middle + 64]) + chunk[middle + 64:]


_other = {}


def _foreign_chunks(fields: dict) -> None:
    """Ciphertexts under another context with other parameters (N=8192)."""
    if "ctx" not in _other:
        ctx = ts.context(ts.SCHEME_TYPE.CKKS, 8192, coeff_mod_bit_sizes=[60, 40, 40])
        ctx.global_scale = 2 ** 40
        _other["ctx"] = ctx
    fields["ciphertexts"] = [ts.ckks_vector(_other["ctx"], [0.0] * 101).serialize()]


@pytest.mark.parametrize("change", [
    lambda f: f.update(ciphertexts=[_corrupt(c) for c in f["ciphertexts"]]),
    lambda f: f.update(ciphertexts=[c[: len(c) // 2] for c in f["ciphertexts"]]),
    lambda f: f.update(ciphertexts=f["ciphertexts"] * 2),
    lambda f: f.update(key_id=bytes(32)),
    _foreign_chunks,
    lambda f: f.update(ciphertexts=[c + bytes(300_000) for c in f["ciphertexts"]]),
], ids=["corrupted", "truncated", "wrong-count", "other-key-id", "other-context", "oversized"])
def test_bad_uploads_are_rejected_and_the_round_completes(authority: CKKSAuthority, change) -> None:
    ups = updates(4, 100, seed=6)
    report = run_round(protocol(authority), 1, ups, tamper=_tamper_chunks(change))
    assert 1 in report.rejected and report.rejected[1]["phase"] == "upload"
    check(report, ups)
    assert 1 not in report.result.survivors


def test_decryption_failure_is_opaque(authority: CKKSAuthority) -> None:
    p = protocol(authority)
    ups = updates(3, 10)
    keys = authority.client_bundle()
    codec = p.client_codec(keys, 10, 3)
    with pytest.raises(DecryptionError, match="^decryption failed$"):
        codec.decrypt([b"not a ciphertext"])
    with pytest.raises(DecryptionError, match="^decryption failed$"):
        codec.decrypt([])
    assert ups  # the codec was built without any round traffic
