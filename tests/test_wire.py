"""Strict message codec: round trips, and every kind of malformation raises the project's error."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.errors import MessageError, StaleMessageError
from protocols.wire import FieldSpec, Message, MessageSpec, decode, encode

SPEC = MessageSpec("update", {
    "vector": FieldSpec("array", dtype="float32", length=4),
    "weight": FieldSpec("float", min_value=0.0),
    "blob": FieldSpec("bytes", max_length=64),
    "names": FieldSpec("list", max_length=3),
    "note": FieldSpec("str", max_length=20),
    "count": FieldSpec("int", min_value=0, max_value=10),
})


def _message(**overrides):
    fields = {"vector": np.arange(4, dtype=np.float32), "weight": 2.5, "blob": b"abc", "names": [b"x", b"yz"],
              "note": "héllo", "count": 3}
    fields.update(overrides)
    return Message("proto", "update", 9, 4, fields)


def test_round_trip() -> None:
    decoded = decode(encode(_message()), SPEC, protocol="proto", round_id=9, sender=4)
    assert decoded.kind == "update" and decoded.round_id == 9 and decoded.sender == 4
    np.testing.assert_array_equal(decoded["vector"], np.arange(4, dtype=np.float32))
    assert decoded["weight"] == 2.5 and decoded["blob"] == b"abc" and decoded["names"] == [b"x", b"yz"]
    assert decoded["note"] == "héllo" and decoded["count"] == 3


@pytest.mark.parametrize("overrides, match", [
    ({"vector": np.arange(5, dtype=np.float32)}, "length"),
    ({"vector": np.arange(4, dtype=np.float64)}, "dtype"),
    ({"vector": np.array([0, np.nan, 0, 0], dtype=np.float32)}, "NaN"),
    ({"weight": float("inf")}, "non-finite"),
    ({"weight": -1.0}, "below"),
    ({"count": 11}, "above"),
    ({"blob": b"x" * 65}, "exceeds"),
    ({"names": [b"a"] * 4}, "exceeds"),
    ({"weight": 3}, "type tag"),
])
def test_invalid_fields_raise(overrides, match) -> None:
    with pytest.raises(MessageError, match=match):
        decode(encode(_message(**overrides)), SPEC, protocol="proto", round_id=9, sender=4)


def test_wrong_round_protocol_sender_are_stale() -> None:
    data = encode(_message())
    for kwargs in ({"round_id": 10}, {"protocol": "other"}):
        with pytest.raises(StaleMessageError):
            decode(data, SPEC, **{"protocol": "proto", "round_id": 9, **kwargs})
    with pytest.raises(StaleMessageError):
        decode(data, SPEC, protocol="proto", round_id=9, sender=5)


def test_missing_extra_and_unknown_kind() -> None:
    fields = dict(_message().fields)
    del fields["note"]
    with pytest.raises(MessageError):
        decode(encode(Message("proto", "update", 9, 4, fields)), SPEC, protocol="proto", round_id=9)
    with pytest.raises(MessageError, match="unexpected message kind"):
        decode(encode(Message("proto", "other", 9, 4, {})), SPEC, protocol="proto", round_id=9)


def test_trailing_and_oversized() -> None:
    data = encode(_message())
    with pytest.raises(MessageError, match="trailing"):
        decode(data + b"\x00", SPEC, protocol="proto", round_id=9)
    small = MessageSpec("update", SPEC.fields, max_bytes=len(data) - 1)
    with pytest.raises(MessageError, match="exceeds"):
        decode(data, small, protocol="proto", round_id=9)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_message_error(data: bytes) -> None:
    with pytest.raises(MessageError):
        decode(data, SPEC, protocol="proto", round_id=9)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=0, max_value=255))
def test_single_byte_corruption_never_escapes(position: int, value: int) -> None:
    data = bytearray(encode(_message()))
    data[position % len(data)] = value
    try:
        decode(bytes(data), SPEC, protocol="proto", round_id=9, sender=4)
    except MessageError:
        pass


def test_inspect_reads_any_message_without_a_schema() -> None:
    from protocols.wire import inspect

    seen = inspect(encode(_message(vector=np.array([1, 2, 3, 4], dtype=np.float32))))
    assert seen.kind == "update" and seen["vector"].dtype == np.float32 and seen["names"] == [b"x", b"yz"]
    ring = inspect(encode(Message("p", "masked", 1, 2, {"y": np.arange(3, dtype=np.uint32)})))
    assert ring["y"].dtype == np.uint32
    with pytest.raises(MessageError):
        inspect(encode(_message())[:-2])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_inspect_random_bytes_only_raise_message_error(data: bytes) -> None:
    from protocols.wire import inspect

    with pytest.raises(MessageError):
        inspect(data)
