"""PSI for vertical FL: RFC 9380 known answers, exactly the shared ids (property test), strict element checks."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from protocols.errors import ConfigError, MessageError
from protocols.psi import PSIParty, hash_to_curve, hash_to_field

VECTORS = json.loads((pathlib.Path(__file__).parent / "vectors" / "h2c_p256_kat.json").read_text())


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: repr(v["msg"]))
def test_hash_to_curve_matches_rfc9380(vector: dict[str, str]) -> None:
    dst = VECTORS["dst"].encode()
    u0, u1 = hash_to_field(vector["msg"].encode(), 2, dst)
    assert (u0, u1) == (int(vector["u0"], 16), int(vector["u1"], 16))
    assert hash_to_curve(vector["msg"].encode(), dst) == (int(vector["x"], 16), int(vector["y"], 16))


def _run(a_ids: list[str], b_ids: list[str]) -> tuple[list[str], list[str]]:
    a, b = PSIParty(a_ids), PSIParty(b_ids)
    a_masked, b_masked = a.masked_own(), b.masked_own()
    return (a.intersection(b.remask(a_masked), a.remask(b_masked)),
            b.intersection(a.remask(b_masked), b.remask(a_masked)))


ids = st.sets(st.text(min_size=1, max_size=6), min_size=1, max_size=12)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ids, ids)
def test_psi_finds_exactly_the_shared_ids(a: set[str], b: set[str]) -> None:
    got_a, got_b = _run(sorted(a), sorted(b))
    assert got_a == got_b == sorted(a & b)


def test_masked_values_do_not_repeat_the_ids_and_differ_per_session() -> None:
    first, second = PSIParty(["alice", "bob"]).masked_own(), PSIParty(["alice", "bob"]).masked_own()
    assert first.shape == (2, 32)
    assert not set(map(bytes, first)) & set(map(bytes, second))  # fresh scalar per session


def test_bad_elements_are_message_errors() -> None:
    party = PSIParty(["a", "b"])
    with pytest.raises(MessageError, match="not a point"):
        party.remask(np.full((1, 32), 0xFF, dtype=np.uint8))
    with pytest.raises(MessageError, match="repeated"):
        row = party.masked_own()[:1]
        party.remask(np.vstack([row, row]))
    with pytest.raises(MessageError, match="shape"):
        party.remask(np.zeros((2, 31), dtype=np.uint8))
    with pytest.raises(MessageError, match="expected 2"):
        party.intersection(party.masked_own()[:1], party.masked_own())
    with pytest.raises(ConfigError, match="repeated ids"):
        PSIParty(["a", "a"])
