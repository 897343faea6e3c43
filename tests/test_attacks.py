"""The attack primitives on hand-built views: they must succeed where the view leaks and fail where it cannot."""

from __future__ import annotations

import numpy as np
import pytest

from protocols.wire import Message, encode
from privfed.audit.attacks import (EmbeddingRows, canary_exposure, membership_inference, readable_vectors,
                                   token_presence_attack)

LAYOUT = EmbeddingRows(offset=0, vocab_size=50, width=4, dim=50 * 4 + 30)
UNION = set(range(1, 50))
TRUE = {3, 7, 11, 20}


def _update_with_rows(rows: set[int]) -> np.ndarray:
    vector = np.zeros(LAYOUT.dim, dtype=np.float32)
    for r in rows:
        vector[r * 4:(r + 1) * 4] = 0.01
    vector[200:] = 0.5  # other layers always change
    return vector


def test_plaintext_update_reveals_exactly_the_tokens() -> None:
    weighted = np.append(_update_with_rows(TRUE) * 0.3, np.float32(0.3))
    message = encode(Message("plaintext", "update", 1, 0, {"vector": weighted.astype(np.float32)}))
    result = token_presence_attack([message], LAYOUT, TRUE, UNION)
    assert result.precision == 1.0 and result.recall == 1.0 and result.view == "update"


def test_masked_ring_vector_gives_chance_level() -> None:
    rng = np.random.default_rng(0)
    masked = rng.integers(0, 2**32, LAYOUT.dim + 1, dtype=np.uint64).astype(np.uint32)
    message = encode(Message("secagg", "masked-input", 1, 0, {"y": masked}))
    result = token_presence_attack([message], LAYOUT, TRUE, UNION)
    assert result.view == "ring"
    assert result.precision == pytest.approx(result.chance)


def test_ciphertext_only_view_falls_back_to_blind_guess() -> None:
    message = encode(Message("ckks", "ciphertext", 1, 0, {"chunks": [b"\x01" * 100, b"\x02" * 100]}))
    result = token_presence_attack([message, b"not a message"], LAYOUT, TRUE, UNION)
    assert result.view == "blind" and result.precision == pytest.approx(len(TRUE) / len(UNION))
    assert result.recall == 1.0


def test_vectors_of_other_lengths_are_ignored() -> None:
    message = encode(Message("x", "y", 1, 0, {"v": np.ones(7, dtype=np.float32)}))
    assert readable_vectors([message], LAYOUT.dim) == ([], "blind")


def test_canary_exposure_extremes() -> None:
    candidates = [[i] for i in range(1, 1024)]
    assert canary_exposure(lambda seq: 0.0 if seq == [0] else 1.0, [0], candidates) == pytest.approx(10.0)
    assert canary_exposure(lambda seq: 2.0 if seq == [0] else 1.0, [0], candidates) == pytest.approx(0.0)


def test_membership_inference_auc() -> None:
    assert membership_inference([0.1, 0.2, 0.3], [1.0, 2.0, 3.0])[0] == 1.0
    assert membership_inference([1.0, 2.0], [1.0, 2.0])[0] == pytest.approx(0.5)
    rng = np.random.default_rng(1)
    auc, tpr = membership_inference(rng.normal(0, 1, 2000), rng.normal(0, 1, 2000))
    assert abs(auc - 0.5) < 0.05 and tpr < 0.05
