"""The CSPRNG: known-answer AES-CTR keystream, exact ring uniformity, and samplers with the right moments."""

from __future__ import annotations

import numpy as np
from scipy import stats

from protocols.csprng import CSPRNG


def test_keystream_matches_nist_sp800_38a_ctr_vector() -> None:
    # NIST SP 800-38A F.5.5 CTR-AES256: keystream = ciphertext XOR plaintext for the first block
    key = bytes.fromhex("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4")
    nonce = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
    plaintext = bytes.fromhex("6bc1bee22e409f96e93d7e117393172a")
    ciphertext = bytes.fromhex("601ec313775789a5b7a7f504bbf3d228")
    keystream = CSPRNG.from_key(key, nonce).bytes(16)
    assert bytes(a ^ b for a, b in zip(keystream, plaintext)) == ciphertext


def test_os_keyed_generators_differ() -> None:
    assert CSPRNG.from_os().bytes(32) != CSPRNG.from_os().bytes(32)


def test_ring_values_are_uniform_and_reach_the_top() -> None:
    values = CSPRNG.from_os().ring(200_000, 8).astype(np.int64)
    counts = np.bincount(values, minlength=256)
    assert counts[255] > 0
    assert stats.chisquare(counts).pvalue > 1e-4


def test_normal_and_laplace_moments() -> None:
    rng = CSPRNG.from_os()
    z = rng.normal(100_000, std=2.0)
    assert abs(z.mean()) < 0.05 and abs(z.std() - 2.0) < 0.05
    assert stats.kstest(z / 2.0, "norm").pvalue > 1e-4
    lap = rng.laplace(100_000, scale=1.5)
    assert stats.kstest(lap, "laplace", args=(0, 1.5)).pvalue > 1e-4


def test_below_is_in_range_and_covers() -> None:
    rng = CSPRNG.from_os()
    draws = {rng.below(7) for _ in range(500)}
    assert draws == set(range(7))
