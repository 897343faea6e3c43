"""Slot packing for Paillier: exact round trips, headroom that raises, known answers from plain shifts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.csprng import CSPRNG
from protocols.errors import ConfigError, HeadroomError
from protocols.packing import SlotPacking

KAT = json.loads((Path(__file__).parent / "vectors" / "paillier_kat.json").read_text())


def test_default_layout_is_85_slots_of_24_bits_in_2048_bit_n() -> None:
    packing = SlotPacking.for_modulus(2047, 24, max_clients=10, clip=1.0)
    assert packing.slots == 85
    assert packing.slots * packing.slot_bits < 2047
    # at least ceil(log2(n+1)) headroom bits: n clients' offset values sum below 2^slot_bits
    assert 2 * 10 * packing.offset < 1 << 24
    assert packing.fixed.frac_bits <= 24 - math.ceil(math.log2(11))


@pytest.mark.parametrize("case", KAT["packing"], ids=lambda c: f"{c['slot_bits']}bit")
def test_packing_known_answers(case: dict) -> None:
    fixed_bits = case["slot_bits"]
    packing = SlotPacking.for_modulus(fixed_bits * len(case["values"]) + 1, fixed_bits, 1, 1.0)
    values = np.array(case["values"], dtype=np.uint64)
    ints = packing._to_ints(values)  # the raw layer: these values exceed [0, 2M] on purpose
    assert ints == [int(case["packed"], 16)]
    assert packing.unpack(ints, len(values)).tolist() == case["values"]


@settings(max_examples=40, deadline=None)
@given(n_clients=st.integers(1, 40), slot_bits=st.integers(12, 40), count=st.integers(1, 300),
       data=st.data())
def test_sum_of_packed_clients_unpacks_to_sum_of_slots(n_clients: int, slot_bits: int, count: int, data) -> None:
    if slot_bits - math.ceil(math.log2(n_clients + 1)) < 3:
        with pytest.raises(HeadroomError):
            SlotPacking.for_modulus(2047, slot_bits, n_clients, 1.0)
        return
    packing = SlotPacking.for_modulus(2047, slot_bits, n_clients, 1.0)
    top = 2 * packing.offset
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))  # test data only
    clients = [rng.integers(0, top, count, endpoint=True).astype(np.uint64) for _ in range(n_clients)]
    clients[0][: min(count, 2)] = [top, 0][: min(count, 2)]  # the extremes of the range
    summed = [sum(col) for col in zip(*(packing.pack(c) for c in clients))]
    got = packing.unpack(summed, count)
    assert got.tolist() == [int(v) for v in np.sum(clients, axis=0, dtype=np.uint64)]


def test_decoded_sum_is_within_the_rounding_bound() -> None:
    packing = SlotPacking.for_modulus(2047, 24, max_clients=5, clip=1.0)
    rng = np.random.default_rng(0)  # test data only
    xs = [rng.uniform(-1, 1, 500) for _ in range(5)]
    total = [sum(col) for col in zip(*(packing.pack(packing.encode(x, CSPRNG.from_os())) for x in xs))]
    decoded = packing.decode_sum(packing.unpack(total, 500), 5)
    assert np.max(np.abs(decoded - np.sum(xs, axis=0))) <= packing.sum_error_bound(5)


def test_stochastic_rounding_is_unbiased() -> None:
    packing = SlotPacking.for_modulus(2047, 24, max_clients=2, clip=1.0)
    x = np.full(20_000, 0.3 / packing.fixed.scale)  # 0.3 of one quantum: rounds to 0 or 1
    q = packing.encode(x, CSPRNG.from_os()).astype(np.int64) - packing.offset
    assert set(np.unique(q)) <= {0, 1}
    assert abs(q.mean() - 0.3) < 0.02  # 6+ standard deviations (0.0032)


def test_headroom_overflow_raises() -> None:
    packing = SlotPacking.for_modulus(2047, 24, max_clients=3, clip=1.0)
    with pytest.raises(HeadroomError):  # more clients than the headroom was sized for
        packing.decode_sum(np.zeros(4, dtype=np.uint64), 4)
    with pytest.raises(HeadroomError):  # a value that would carry into its neighbour
        packing.pack(np.array([2 * packing.offset + 1], dtype=np.uint64))
    with pytest.raises(HeadroomError):  # a slot sum no honest inputs reach
        packing.decode_sum(np.array([2 * 2 * packing.offset + 1], dtype=np.uint64), 2)
    with pytest.raises(HeadroomError):  # a plaintext wider than its slots
        packing.unpack([1 << (packing.slots * packing.slot_bits)], packing.slots)
    with pytest.raises(HeadroomError):  # no value bits left for a million clients in 24-bit slots
        SlotPacking.for_modulus(2047, 24, max_clients=1 << 22, clip=1.0)


def test_at_the_headroom_bound_the_extreme_sum_still_decodes() -> None:
    n = 7
    packing = SlotPacking.for_modulus(2047, 16, max_clients=n, clip=1.0)
    ones = np.full(3, 1.0)
    plain = [packing.pack(packing.encode(ones * sign, CSPRNG.from_os())) for sign in (1.0,) * n]
    total = [sum(col) for col in zip(*plain)]
    assert np.allclose(packing.decode_sum(packing.unpack(total, 3), n), n * ones)


def test_bad_slot_bits_refused() -> None:
    with pytest.raises(ConfigError):
        SlotPacking.for_modulus(2047, 4, 2, 1.0)
    with pytest.raises(ConfigError):
        SlotPacking.for_modulus(2047, 64, 2, 1.0)
