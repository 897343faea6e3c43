"""Threshold Paillier core: known answers against phe's full-key decryption, proofs that catch wrong partials,
Lagrange combination for every T-subset, dealing that keeps no copy, threshold resolution and threat conditions."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest

gmpy2 = pytest.importorskip("gmpy2")
phe_paillier = pytest.importorskip("phe.paillier")

from hypothesis import given, settings, strategies as st  # noqa: E402

from protocols.errors import ConfigError, DecryptionError, MessageError  # noqa: E402
from protocols.paillier_public_randomness import FixedBaseResidues  # noqa: E402
from protocols.threshold_paillier import (ThresholdPaillierAuthority, resolve_threshold,  # noqa: E402
                                          threat_conditions, tolerated_colluders)
from protocols.threshold_paillier_keys import (KeyShare, ThresholdPublic, combine, deal, lagrange_times_delta,  # noqa
                                               partial_decrypt, proof_bytes, prove, verify)

KAT = json.loads((Path(__file__).parent / "vectors" / "threshold_paillier_kat.json").read_text())
H = lambda value: int(value, 16)  # noqa: E731


def _kat_public() -> ThresholdPublic:
    return ThresholdPublic(H(KAT["n"]), KAT["threshold"], tuple(KAT["holders"]), H(KAT["v"]),
                           tuple(H(k) for k in KAT["verification_keys"]), H(KAT["h"]))


def _kat_partials() -> dict[int, list[int]]:
    public = _kat_public()
    return {public.index_of(int(h)): [H(x) for x in entry["partials"]] for h, entry in KAT["key_holders"].items()}


@pytest.fixture(scope="module")
def small_key():
    """One dealt 1024-bit test key (the KAT's safe primes, fresh shares) shared by the property tests."""
    return deal(H(KAT["p"]), H(KAT["q"]), (3, 5, 8, 9, 20, 21), 4), H(KAT["p"]), H(KAT["q"])


# -- known answers -----------------------------------------------------------------------------------------------

def test_kat_loader_and_public_side() -> None:
    public = _kat_public()
    assert public.n == H(KAT["p"]) * H(KAT["q"]) and public.n.bit_length() == 1024
    assert ThresholdPublic.from_bytes(public.to_bytes()) == public
    for h, entry in KAT["key_holders"].items():  # verification keys match the stored shares
        assert pow(public.v, public.delta * H(entry["share"]), public.n_square) == \
            public.verification_keys[public.index_of(int(h)) - 1]
    assert len(KAT["ciphertexts"]) == len(KAT["phe_decryptions"]) >= 5


def test_kat_partials_are_recomputed_exactly() -> None:
    public = _kat_public()
    cts = [H(c) for c in KAT["ciphertexts"]]
    for h, entry in KAT["key_holders"].items():
        share = KeyShare(public, int(h), H(entry["share"]))
        assert partial_decrypt(share, cts) == [H(x) for x in entry["partials"]]


def test_kat_every_threshold_subset_equals_phe_full_key_decryption() -> None:
    public, partials = _kat_public(), _kat_partials()
    expected = [H(m) for m in KAT["phe_decryptions"]]
    phe_key = phe_paillier.PaillierPrivateKey(phe_paillier.PaillierPublicKey(public.n), H(KAT["p"]), H(KAT["q"]))
    assert [phe_key.raw_decrypt(H(c)) for c in KAT["ciphertexts"]] == expected
    for subset in itertools.combinations(sorted(partials), public.threshold):
        assert combine(public, {i: partials[i] for i in subset}) == expected
    for subset in itertools.combinations(sorted(partials), public.threshold + 1):  # more than T: still right
        assert combine(public, {i: partials[i] for i in subset}) == expected


def test_kat_proofs_verify_and_a_tampered_partial_is_detected() -> None:
    public = _kat_public()
    cts = [H(c) for c in KAT["ciphertexts"]]
    context = bytes.fromhex(KAT["context"])
    for h, entry in KAT["key_holders"].items():
        index, partials, proof = public.index_of(int(h)), [H(x) for x in entry["partials"]], \
            bytes.fromhex(entry["proof"])
        verify(public, index, cts, partials, proof, context)
        tampered = list(partials)
        tampered[2] = tampered[2] * (1 + public.n) % public.n_square  # shifts that slot's plaintext by one
        with pytest.raises(MessageError):
            verify(public, index, cts, tampered, proof, context)
        with pytest.raises(MessageError):  # the right partials under another holder's key
            verify(public, index % len(public.holders) + 1, cts, partials, proof, context)
        with pytest.raises(MessageError):  # bound to the round / ciphertexts it was made for
            verify(public, index, cts, partials, proof, context + b"x")


def test_every_t_minus_1_subset_is_consistent_with_another_key() -> None:
    """T - 1 shares (and so their partials) do not determine the plaintext: for every (T-1)-subset there is a
    share for one more holder, consistent with a key d' that decrypts every ciphertext to 2m, and the real T - 1
    partials plus that one combine to 2m instead of m (Shamir over Z_{n p'q'} hides the secret)."""
    public = _kat_public()
    p, q = H(KAT["p"]), H(KAT["q"])
    n, m_ = public.n, ((p - 1) // 2) * ((q - 1) // 2)
    nm = n * m_
    other_key = m_ * (2 * pow(m_, -1, n) % n) % nm  # d' = 0 mod p'q', d' = 2 mod n
    shares = {public.index_of(int(h)): H(e["share"]) for h, e in KAT["key_holders"].items()}
    partials = _kat_partials()
    cts = [H(c) for c in KAT["ciphertexts"]]
    expected = [2 * H(m) % n for m in KAT["phe_decryptions"]]
    for subset in itertools.combinations(sorted(shares), public.threshold - 1):
        points = [(0, other_key)] + [(i, shares[i]) for i in subset]
        j = next(i for i in sorted(shares) if i not in subset)
        forged = 0
        for xk, yk in points:  # Lagrange interpolation at j over Z_{n p'q'}
            term = yk
            for xl, _ in points:
                if xl != xk:
                    term = term * (j - xl) * pow(xk - xl, -1, nm) % nm
            forged = (forged + term) % nm
        forged_partials = partial_decrypt(KeyShare(public, public.holders[j - 1], forged), cts)
        combined = combine(public, {**{i: partials[i] for i in subset}, j: forged_partials})
        assert combined == expected


def test_fewer_than_threshold_partials_do_not_decrypt() -> None:
    public, partials = _kat_public(), _kat_partials()
    with pytest.raises(DecryptionError):
        combine(public, {i: partials[i] for i in sorted(partials)[:public.threshold - 1]})


def test_kat_public_encryption_randomness_fixed_base_matches_pow_and_decrypts() -> None:
    n = H(KAT["n"])
    residues = FixedBaseResidues(n, H(KAT["h"]))
    phe_key = phe_paillier.PaillierPrivateKey(phe_paillier.PaillierPublicKey(n), H(KAT["p"]), H(KAT["q"]))
    for case in KAT["residue_cases"]:
        rn = residues.power(H(case["x"])) * (residues.u_n if case["b"] else 1) % (n * n)
        assert rn == H(case["rn"])
        assert phe_key.raw_decrypt(H(case["c"])) == H(case["m"])


def test_dealt_h_generates_jn_and_public_randomness_covers_both_cosets(small_key) -> None:
    dealt, p, q = small_key
    n, h = dealt.public.n, dealt.public.h
    lam = (p - 1) * (q - 1) // 2
    assert gmpy2.jacobi(h, n) == 1 and pow(h, lam, n) == 1
    assert all(pow(h, lam // r, n) != 1 for r in (2, (p - 1) // 2, (q - 1) // 2))  # order exactly λ
    residues = FixedBaseResidues(n, h)
    phe_key = phe_paillier.PaillierPrivateKey(phe_paillier.PaillierPublicKey(n), p, q)
    seen = set()
    for m in range(40):
        rn = residues.sample()
        assert phe_key.raw_decrypt(int((1 + m * n) * rn % (n * n))) == m  # a valid n-th residue
        r = pow(int(rn), pow(n, -1, lam * 2), n)  # r^n mod n -> r mod n (n is invertible mod λ(n) = 2 p' q')
        seen.add(int(gmpy2.jacobi(r, n)))
    assert seen == {1, -1}  # r drawn from both cosets of J_n: the whole of Z*_n
    with pytest.raises(ConfigError):
        FixedBaseResidues(n, n - 1)


# -- properties --------------------------------------------------------------------------------------------------

@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_any_threshold_subset_decrypts_random_plaintexts(small_key, data) -> None:
    dealt, p, q = small_key
    public = dealt.public
    n = public.n
    ms = data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=3))
    subset = data.draw(st.lists(st.sampled_from(public.holders), min_size=public.threshold,
                                max_size=public.threshold, unique=True))
    phe_public = phe_paillier.PaillierPublicKey(n)
    cts = [phe_public.raw_encrypt(m) for m in ms]
    partials = {dealt.shares[h].index: partial_decrypt(dealt.shares[h], cts) for h in subset}
    assert combine(public, partials) == ms


@settings(max_examples=15, deadline=None)
@given(position=st.integers(0, 2), delta=st.integers(1, 2 ** 64), target=st.sampled_from(["partial", "e", "z"]))
def test_any_change_to_a_partial_or_its_proof_is_caught(small_key, position, delta, target) -> None:
    dealt, _, _ = small_key
    public = dealt.public
    share = dealt.shares[public.holders[0]]
    cts = [phe_paillier.PaillierPublicKey(public.n).raw_encrypt(m) for m in (5, 6, 7)]
    partials = partial_decrypt(share, cts)
    proof = prove(share, cts, partials, b"ctx")
    verify(public, share.index, cts, partials, proof, b"ctx")
    if target == "partial":
        partials = list(partials)
        partials[position] = partials[position] * pow(1 + public.n, delta, public.n_square) % public.n_square
    else:
        split = 32
        e, z = int.from_bytes(proof[:split], "big"), int.from_bytes(proof[split:], "big")
        if target == "e":
            e = (e + delta) % (1 << 256)
        else:
            z = (z + delta) % (1 << (8 * (len(proof) - split)))
        proof = e.to_bytes(split, "big") + z.to_bytes(len(proof) - split, "big")
    with pytest.raises(MessageError):
        verify(public, share.index, cts, partials, proof, b"ctx")


@given(indices=st.lists(st.integers(1, 8), min_size=1, max_size=8, unique=True))
def test_lagrange_coefficients_times_delta_are_integers_that_interpolate(indices) -> None:
    delta = math.factorial(8)
    lam = lagrange_times_delta(indices, delta)
    # interpolating the constant 1 and the polynomial x at 0: sum lam_j = delta, sum lam_j * j = 0 (if > 1 point)
    assert sum(lam.values()) == delta
    if len(indices) > 1:
        assert sum(lam[j] * j for j in indices) == 0


def test_proof_and_public_material_sizes() -> None:
    public = _kat_public()
    assert proof_bytes(public) == len(bytes.fromhex(next(iter(KAT["key_holders"].values()))["proof"]))
    with pytest.raises(ConfigError):
        ThresholdPublic.from_bytes(public.to_bytes()[:-1])
    with pytest.raises(ConfigError):
        ThresholdPublic.from_bytes(public.to_bytes() + b"\x00")


# -- the dealer --------------------------------------------------------------------------------------------------

def test_dealer_keeps_no_copy_once_delivered() -> None:
    authority = ThresholdPaillierAuthority(1024, (0, 1, 2, 3), 3, insecure_test_keys=True)
    n = authority.public.n
    bundles = [authority.client_bundle(c) for c in (0, 1, 2, 3)]
    assert all(b.share is not None for b in bundles) and authority.undelivered == 0
    with pytest.raises(ConfigError, match="no copy"):
        authority.client_bundle(2)
    # nothing the authority still holds is a factor of n or a share
    shares = {b.share.share for b in bundles}
    for value in _ints_in(vars(authority)):
        assert not (1 < value < n and n % value == 0), "the authority still holds a factor of n"
        assert value not in shares, "the authority still holds a delivered share"
    outsider = authority.client_bundle(99)  # a client without a share can encrypt, not decrypt
    assert outsider.share is None
    with pytest.raises(DecryptionError):
        outsider.decrypt_raw(5)


def _ints_in(obj, depth=0):
    if depth > 4:
        return
    if isinstance(obj, int) and not isinstance(obj, bool):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _ints_in(v, depth + 1)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _ints_in(v, depth + 1)
    elif hasattr(obj, "__dict__") or hasattr(obj, "__dataclass_fields__"):
        for name in getattr(obj, "__dataclass_fields__", None) or vars(obj):
            yield from _ints_in(getattr(obj, name), depth + 1)


def test_deal_refuses_non_safe_primes_and_bad_thresholds() -> None:
    p, q = H(KAT["p"]), H(KAT["q"])
    with pytest.raises(ConfigError):
        deal(p, int(gmpy2.next_prime(q)), (1, 2, 3), 2)
    with pytest.raises(ConfigError):
        deal(p, q, (1, 2, 3), 4)


# -- threshold resolution and the threat condition ---------------------------------------------------------------

@pytest.mark.parametrize("threshold, holders, expected", [
    (4, 8, 4), (0.5, 8, 4), (0.51, 8, 5), (1.0, 8, 8), (None, 8, 6), (None, 3, 2), (2, 2, 2)])
def test_resolve_threshold(threshold, holders, expected) -> None:
    assert resolve_threshold(threshold, holders) == expected


@pytest.mark.parametrize("threshold, holders", [(1, 8), (9, 8), (0.0, 8), (1.5, 8), (True, 8), ("4", 8),
                                                (float("nan"), 8)])
def test_resolve_threshold_refuses(threshold, holders) -> None:
    with pytest.raises(ConfigError):
        resolve_threshold(threshold, holders)


def test_tolerated_colluders_and_threat_conditions() -> None:
    options = {"decryption": "threshold", "threshold": 4}
    assert tolerated_colluders(options, 8) == 3
    assert tolerated_colluders({}, 8) == 0  # shared key: one colluding key holder decrypts everyone
    assert threat_conditions(options, 8, collusion=3)["unmet"] == []
    assert "collusion=4" in threat_conditions(options, 8, collusion=4)["unmet"][0]
    assert threat_conditions(options, 8, decrypt_dropouts=4)["unmet"] == []
    assert "threshold 4" in threat_conditions(options, 8, decrypt_dropouts=5)["unmet"][0]
