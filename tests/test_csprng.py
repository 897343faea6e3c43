"""The CSPRNG: known-answer AES-CTR keystream, exact ring uniformity, and samplers with the right moments."""

from __future__ import annotations

import os

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from scipy import stats

from protocols.csprng import CSPRNG, FAST_NONCE
from protocols.errors import ConfigError


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


def test_fast_engine_streams_are_the_counter_mode_keystream() -> None:
    """A stream whose initial counter ends in 00000002 comes from the GCM engine: the same bytes as CTR mode from
    that counter, across calls of any length and through fill()."""
    for nonce in (FAST_NONCE, os.urandom(12) + FAST_NONCE[12:]):
        key = os.urandom(32)
        reference = Cipher(algorithms.AES(key), modes.CTR(nonce)).encryptor().update(bytes(5000))
        rng = CSPRNG.from_key(key, nonce)
        got = rng.bytes(7) + rng.bytes(1000)
        words = np.empty(500 + 4, dtype=np.uint32)
        got += rng.fill(words, 500).tobytes() + rng.bytes(1993)
        assert got == reference


def test_fast_engine_refuses_to_wrap_its_counter() -> None:
    rng = CSPRNG.from_key(bytes(32), FAST_NONCE)
    rng._left = 32  # as if 2^32 - 4 blocks had been drawn
    rng.bytes(32)
    with pytest.raises(ConfigError, match="exhausted"):
        rng.bytes(1)
