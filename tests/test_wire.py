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


# -- strict structure (issue 12, case 10): ndim and shape, item lengths --------------------------------------------

@pytest.mark.parametrize("array, match", [
    (np.arange(4, dtype=np.float32).reshape(1, 4), r"'vector': shape \(1, 4\), expected \(4,\)"),
    (np.arange(4, dtype=np.float32).reshape(4, 1), r"'vector': shape \(4, 1\), expected \(4,\)"),
    (np.arange(4, dtype=np.float32).reshape(2, 2), r"'vector': shape \(2, 2\), expected \(4,\)"),
    (np.arange(3, dtype=np.float32), r"'vector': length 3, expected 4"),
    (np.arange(4, dtype=np.float64), r"'vector': dtype float64, expected float32"),
])
def test_reshaped_or_retyped_array_names_the_field_and_expected_shape(array, match) -> None:
    with pytest.raises(MessageError, match=match):
        decode(encode(_message(vector=array)), SPEC, protocol="proto", round_id=9, sender=4)


def test_unbounded_one_dimensional_array_still_refuses_a_second_axis() -> None:
    spec = MessageSpec("ids", {"ids": FieldSpec("array", dtype="int64", max_length=8)})
    ok = decode(encode(Message("p", "ids", 1, 2, {"ids": np.arange(5)})), spec, protocol="p", round_id=1)
    assert ok["ids"].shape == (5,)
    with pytest.raises(MessageError, match=r"shape \(1, 5\), expected \(any,\)"):
        decode(encode(Message("p", "ids", 1, 2, {"ids": np.arange(5).reshape(1, 5)})), spec, protocol="p",
               round_id=1)


def test_declared_multi_axis_shape_is_exact_per_axis() -> None:
    spec = MessageSpec("m", {"grid": FieldSpec("array", dtype="uint8", shape=(None, 3))})
    assert decode(encode(Message("p", "m", 1, 2, {"grid": np.zeros((2, 3), np.uint8)})), spec, protocol="p",
                  round_id=1)["grid"].shape == (2, 3)
    for bad in (np.zeros((2, 4), np.uint8), np.zeros(6, np.uint8), np.zeros((1, 2, 3), np.uint8)):
        with pytest.raises(MessageError, match=r"'grid': shape .* expected \(any, 3\)"):
            decode(encode(Message("p", "m", 1, 2, {"grid": bad})), spec, protocol="p", round_id=1)


def test_with_lengths_fixes_the_single_axis() -> None:
    spec = MessageSpec("m", {"v": FieldSpec("array", dtype="float32")}).with_lengths(v=3)
    assert spec.fields["v"].length == 3 and spec.fields["v"].expected_shape() == "(3,)"
    with pytest.raises(MessageError, match=r"'v': length 4, expected 3"):
        decode(encode(Message("p", "m", 1, 2, {"v": np.zeros(4, np.float32)})), spec, protocol="p", round_id=1)


def test_list_item_lengths_are_checked() -> None:
    spec = MessageSpec("m", {"keys": FieldSpec("list", max_length=4, item_length=3),
                             "blobs": FieldSpec("list", item_max_length=2)})
    good = decode(encode(Message("p", "m", 1, 2, {"keys": [b"abc", b"def"], "blobs": [b"", b"zz"]})), spec,
                  protocol="p", round_id=1)
    assert good["keys"] == [b"abc", b"def"]
    with pytest.raises(MessageError, match=r"'keys': item 1 has 4 bytes, expected 3"):
        decode(encode(Message("p", "m", 1, 2, {"keys": [b"abc", b"defg"], "blobs": []})), spec, protocol="p",
               round_id=1)
    with pytest.raises(MessageError, match=r"'blobs': item 0 has 3 bytes, more than 2"):
        decode(encode(Message("p", "m", 1, 2, {"keys": [], "blobs": [b"zzz"]})), spec, protocol="p", round_id=1)


@pytest.mark.parametrize("kwargs", [
    {"type": "bytes", "shape": (3,)},
    {"type": "array", "dtype": "float32", "shape": ()},
    {"type": "array", "dtype": "float32", "shape": (1, 1, 1, 1, 1)},
    {"type": "array", "dtype": "float32", "shape": (-1,)},
    {"type": "bytes", "item_length": 3},
    {"type": "list", "length": -1},
])
def test_field_specs_are_validated_at_construction(kwargs) -> None:
    with pytest.raises(ValueError):
        FieldSpec(**kwargs)


def test_encode_refuses_zero_dimensional_arrays() -> None:
    with pytest.raises(MessageError, match="ndim 0"):
        encode(Message("p", "m", 1, 2, {"x": np.array(1.0, dtype=np.float32)}))


def test_inspect_keeps_any_shape() -> None:
    from protocols.wire import inspect

    seen = inspect(encode(Message("p", "m", 1, 2, {"g": np.zeros((2, 3), np.float32)})))
    assert seen["g"].shape == (2, 3)


@pytest.mark.parametrize("kind, fields, max_bytes", [
    ("", {}, 10),
    ("k", {"": FieldSpec("int")}, 10),
    ("k", {"x": "int"}, 10),
    ("k", {}, 0),
])
def test_message_specs_are_validated_at_construction(kind, fields, max_bytes) -> None:
    with pytest.raises(ValueError):
        MessageSpec(kind, fields, max_bytes)


@settings(max_examples=300, deadline=None)
@given(items=st.lists(st.binary(max_size=6), max_size=5), exact=st.integers(0, 5),
       most=st.one_of(st.none(), st.integers(0, 6)), cut=st.integers(0, 80), as_view=st.booleans())
def test_fixed_length_lists_decode_exactly_or_raise(items, exact, most, cut, as_view) -> None:
    """The fixed-item-length fast path: every item of the declared length comes back byte for byte; a wrong
    length names the first offending item; a message cut anywhere raises — never a short or shifted item."""
    spec = MessageSpec("m", {"keys": FieldSpec("list", max_length=5, item_length=exact, item_max_length=most),
                             "tail": FieldSpec("int")})
    raw = encode(Message("p", "m", 1, 2, {"keys": items, "tail": 7}))
    data = raw if cut == 0 else raw[:-cut]
    data = memoryview(data) if as_view else data
    wrong = next((i for i, item in enumerate(items)
                  if len(item) != exact or (most is not None and len(item) > most)), None)
    if cut == 0 and wrong is None:
        got = decode(data, spec, protocol="p", round_id=1)
        assert got["keys"] == items and all(type(k) is bytes for k in got["keys"]) and got["tail"] == 7
        return
    with pytest.raises(MessageError) as caught:
        decode(data, spec, protocol="p", round_id=1)
    if wrong is not None and cut == 0:
        n = len(items[wrong])
        reason = f"expected {exact}" if n != exact else f"more than {most}"
        assert f"item {wrong} has {n} bytes, {reason}" in str(caught.value)
