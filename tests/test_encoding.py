"""Fixed-point encoding: exact round trips, unbiased stochastic rounding, headroom that raises."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.csprng import CSPRNG
from protocols.encoding import FixedPoint, split_weighted, weighted_mean_error_bound, weighted_vector
from protocols.errors import ConfigError, HeadroomError, MessageError


def test_headroom_violation_raises_not_warns() -> None:
    with pytest.raises(HeadroomError):
        FixedPoint(clip=1.0, frac_bits=28, total_bits=32, max_clients=10)
    fp = FixedPoint.for_bits(32, max_clients=10, clip=1.0)
    assert fp.frac_bits == 27  # 10 * (2^27 + 2) < 2^31 <= 10 * (2^28 + 2)
    assert fp.max_clients * fp.max_abs_per_client < 2**31


def test_all_max_and_all_min_inputs_decode_exactly_at_the_bound() -> None:
    n = 10
    fp = FixedPoint.for_bits(32, max_clients=n, clip=1.0)
    rng = CSPRNG.from_os()
    for value in (1.0, -1.0):
        q = [fp.quantize(np.full(5, value), rng) for _ in range(n)]
        total = np.zeros(5, dtype=np.uint64)
        for item in q:
            total = (total + fp.to_ring(item)) & np.uint64(fp.modulus - 1)
        assert np.array_equal(fp.from_ring(total, n), np.sum(q, axis=0))
        assert np.allclose(fp.dequantize(fp.from_ring(total, n)), n * value)
    with pytest.raises(HeadroomError):
        fp.from_ring(total, n + 1)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=-(2**25), max_value=2**25), min_size=1, max_size=20),
       st.sampled_from([16, 32, 48, 63, 64]))
def test_ring_round_trip_exact_for_negatives_and_limits(values: list[int], bits: int) -> None:
    fp = FixedPoint(clip=1.0, frac_bits=0, total_bits=bits, max_clients=1, extra_per_client=0) if bits < 27 else \
        FixedPoint(clip=1.0, frac_bits=0, total_bits=bits, max_clients=1, extra_per_client=2**25)
    q = np.array([v for v in values if abs(v) <= fp.max_abs_per_client], dtype=np.int64)
    assert np.array_equal(fp.from_ring(fp.to_ring(q), 1), q)


def test_stochastic_rounding_is_unbiased() -> None:
    fp = FixedPoint(clip=1.0, frac_bits=4, total_bits=32, max_clients=1)
    x = np.full(200_000, 0.3 / 16 + 1 / 32 * 0.37)  # between two grid points
    q = fp.quantize(x, CSPRNG.from_os())
    mean_error = fp.dequantize(q).mean() - x[0]
    # std of one rounding <= 1/(2*scale); 6 sigma over 200k samples
    assert abs(mean_error) < 6 * (1 / 32) / math.sqrt(x.size)
    assert set(np.unique(q)) <= {int(np.floor(x[0] * 16)), int(np.floor(x[0] * 16)) + 1}


def test_quantize_refuses_non_finite_and_clips() -> None:
    fp = FixedPoint.for_bits(32, 4, clip=0.5)
    with pytest.raises(MessageError):
        fp.quantize(np.array([0.0, np.nan]), CSPRNG.from_os())
    q = fp.quantize(np.array([3.0, -3.0]), CSPRNG.from_os())
    assert np.allclose(fp.dequantize(q), [0.5, -0.5])


def test_weighted_vector_protects_weight_and_split_divides() -> None:
    a = weighted_vector(np.array([1.0, 2.0]), 5.0, 10.0)
    b = weighted_vector(np.array([3.0, 4.0]), 10.0, 10.0)
    mean, weight = split_weighted(a + b, 10.0)
    assert np.allclose(mean, [(5 * 1 + 10 * 3) / 15, (5 * 2 + 10 * 4) / 15]) and weight == pytest.approx(15.0)
    with pytest.raises(ConfigError):
        weighted_vector(np.array([1.0]), 11.0, 10.0)
    with pytest.raises(MessageError):
        weighted_vector(np.array([1.0]), 0.0, 10.0)


def test_error_bound_formula_covers_worst_case() -> None:
    e, w, clip = 1e-3, 2.0, 1.0
    bound = weighted_mean_error_bound(e, w, clip)
    worst = abs((clip * w + e) / (w - e) - clip)
    assert worst <= bound + 1e-15
    assert weighted_mean_error_bound(1.0, 0.5, 1.0) == math.inf


@pytest.mark.parametrize("bad", [dict(clip=0.0), dict(clip=float("nan")), dict(total_bits=1), dict(frac_bits=40),
                                 dict(max_clients=0)])
def test_construction_is_validated(bad) -> None:
    params = dict(clip=1.0, frac_bits=8, total_bits=32, max_clients=2) | bad
    with pytest.raises(ConfigError):
        FixedPoint(**params)
