"""Array fields declared ``copy=False`` decode to read-only views over the message, validated exactly as copies.

The masked SecAgg upload is the largest message privfed sends; the server only adds it into its sum, so decoding it
without a copy saves a pass over the vector. The view must change nothing else: the same values, the same checks
(dtype, shape, length, truncation, trailing bytes), and no way to write through it into the message.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.errors import MessageError
from protocols.wire import FieldSpec, Message, MessageSpec, decode, encode

_DTYPES = ["uint8", "uint16", "uint32", "uint64", "int32", "int64", "float32", "float64"]


def _specs(dtype: str, length: int) -> tuple[MessageSpec, MessageSpec]:
    return (MessageSpec("m", {"pad": FieldSpec("str", max_length=64), "y": FieldSpec("array", dtype=dtype,
                                                                                     length=length)}),
            MessageSpec("m", {"pad": FieldSpec("str", max_length=64), "y": FieldSpec("array", dtype=dtype,
                                                                                     length=length, copy=False)}))


@settings(max_examples=80, deadline=None)
@given(dtype=st.sampled_from(_DTYPES), length=st.integers(0, 300), pad=st.text(max_size=9), data=st.data())
def test_view_decodes_the_same_values_read_only(dtype: str, length: int, pad: str, data) -> None:
    raw = data.draw(st.binary(min_size=length * np.dtype(dtype).itemsize, max_size=length * np.dtype(dtype).itemsize))
    y = np.frombuffer(raw, dtype=dtype).copy()
    if y.dtype.kind == "f":
        y[~np.isfinite(y)] = 0.5
    payload = encode(Message("p", "m", 3, 1, {"pad": pad, "y": y}))  # odd pads leave the array unaligned
    copying, viewing = _specs(dtype, length)
    copied = decode(payload, copying, protocol="p", round_id=3)["y"]
    viewed = decode(payload, viewing, protocol="p", round_id=3)["y"]
    assert copied.dtype == viewed.dtype == np.dtype(dtype) and viewed.shape == (length,)
    assert np.array_equal(copied.view(np.uint8), viewed.view(np.uint8))
    assert copied.flags.writeable and not viewed.flags.writeable
    if length:
        with pytest.raises(ValueError):
            viewed[0] = 1  # never written through into the received message


@pytest.mark.parametrize("dtype", ["uint32", "uint64"])
def test_view_keeps_every_check(dtype: str) -> None:
    _, spec = _specs(dtype, 5)
    good = encode(Message("p", "m", 3, 1, {"pad": "x", "y": np.arange(5, dtype=dtype)}))
    assert list(decode(good, spec, protocol="p", round_id=3)["y"]) == [0, 1, 2, 3, 4]
    bad = [good[:-1], good + b"\0",
           encode(Message("p", "m", 3, 1, {"pad": "x", "y": np.arange(4, dtype=dtype)})),
           encode(Message("p", "m", 3, 1, {"pad": "x", "y": np.arange(6, dtype=dtype)})),
           encode(Message("p", "m", 3, 1, {"pad": "x", "y": np.arange(5, dtype="int64")})),
           encode(Message("p", "m", 3, 1, {"pad": "x", "y": np.arange(5, dtype=dtype).reshape(1, 5)}))]
    for payload in bad:
        with pytest.raises(MessageError):
            decode(payload, spec, protocol="p", round_id=3)


def test_copy_false_is_for_arrays_only() -> None:
    with pytest.raises(ValueError):
        FieldSpec("bytes", copy=False)
