"""The server's threaded running sum of masked inputs equals numpy's wrapping sum, whatever the split."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.errors import ConfigError
from protocols.secagg import masking


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 3000), dtype=st.sampled_from([np.uint32, np.uint64]), workers=st.integers(1, 5),
       threaded=st.booleans())
def test_add_into_wraps_like_numpy(n: int, dtype, workers: int, threaded: bool) -> None:
    acc = np.frombuffer(os.urandom(n * np.dtype(dtype).itemsize), dtype=dtype).copy()
    y = np.frombuffer(os.urandom(n * np.dtype(dtype).itemsize), dtype=dtype)  # read-only, as decoded
    expected = acc + y
    saved = masking._PARALLEL_MIN_BYTES
    masking._PARALLEL_MIN_BYTES = 0 if threaded else saved
    try:
        assert masking.add_into(acc, y, workers=workers) is acc
    finally:
        masking._PARALLEL_MIN_BYTES = saved
    assert np.array_equal(acc, expected)


def test_add_into_refuses_mismatched_vectors() -> None:
    with pytest.raises(ConfigError):
        masking.add_into(np.zeros(4, dtype=np.uint32), np.zeros(5, dtype=np.uint32))
    with pytest.raises(ConfigError):
        masking.add_into(np.zeros(4, dtype=np.uint32), np.zeros(4, dtype=np.uint64))
