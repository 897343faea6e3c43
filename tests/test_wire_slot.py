"""A message built in place (:class:`protocols.wire.ArraySlot`) is the message :func:`encode` makes, and receivers
read its read-only memoryview exactly as bytes.

The masked SecAgg upload is quantised and masked straight into its reply's bytes, so the slot must change nothing a
receiver can tell: the same bytes for the same fields (for every dtype, length and preceding field), the same checks,
no way for the receiver to write into it, and no second use of the sender's handle.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.errors import MessageError
from protocols.wire import ArraySlot, FieldSpec, Message, MessageSpec, decode, encode, inspect, peek_header

_DTYPES = ["uint8", "uint16", "uint32", "uint64", "int32", "int64", "float32", "float64"]


def _filled(slot: ArraySlot, values: np.ndarray) -> bytes | memoryview:
    slot.words[...] = values
    return slot.seal()


@settings(max_examples=120, deadline=None)
@given(dtype=st.sampled_from(_DTYPES), length=st.integers(1, 300), pad=st.text(max_size=9),
       kind=st.text(min_size=1, max_size=12), round_id=st.integers(0, 2 ** 63 - 1), in_place=st.booleans(),
       data=st.data())
def test_slot_is_byte_for_byte_the_encoded_message(dtype, length, pad, kind, round_id, in_place, data) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ArraySlot, "_IN_PLACE", in_place)  # False: the big-endian path, tested on any host
        _check_slot(dtype, length, pad, kind, round_id, in_place, data)


def _check_slot(dtype, length, pad, kind, round_id, in_place, data) -> None:
    raw = data.draw(st.binary(min_size=length * np.dtype(dtype).itemsize, max_size=length * np.dtype(dtype).itemsize))
    values = np.frombuffer(raw, dtype=dtype).copy()
    slot = ArraySlot(Message("p", kind, round_id, 4, {"pad": pad}), "y", dtype, length)
    assert slot.words.dtype == np.dtype(dtype) and slot.words.shape == (length,) and slot.words.flags.writeable
    if in_place:
        assert slot.words.ctypes.data % 64 == 0  # the words start a cache line whatever precedes them
    sealed = _filled(slot, values)
    assert bytes(sealed) == encode(Message("p", kind, round_id, 4, {"pad": pad, "y": values}))
    if in_place:
        assert isinstance(sealed, memoryview) and sealed.readonly


def test_receivers_read_a_sealed_view_as_bytes() -> None:
    spec = MessageSpec("m", {"pad": FieldSpec("str", max_length=8), "y": FieldSpec("array", dtype="uint32", length=5,
                                                                                   copy=False)})
    sealed = _filled(ArraySlot(Message("p", "m", 3, 1, {"pad": "ab"}), "y", "uint32", 5), np.arange(5))
    message = decode(sealed, spec, protocol="p", round_id=3, sender=1)
    assert message["pad"] == "ab" and list(message["y"]) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError):
        message["y"][0] = 9  # the receiver cannot write into the sender's buffer
    assert peek_header(sealed) == ("p", "m", 3, 1)
    assert isinstance(inspect(sealed)["pad"], str)
    with pytest.raises(MessageError, match="truncated"):
        decode(sealed[:-1], spec, protocol="p", round_id=3)


def test_a_writable_view_is_read_only_to_the_receiver_and_a_bytearray_is_copied() -> None:
    spec = MessageSpec("m", {"y": FieldSpec("array", dtype="uint32", length=3, copy=False)})
    payload = bytearray(encode(Message("p", "m", 3, 1, {"y": np.array([7, 8, 9], dtype=np.uint32)})))
    from_view = decode(memoryview(payload), spec, protocol="p", round_id=3)["y"]
    from_array = decode(payload, spec, protocol="p", round_id=3)["y"]
    assert not from_view.flags.writeable and not from_array.flags.writeable
    payload[-4:] = b"\0\0\0\0"  # the owner changes its buffer after handing it over
    assert list(from_array) == [7, 8, 9]  # a bytearray was copied when received


def test_a_view_of_any_shape_or_format_is_read_as_its_bytes() -> None:
    spec = MessageSpec("m", {"y": FieldSpec("array", dtype="uint32", length=4)})
    payload = encode(Message("p", "m", 3, 1, {"y": np.arange(4, dtype=np.uint32)}))
    padded = payload + bytes(4 + -len(payload) % 4)  # whole words: the same bytes viewed as 2-d or as ints
    for view in (memoryview(padded).cast("B", (2, len(padded) // 2)), memoryview(padded).cast("I")):
        with pytest.raises(MessageError, match="trailing"):  # all of the view's bytes are read, padding included
            decode(view, spec, protocol="p", round_id=3)
        assert peek_header(view) == ("p", "m", 3, 1)
    exact = memoryview(payload).cast("B", (1, len(payload)))
    assert list(decode(exact, spec, protocol="p", round_id=3)["y"]) == [0, 1, 2, 3]


@pytest.mark.parametrize("bad", [memoryview(bytes(64))[::2], 3, "PFDW", None, [b"PFDW"]])
def test_anything_but_contiguous_bytes_is_refused(bad) -> None:
    spec = MessageSpec("m", {"y": FieldSpec("int")})
    with pytest.raises(MessageError, match="bytes"):
        decode(bad, spec, protocol="p", round_id=3)


def test_slot_is_sealed_once_and_validated_at_construction() -> None:
    slot = ArraySlot(Message("p", "m", 3, 1, {}), "y", "uint32", 2)
    slot.seal()
    assert slot.words is None  # the sender's handle on the message's bytes ends at seal
    with pytest.raises(MessageError, match="already sealed"):
        slot.seal()
    for args, match in [(("y", "complex64", 2), "dtype"), (("y", "uint32", 0), "length"),
                        (("y", "uint32", True), "length"), (("x", "uint32", 2), "both")]:
        with pytest.raises(MessageError, match=match):
            ArraySlot(Message("p", "m", 3, 1, {"x": 1}), *args)
