"""Packed Paillier and the per-value baseline: known answers against phe, roles, dropouts, bad input, headroom."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

gmpy2 = pytest.importorskip("gmpy2")  # the 'all' / 'he' extra; skipped when not installed
phe_paillier = pytest.importorskip("phe.paillier")

from protocols.base import ClientUpdate  # noqa: E402
from protocols.errors import ConfigError, DecryptionError, HeadroomError, MessageError  # noqa: E402
from protocols.he_round import RESULTS_SLOT  # noqa: E402
from protocols.paillier import PackedPaillierProtocol, PerValuePaillierProtocol  # noqa: E402
from protocols.paillier_keys import ClientKeys, PaillierAuthority, PublicKey  # noqa: E402
from protocols.wire import Message, decode, encode, peek_header  # noqa: E402
from privfed.runtime.local import run_round  # noqa: E402

from contract.harness import exact_mean as exact, updates_for  # noqa: E402

KAT = json.loads((Path(__file__).parent / "vectors" / "paillier_kat.json").read_text())
MAX_WEIGHT = 10.0


@pytest.fixture(scope="session")
def authority() -> PaillierAuthority:
    return PaillierAuthority(2048)


def protocol(authority: PaillierAuthority, **options) -> PackedPaillierProtocol:
    return PackedPaillierProtocol(authority=authority, max_weight=MAX_WEIGHT, **options)


def updates(n: int, dim: int, seed: int = 0) -> dict[int, ClientUpdate]:
    """Values uniform in [-1, 1], weights 1..10 (the contract suite's test data)."""
    return updates_for(n, dim, seed, scale=1.0)


def check(report, ups) -> None:
    assert report.aborted is None, report.aborted
    result = report.result
    error = np.max(np.abs(result.mean - exact(ups, result.survivors)))
    assert error <= result.error_bound
    assert result.error_bound < 1e-4


# -- configuration -------------------------------------------------------------------------------------------------

def test_defaults_are_cheap_and_secure() -> None:
    p = PackedPaillierProtocol()
    assert p.phases == ("setup", "upload", "decrypt") and p.upload_phase == "upload"
    assert p.key_bits == 2048 and p.slot_bits == 24 and p.min_clients == 3 and p.release == "server"
    assert p._cache == {}  # no key generation at construction
    PackedPaillierProtocol(key_bits=3072)  # offered
    with pytest.raises(ConfigError):
        PackedPaillierProtocol(key_bits=1024)
    PackedPaillierProtocol(key_bits=1024, insecure_test_keys=True)  # tests only, explicit
    with pytest.raises(ConfigError):
        PackedPaillierProtocol(min_clients=2)
    PackedPaillierProtocol(min_clients=2, allow_small_rounds=True)
    for bad in ({"slot_bits": 4}, {"randomness": "short"}, {"release": "everyone"}, {"clip": 0.0},
                {"max_weight": math.inf}):
        with pytest.raises(ConfigError):
            PackedPaillierProtocol(**bad)
    assert PerValuePaillierProtocol().name == "paillier-per-value"


# -- known answers against phe -------------------------------------------------------------------------------------

@pytest.mark.parametrize("index", range(len(KAT["cases"])))
def test_known_answers_match_phe(index: int) -> None:
    n, p, q = (int(KAT[k], 16) for k in ("n", "p", "q"))
    case = KAT["cases"][index]
    m, r, c = (int(case[k], 16) for k in ("m", "r", "c"))
    phe_private = phe_paillier.PaillierPrivateKey(phe_paillier.PaillierPublicKey(n), p, q)
    assert phe_private.raw_decrypt(c) == m
    keys = ClientKeys(n, p, q)
    assert keys.encrypt_raw(m, gmpy2.powmod(r, n, n * n)) == c  # privfed reproduces phe's ciphertext
    assert keys.decrypt_raw(c) == m


def test_privfed_ciphertexts_decrypt_with_phes_own_private_key(authority: PaillierAuthority) -> None:
    p = protocol(authority)
    ups = updates(3, 200)
    server = p.server(1, (0, 1, 2), 200)
    setup = server.start().messages[0]
    clients = {cid: p.client(cid, 1, ups[cid], {}) for cid in ups}
    for cid, client in clients.items():
        server.receive(cid, client.handle(setup))
    request = server.advance().messages[0]
    reply = decode(clients[0].handle(request), server._update_spec, protocol="paillier", round_id=1, sender=0)
    width = PublicKey.from_material(authority.public_material).ciphertext_bytes
    raw = reply["ciphertexts"]
    phe_private = authority.phe_private_key()  # phe's own key object and its own decryption
    packing = server.codec.packing
    slots = packing.unpack([phe_private.raw_decrypt(int.from_bytes(raw[i:i + width], "big"))
                            for i in range(0, len(raw), width)], 201)
    decoded = packing.fixed.dequantize(slots.astype(np.int64) - packing.offset)
    weight = ups[0].weight / MAX_WEIGHT
    assert decoded[-1] == pytest.approx(weight, abs=1 / packing.fixed.scale)
    assert np.max(np.abs(decoded[:-1] - weight * ups[0].vector)) <= 1 / packing.fixed.scale


def test_precomputed_randomness_is_an_nth_residue_and_fresh(authority: PaillierAuthority) -> None:
    keys = authority.client_bundle()
    n = int(keys.n)
    p, q = authority._p, authority._q
    lam = (p - 1) * (q - 1) // math.gcd(p - 1, q - 1)
    pool = keys.nth_residues(4)
    assert len({int(x) for x in pool}) == 4
    for x in pool:  # n-th residues are exactly the elements whose order divides lambda
        assert gmpy2.powmod(x, lam, n * n) == 1
        assert math.gcd(int(x), n) == 1


# -- rounds --------------------------------------------------------------------------------------------------------

def test_round_matches_exact_mean_and_names_who_learned_it(authority: PaillierAuthority) -> None:
    ups = updates(4, 300, seed=1)
    report = run_round(protocol(authority), 1, ups)
    check(report, ups)
    result = report.result
    assert result.learned_by == "server" and result.info["release"] == "server"
    assert result.info["slots_per_plaintext"] == 85 and result.info["ciphertexts_per_client"] == 4
    assert result.total_weight == pytest.approx(sum(u.weight for u in ups.values()), rel=1e-4)


def test_online_randomness_variant_also_correct(authority: PaillierAuthority) -> None:
    ups = updates(3, 50, seed=2)
    check(run_round(protocol(authority, randomness="online"), 1, ups), ups)


@pytest.mark.parametrize("point", ["before-upload", "after-upload", "setup"])
def test_dropouts(authority: PaillierAuthority, point: str) -> None:
    ups = updates(5, 100, seed=3)
    report = run_round(protocol(authority), 1, ups, drops={0: point, 3: point})
    check(report, ups)
    if point == "after-upload":  # 0 was the first decrypter: the next key holder decrypted instead
        assert report.result.survivors == (0, 1, 2, 3, 4)
        assert report.result.info["decrypted_by"] == [1]
    else:
        assert report.result.survivors == (1, 2, 4)


def test_fewer_than_three_contributors_abort(authority: PaillierAuthority) -> None:
    ups = updates(3, 20)
    report = run_round(protocol(authority), 1, ups, drops={2: "before-upload"})
    assert report.result is None and "needs 3" in report.aborted


def test_all_key_holders_gone_aborts(authority: PaillierAuthority) -> None:
    ups = updates(3, 20)
    report = run_round(protocol(authority), 1, ups, drops={c: "decrypt" for c in range(3)})
    assert report.result is None and "key holder" in report.aborted


def test_headroom_too_small_for_the_clients_raises_before_any_message(authority: PaillierAuthority) -> None:
    with pytest.raises(HeadroomError):
        protocol(authority, slot_bits=8).server(1, tuple(range(64)), 10)


def test_key_holders_release_keeps_the_mean_off_the_server(authority: PaillierAuthority) -> None:
    ups = updates(3, 40, seed=4)
    states: dict = {}
    report = run_round(protocol(authority, release="key-holders"), 1, ups, client_states=states)
    result = report.result
    assert result.learned_by == "key-holders" and np.isnan(result.mean).all()
    for cid in range(3):
        mean, total = states[cid][RESULTS_SLOT][1]
        assert np.max(np.abs(mean - exact(ups, (0, 1, 2)))) <= 1e-4


# -- bad input -----------------------------------------------------------------------------------------------------

def _upload_tamper(change):
    def tamper(phase: str, cid: int, reply: bytes) -> bytes:
        if cid != 1 or phase != "upload":
            return reply
        protocol_name, kind, round_id, sender = peek_header(reply)
        from protocols.wire import FieldSpec, MessageSpec
        spec = MessageSpec("update", {"key_id": FieldSpec("bytes"), "ciphertexts": FieldSpec("bytes"),
                                      "online_seconds": FieldSpec("float")})
        message = decode(reply, spec, protocol=protocol_name, round_id=round_id)
        fields = dict(message.fields)
        change(fields)
        return encode(Message(protocol_name, kind, round_id, sender, fields))
    return tamper


@pytest.mark.parametrize("change", [
    lambda f: f.update(ciphertexts=b"\xff" * len(f["ciphertexts"])),          # outside Z_{n^2}
    lambda f: f.update(ciphertexts=f["ciphertexts"][:-512]),                   # one ciphertext short
    lambda f: f.update(ciphertexts=f["ciphertexts"] + f["ciphertexts"]),       # wrong count / oversized
    lambda f: f.update(key_id=bytes(32)),                                      # under another key
    lambda f: f.update(ciphertexts=f["ciphertexts"] + bytes(2_000_000)),       # oversized message
], ids=["corrupted", "short", "too-many", "other-key", "oversized"])
def test_bad_uploads_are_rejected_and_the_round_completes(authority: PaillierAuthority, change) -> None:
    ups = updates(4, 100, seed=5)
    report = run_round(protocol(authority), 1, ups, tamper=_upload_tamper(change))
    assert 1 in report.rejected and report.rejected[1]["phase"] == "upload"
    check(report, ups)
    assert 1 not in report.result.survivors


def test_client_with_keys_from_another_authority_refuses(authority: PaillierAuthority) -> None:
    other = PaillierAuthority(1024, insecure_test_keys=True)
    ups = updates(4, 30, seed=6)
    states = {2: {PackedPaillierProtocol.key_slot: other.client_bundle()}}
    # the stale bundle is replaced by the current authority's: provisioning is per key id
    report = run_round(protocol(authority), 1, ups, client_states=states)
    check(report, ups)
    # a client machine bound to foreign keys refuses the server's setup
    p = protocol(authority)
    server = p.server(1, (0, 1, 2), 30)
    setup = server.start().messages[0]
    client = p.client(0, 1, ups[0], {})
    client.keys = other.client_bundle()
    with pytest.raises(MessageError):
        client.handle(setup)


def test_decryption_failure_is_opaque(authority: PaillierAuthority) -> None:
    keys = authority.client_bundle()
    with pytest.raises(DecryptionError, match="^decryption failed$"):
        keys.decrypt_raw(0)
    with pytest.raises(DecryptionError, match="^decryption failed$"):
        keys.decrypt_raw(int(keys.n_square) + 5)


def test_server_never_receives_the_factors(authority: PaillierAuthority) -> None:
    ups = updates(3, 100, seed=7)
    report = run_round(protocol(authority), 1, ups, record_server_view=True)
    check(report, ups)
    received = [authority.public_material] + [payload for _, _, payload in report.server_view]
    p, q = authority._p, authority._q
    lam = (p - 1) * (q - 1)
    needles = []
    for secret in (p, q, lam):
        size = (secret.bit_length() + 7) // 8
        needles += [secret.to_bytes(size, "big"), secret.to_bytes(size, "little"), str(secret).encode(),
                    format(secret, "x").encode()]
    for blob in received:
        for needle in needles:
            assert needle not in blob  # whole values: phi shares its top half with n by construction
    assert PublicKey.from_material(authority.public_material).n == p * q


def test_per_value_baseline_is_correct_on_a_tiny_vector(authority: PaillierAuthority) -> None:
    ups = updates(3, 3, seed=8)
    report = run_round(PerValuePaillierProtocol(authority=authority, max_weight=MAX_WEIGHT), 1, ups)
    check(report, ups)
    assert report.result.error_bound < 1e-8
    # one 512-byte ciphertext per value (plus the weight)
    assert report.upload_bytes[0]["upload"] >= 4 * 512
