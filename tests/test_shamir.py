"""Shamir sharing: known answers (data files), any t reconstruct, t - 1 reveal nothing, fewer than t is an error."""

from __future__ import annotations

import itertools
import json
import secrets
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from protocols import shamir
from protocols.errors import MessageError, ProtocolAbort
from protocols.shamir import (PRIME, InconsistentSharesError, InsufficientSharesError, Share,
                              lagrange_coefficients_at_zero, reconstruct, reconstruct_secret, split,
                              split_with_coefficients)

VECTORS = json.loads((Path(__file__).parent / "vectors" / "shamir_kat.json").read_text())


def test_vectors_use_the_implemented_prime():
    assert int(VECTORS["prime"], 16) == PRIME == 2 ** 521 - 1


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: c["name"])
def test_known_answer_split(case):
    secret = int(case["secret"], 16)
    coefficients = [int(c, 16) for c in case["coefficients"]]
    shares = split_with_coefficients(secret, coefficients, case["xs"])
    assert [s.value for s in shares] == [int(v, 16) for v in case["shares"]]
    assert all(s.threshold == case["threshold"] for s in shares)


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: c["name"])
def test_known_answer_reconstruct_every_t_subset(case):
    t, length = case["threshold"], case["secret_bytes"]
    points = [Share(x, int(v, 16), t) for x, v in zip(case["xs"], case["shares"])]
    expected = int(case["secret"], 16).to_bytes(length, "big")
    subsets = list(itertools.combinations(points, t))[:60]
    for subset in subsets:
        assert reconstruct_secret(subset, length) == expected
    assert reconstruct_secret(points, length, verify=True) == expected


def test_known_answer_wire_format():
    example = VECTORS["share_wire_example"]
    case = next(c for c in VECTORS["cases"] if c["name"] == example["case"])
    share = Share(case["xs"][example["index"]], int(case["shares"][example["index"]], 16), case["threshold"])
    assert share.to_bytes().hex() == example["hex"]
    assert Share.from_bytes(bytes.fromhex(example["hex"])) == share
    assert len(share.to_bytes()) == shamir.SHARE_BYTES


@settings(max_examples=40, deadline=None)
@given(secret=st.binary(min_size=16, max_size=32), n=st.integers(2, 12), data=st.data())
def test_any_t_shares_reconstruct(secret, n, data):
    t = data.draw(st.integers(1, n))
    xs = data.draw(st.lists(st.integers(1, 2 ** 32 - 1), min_size=n, max_size=n, unique=True))
    shares = split(secret, t, xs)
    subset = data.draw(st.permutations(shares)).__getitem__(slice(0, t))
    assert reconstruct_secret(subset, len(secret)) == secret
    assert reconstruct_secret(shares, len(secret), verify=True) == secret


@settings(max_examples=40, deadline=None)
@given(secret=st.binary(min_size=32, max_size=32), other=st.integers(0, 2 ** 256 - 1), n=st.integers(3, 10),
       data=st.data())
def test_any_t_minus_1_shares_are_consistent_with_every_secret(secret, other, n, data):
    """For the observed t - 1 shares and ANY candidate secret s', there is a degree-(t-1) polynomial through (0, s')
    and exactly those shares: we construct its coefficients and re-share s' with them, reproducing the view."""
    t = data.draw(st.integers(2, n))
    xs = list(range(1, n + 1))
    view = data.draw(st.permutations(split(secret, t, xs)))[: t - 1]
    # interpolate through (0, other) and the view: f(x) = sum_i y_i L_i(x); read off coefficients
    points = [(0, other)] + [(s.x, s.value) for s in view]
    coefficients = [0] * t
    for i, (xi, yi) in enumerate(points):
        basis = [1]  # polynomial prod_{j != i} (x - xj) / (xi - xj), low degree first
        denominator = 1
        for j, (xj, _) in enumerate(points):
            if j == i:
                continue
            basis = [(a - xj * b) % PRIME for a, b in zip([0] + basis, basis + [0])]
            denominator = denominator * (xi - xj) % PRIME
        scale = yi * pow(denominator, -1, PRIME) % PRIME
        coefficients = [(c + scale * b) % PRIME for c, b in zip(coefficients, basis)]
    assert coefficients[0] == other
    alternative = split_with_coefficients(other, coefficients[1:], [s.x for s in view]) if view else []
    assert [s.value for s in alternative] == [s.value for s in view]


@settings(max_examples=30, deadline=None)
@given(secret=st.binary(min_size=16, max_size=32), t=st.integers(2, 8), data=st.data())
def test_fewer_than_t_shares_raise_never_a_value(secret, t, data):
    shares = split(secret, t, list(range(1, t + 3)))
    k = data.draw(st.integers(0, t - 1))
    with pytest.raises(InsufficientSharesError):
        reconstruct(shares[:k])
    # duplicates of one point do not count twice
    with pytest.raises(InsufficientSharesError):
        reconstruct([shares[0]] * t)


def test_insufficient_is_a_protocol_abort_and_says_nothing_secret():
    shares = split(b"\x11" * 32, 3, [1, 2, 3])
    with pytest.raises(ProtocolAbort) as info:
        reconstruct(shares[:2])
    assert str(shares[0].value) not in str(info.value) and "1111" not in str(info.value)
    assert str(shares[0].value) not in repr(shares[0])


def test_corrupted_share_detected_with_redundancy():
    shares = split(secrets.token_bytes(32), 3, [1, 2, 3, 4, 5])
    bad = Share(shares[4].x, (shares[4].value + 1) % PRIME, 3)
    with pytest.raises(InconsistentSharesError):
        reconstruct([*shares[:4], bad], verify=True)
    with pytest.raises(InconsistentSharesError):
        reconstruct([shares[0], Share(shares[0].x, (shares[0].value + 1) % PRIME, 3), *shares[1:3]])
    with pytest.raises(InconsistentSharesError):
        reconstruct([shares[0], shares[1], Share(shares[2].x, shares[2].value, 4)])


def test_corrupted_share_usually_fails_length_check():
    """Without redundancy a corrupted share interpolates to a field element that does not fit 32 bytes
    (probability 1 - 2^-265), so reconstruct_secret raises instead of returning a wrong key."""
    shares = split(secrets.token_bytes(32), 2, [1, 2])
    bad = Share(shares[1].x, (shares[1].value + (1 << 400) + 12345) % PRIME, 2)
    with pytest.raises(InconsistentSharesError):
        reconstruct_secret([shares[0], bad], 32)


def test_validation():
    with pytest.raises(MessageError):
        split(b"", 2, [1, 2])
    with pytest.raises(MessageError):
        split(b"x" * 65, 2, [1, 2])
    with pytest.raises(MessageError):
        split(b"x" * 32, 3, [1, 2])
    with pytest.raises(MessageError):
        split(b"x" * 32, 2, [0, 1])
    with pytest.raises(MessageError):
        split(b"x" * 32, 2, [1, 1])
    with pytest.raises(MessageError):
        Share.from_bytes(b"\x00" * 10)
    with pytest.raises(MessageError):
        Share.from_bytes((1).to_bytes(4, "little") + (2).to_bytes(2, "little") + (PRIME).to_bytes(66, "big"))


def test_lagrange_coefficients_sum_to_one():
    # f = constant 1 -> sum lambda_i = 1
    assert sum(lagrange_coefficients_at_zero([3, 7, 11, 19])) % PRIME == 1
