"""SecAgg masks against known answers kept as data (tests/vectors/secagg_mask_kat.json, computed from the mask's
definition with AES-ECB by make_mask_kat.py): one key at a time, all keys in one threaded pass, any split."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from protocols.secagg import masking

KAT = json.loads((Path(__file__).parent / "vectors" / "secagg_mask_kat.json").read_text())
CASES = KAT["cases"]


def _expected(case: dict) -> tuple[np.ndarray, np.ndarray]:
    return np.array(case["indices"]), np.array([int(h, 16) for h in case["words_hex"]], dtype=np.uint64)


def test_segment_size_is_the_one_of_the_vectors() -> None:
    assert masking.SEGMENT_BYTES == KAT["segment_bytes"]


def test_zero_key_starts_with_nist_gcm_test_case_14() -> None:
    # GCM test case 14 (K = 0^256, IV = 0^96, P = 0^128): its ciphertext is the first counter-mode block
    assert CASES[0]["key"] == "00" * 32 and CASES[0]["word_bytes"] == 4
    first = b"".join(int(h, 16).to_bytes(4, "little") for h in CASES[0]["words_hex"][:4])
    assert first.hex() == "cea7403d4d606b6e074ec5d3baf39d18"


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['key'][:8]}-{c['word_bytes']}B")
def test_keystream_words_match_the_known_answers(case: dict) -> None:
    bits = 32 if case["word_bytes"] == 4 else 64
    indices, expected = _expected(case)
    words = masking.keystream_words(bytes.fromhex(case["key"]), int(indices.max()) + 1, bits)
    assert np.array_equal(words[indices].astype(np.uint64), expected)


@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize("case", CASES[:2], ids=lambda c: f"{c['key'][:8]}-{c['word_bytes']}B")
def test_threaded_masking_matches_the_known_answers(case: dict, workers: int) -> None:
    bits = 32 if case["word_bytes"] == 4 else 64
    indices, expected = _expected(case)
    dtype = masking.ring_dtype(bits)
    acc = np.zeros(int(indices.max()) + 1, dtype=dtype)
    masking.apply_masks(acc, [bytes.fromhex(case["key"])], [], bits, workers=workers, block_bytes=48 * 1024)
    assert np.array_equal(acc[indices].astype(np.uint64), expected)


def test_definition_equals_ecb_for_fresh_keys() -> None:
    """Not only the stored keys: fresh keys, blocks on both sides of a segment boundary, recomputed with ECB."""
    segment = masking.SEGMENT_BYTES
    for _ in range(3):
        key = os.urandom(32)
        words = masking.keystream_words(key, 2 * segment // 4 + 8, 32)
        ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
        for block, (s, j) in {0: (0, 0), segment // 16 - 1: (0, segment // 16 - 1), segment // 16: (1, 0),
                              2 * segment // 16 + 1: (2, 1)}.items():
            want = ecb.update(s.to_bytes(12, "big") + (j + 2).to_bytes(4, "big"))
            assert words[4 * block:4 * block + 4].tobytes() == want
