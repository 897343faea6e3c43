"""Paillier encryption randomness: the threaded exact pool and the optional short-exponent (DJN-style) pool.

Both pools must yield n-th residues (elements whose order divides lambda), fresh per ciphertext; the short-exponent
values must be exactly h^x for the bundle's base h (the fixed-base tables agree with gmpy2's powmod, edge digits
included); and a round with ``randomness="short-exponent"`` decrypts to the exact mean within the bound.
Small insecure keys keep these fast (the mathematics does not depend on the size).
"""

from __future__ import annotations

import math
import secrets

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

gmpy2 = pytest.importorskip("gmpy2")
pytest.importorskip("phe")

from protocols.errors import ConfigError  # noqa: E402
from protocols.paillier import RANDOMNESS, PackedPaillierProtocol  # noqa: E402
from protocols.paillier_keys import PaillierAuthority, _FixedBase  # noqa: E402
from privfed.runtime.local import run_round  # noqa: E402

from contract.harness import exact_mean, updates_for  # noqa: E402


@pytest.fixture(scope="module")
def authority() -> PaillierAuthority:
    return PaillierAuthority(1024, insecure_test_keys=True)


def _lam(authority: PaillierAuthority) -> int:
    p, q = authority._p, authority._q
    return (p - 1) * (q - 1) // math.gcd(p - 1, q - 1)


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_threaded_exact_pool_gives_fresh_nth_residues(authority: PaillierAuthority, workers: int) -> None:
    keys = authority.client_bundle()
    n2 = int(keys.n_square)
    pool = keys.nth_residues(7, workers=workers)
    assert len(pool) == 7 and len({int(x) for x in pool}) == 7
    for x in pool:
        assert gmpy2.powmod(x, _lam(authority), n2) == 1 and math.gcd(int(x), int(keys.n)) == 1
    with pytest.raises(ConfigError):
        keys.nth_residues(3, workers=0)


def test_short_exponent_pool_is_h_to_short_powers(authority: PaillierAuthority) -> None:
    keys = authority.client_bundle()
    n, n2 = int(keys.n), int(keys.n_square)
    assert keys.short_exponent_bits == (n.bit_length() + 1) // 2
    h = keys.short_base
    assert gmpy2.powmod(h, _lam(authority), n2) == 1  # h is an n-th residue
    pool = keys.nth_residues_short(6)
    assert len({int(x) for x in pool}) == 6
    for x in pool:
        assert gmpy2.powmod(x, _lam(authority), n2) == 1 and math.gcd(int(x), n) == 1
    assert keys.short_base == h  # drawn once
    assert authority.client_bundle().short_base == h  # shared by the key's bundles (DJN's public h)
    assert PaillierAuthority(1024, insecure_test_keys=True).client_bundle().short_base != h  # another key, another h


@settings(max_examples=80, deadline=None)
@given(exponent=st.one_of(st.integers(0, (1 << 200) - 1), st.sampled_from([0, 1, 63, 64, (1 << 200) - 1])))
def test_fixed_base_tables_agree_with_powmod(exponent: int) -> None:
    modulus = gmpy2.mpz(secrets.randbits(256) | 1 | (1 << 255))
    h = gmpy2.mpz(secrets.randbelow(int(modulus)))
    table = _FixedBase(h, modulus, 200)
    assert table.power(exponent) == gmpy2.powmod(h, exponent, modulus)


def test_fixed_base_refuses_long_or_negative_exponents() -> None:
    table = _FixedBase(gmpy2.mpz(3), gmpy2.mpz(1009 * 1013), 12)
    with pytest.raises(ConfigError):
        table.power(1 << 12)
    with pytest.raises(ConfigError):
        table.power(-1)


def test_bundles_pickle_without_locks_or_tables_and_keep_their_base(authority: PaillierAuthority) -> None:
    import pickle
    keys = authority.client_bundle()
    h = keys.short_base
    keys.nth_residues_short(1)  # tables built
    restored = pickle.loads(pickle.dumps(keys))  # how the Flower runtime keeps node state between messages
    assert restored.short_base == h
    assert len(pickle.dumps(keys)) < 20_000  # the tables are not part of the pickle
    n2 = int(restored.n_square)
    assert all(gmpy2.powmod(x, _lam(authority), n2) == 1 for x in restored.nth_residues_short(2))


def test_short_exponent_round_matches_exact_mean(authority: PaillierAuthority) -> None:
    assert RANDOMNESS[0] == "crt-pool"  # the exact pool stays the default
    assert PackedPaillierProtocol().randomness == "crt-pool"
    ups = updates_for(4, 120, 5, scale=1.0)
    protocol = PackedPaillierProtocol(authority=authority, max_weight=10.0, randomness="short-exponent",
                                      insecure_test_keys=True, key_bits=1024)
    report = run_round(protocol, 1, ups)
    assert report.aborted is None, report.aborted
    result = report.result
    assert abs(result.mean - exact_mean(ups, result.survivors)).max() <= result.error_bound
