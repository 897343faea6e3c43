"""Typed, versioned protocol messages and their strict byte codec.

Threat model: this module hides nothing; it is the validation boundary. Every byte a party receives passes through
:func:`decode`, which checks magic, wire version, protocol name, message kind, round id, sender, the exact set of
fields, each field's type, dtype, shape/length, finiteness and the total size, and raises
:class:`~protocols.errors.MessageError` (or :class:`~protocols.errors.StaleMessageError` for a well-formed message
of another round, protocol or sender) for anything else. No other exception type escapes (the contract test suite
fuzzes this with random and mutated messages, and with structure-aware mutations that keep the bytes decodable:
arrays reshaped, dtypes swapped, lengths off by one, fields dropped or repeated, kinds of other phases).

Every field's structure is part of its :class:`FieldSpec`, so a message that decodes has exactly the shape its
consumer indexes: arrays are one-dimensional unless ``shape`` says otherwise (and then have exactly that many axes,
each of the stated size), with the stated dtype and element count; bytes and lists have their stated length (or at
most ``max_length``), and each item of a list its ``item_length`` (or at most ``item_max_length``). A protocol never
has to reshape, re-check a dtype or guard against a broadcast: a (1, n) array where (n,) is expected is a
:class:`~protocols.errors.MessageError` naming the field, its shape and the expected one. Decoded arrays are
fresh writable copies, except for fields declared ``copy=False`` (large uploads a consumer only reads, such as a
masked vector): those come back as read-only views over the validated message bytes, after the same checks.

A message is ``bytes``, or a read-only ``memoryview`` that a sender built in place with :class:`ArraySlot` (the
same bytes, without copying a large array into them); receivers read both alike (a ``bytearray`` is copied first,
since its owner could still change it).

Layout (all integers little-endian)::

    b"PFDW" | u8 wire version | str8 protocol | str8 kind | u64 round | i64 sender | u16 n_fields | fields
    field  = str8 name | u8 tag | payload
    tags   b bytes (u64 len + data)    i int64    f float64    s str (u32 len + utf-8)
           a array (u8 dtype, u8 ndim, u64 dims..., raw)       l list of bytes (u32 count, each u64 len + data)
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import numpy as np

from .errors import MessageError, StaleMessageError

__all__ = [
    "WIRE_VERSION",
    "DEFAULT_MAX_BYTES",
    "FieldSpec",
    "MessageSpec",
    "Message",
    "encode",
    "ArraySlot",
    "decode",
    "peek_header",
    "inspect",
]

MAGIC = b"PFDW"
WIRE_VERSION = 1
DEFAULT_MAX_BYTES = 1 << 30  # 1 GiB: far above any legitimate message for 10M parameters

_DTYPES: tuple[str, ...] = ("float32", "float64", "uint8", "uint16", "uint32", "uint64", "int32", "int64")
_DTYPE_CODE = {name: i for i, name in enumerate(_DTYPES)}
_NATIVE_DTYPE = {name: np.dtype(name) for name in _DTYPES}
_WIRE_DTYPE = {name: dtype.newbyteorder("<") for name, dtype in _NATIVE_DTYPE.items()}  # little-endian, as sent
_CODE_OF_NATIVE = {dtype: _DTYPE_CODE[name] for name, dtype in _NATIVE_DTYPE.items()}  # dtype.name is slow
_TAGS = {"bytes": b"b", "int": b"i", "float": b"f", "str": b"s", "array": b"a", "list": b"l"}
_TAG_CODE = {kind: tag[0] for kind, tag in _TAGS.items()}  # the tag as the byte value a reader indexes
_MAX_NDIM = 4
_MAX_NAME = 255


@dataclass(frozen=True)
class FieldSpec:
    """What one field must be, checked at decode.

    ``length`` is the exact element count (arrays, lists), byte length (bytes) or utf-8 length (str);
    ``max_length`` an upper bound on it. Arrays have exactly ``len(shape)`` axes (default: one axis), each of the
    given size where an entry is an int (``None``: any size, still bounded by ``length``/``max_length``), and the
    exact ``dtype``. List items (bytes) have exactly ``item_length`` bytes, or at most ``item_max_length``.
    """

    type: str
    dtype: str | None = None
    length: int | None = None
    max_length: int | None = None
    finite: bool = True
    min_value: float | None = None
    max_value: float | None = None
    shape: tuple[int | None, ...] | None = None
    item_length: int | None = None
    item_max_length: int | None = None
    copy: bool = True  # arrays: False returns a read-only view over the message bytes (validated the same way)

    def __post_init__(self) -> None:
        if self.type not in _TAGS:
            raise ValueError(f"unknown field type {self.type!r}")
        if self.type == "array" and self.dtype not in _DTYPE_CODE:
            raise ValueError(f"array field needs a dtype from {_DTYPES}")
        for name in ("length", "max_length", "item_length", "item_max_length"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        if self.shape is not None:
            if self.type != "array":
                raise ValueError("shape applies to array fields only")
            if not 1 <= len(self.shape) <= _MAX_NDIM or any(
                    d is not None and (not isinstance(d, int) or d < 0) for d in self.shape):
                raise ValueError(f"shape must have 1..{_MAX_NDIM} axes of int >= 0 or None, got {self.shape!r}")
        if (self.item_length is not None or self.item_max_length is not None) and self.type != "list":
            raise ValueError("item lengths apply to list fields only")
        if not self.copy and self.type != "array":
            raise ValueError("copy=False applies to array fields only")

    @property
    def ndim(self) -> int:
        """Axes an array field must have (1 unless ``shape`` says otherwise)."""
        return len(self.shape) if self.shape is not None else 1

    def expected_shape(self) -> str:
        """The expected array shape as text for error messages, e.g. ``(300,)`` or ``(any, 4)``."""
        dims = self.shape if self.shape is not None else (self.length,)
        text = ", ".join("any" if d is None else str(d) for d in dims)
        return f"({text},)" if len(dims) == 1 else f"({text})"


@dataclass(frozen=True)
class MessageSpec:
    """The schema of one message kind: its exact field names and their specs."""

    kind: str
    fields: Mapping[str, FieldSpec]
    max_bytes: int = DEFAULT_MAX_BYTES

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or not 0 < len(self.kind.encode("utf-8")) <= _MAX_NAME:
            raise ValueError(f"message kind must be a non-empty name of at most {_MAX_NAME} bytes")
        for name, spec in self.fields.items():
            if not isinstance(name, str) or not 0 < len(name.encode("utf-8")) <= _MAX_NAME:
                raise ValueError(f"{self.kind}: field names must be non-empty and at most {_MAX_NAME} bytes")
            if not isinstance(spec, FieldSpec):
                raise ValueError(f"{self.kind}: field {name!r} needs a FieldSpec, got {type(spec).__name__}")
        if not isinstance(self.max_bytes, int) or self.max_bytes < 1:
            raise ValueError(f"{self.kind}: max_bytes must be a positive int")

    def with_lengths(self, **lengths: int) -> "MessageSpec":
        """The same spec with exact lengths fixed for the named fields (known once the round's size is known)."""
        updated = dict(self.fields)
        for name, length in lengths.items():
            base = updated[name]
            shape = base.shape
            if shape is not None and len(shape) == 1:
                shape = (length,)
            updated[name] = replace(base, length=length, shape=shape)
        return MessageSpec(self.kind, updated, self.max_bytes)


@dataclass(frozen=True)
class Message:
    """A decoded message. ``fields`` values are bytes, int, float, str, numpy arrays or lists of bytes."""

    protocol: str
    kind: str
    round_id: int
    sender: int
    fields: Mapping[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        return self.fields[name]


def _str8(value: str) -> bytes:
    raw = value.encode("utf-8")
    if len(raw) > _MAX_NAME:
        raise MessageError("name too long to encode")
    return struct.pack("<B", len(raw)) + raw


def encode(message: Message) -> bytes:
    """Serialise a message. Refuses values it could not decode again (so a sender cannot emit garbage by mistake)."""
    return b"".join(_encode_parts(message, len(message.fields)))


def _encode_parts(message: Message, n_fields: int) -> list[bytes | memoryview]:
    parts: list[bytes | memoryview] = [
        MAGIC, struct.pack("<B", WIRE_VERSION), _str8(message.protocol), _str8(message.kind),
        struct.pack("<Qq", message.round_id, message.sender), struct.pack("<H", n_fields)]
    for name, value in message.fields.items():
        parts.append(_str8(name))
        parts.extend(_encode_value(name, value))
    return parts


_SLOT_ALIGN = 64  # the slot's first word starts a cache line (any SIMD load is aligned)


class ArraySlot:
    """A message whose last field, a 1-d array, the sender writes in place instead of handing it to :func:`encode`.

    ``ArraySlot(message, name, dtype, length)`` lays out ``message`` followed by the field ``name`` holding
    ``length`` words of ``dtype``; :attr:`words` is a writable native array over those words (aligned to a cache
    line). The sender fills it and calls :meth:`seal`, which returns the message: the very bytes :func:`encode`
    would produce from the same fields, as a read-only memoryview over the slot's own buffer (``bytes`` on a
    big-endian host, where the words are byte-swapped into it). This saves the copy of a large array into the
    message — at model size, the masked upload's largest cost after its masks. After :meth:`seal` the sender must
    not write :attr:`words` again (they *are* the message; the slot refuses a second seal). The words start
    undefined, not zeroed: the sender writes every one of them before sealing.
    """

    _IN_PLACE = np.little_endian  # native words are the wire's little-endian words

    def __init__(self, message: Message, name: str, dtype: str, length: int) -> None:
        if dtype not in _DTYPE_CODE:
            raise MessageError(f"field {name!r}: unsupported array dtype {dtype}")
        if name in message.fields:
            raise MessageError(f"field {name!r} is both a value and the slot")
        if isinstance(length, bool) or not isinstance(length, int) or length < 1:
            raise MessageError(f"field {name!r}: slot length must be a positive int, got {length!r}")
        native = np.dtype(dtype)
        head = b"".join(_encode_parts(message, len(message.fields) + 1) + [
            _str8(name), _TAGS["array"], struct.pack("<BBQ", _DTYPE_CODE[dtype], 1, length)])
        self._size = len(head) + length * native.itemsize
        # not zeroed (zeroing a model-sized buffer cost as much as quantising into it): every word is the sender's
        # to write, and the header is written here; bytes outside [start, start + size) never leave the slot
        self._buffer = np.empty(self._size + _SLOT_ALIGN, dtype=np.uint8)
        self._start = (-(self._buffer.ctypes.data + len(head))) % _SLOT_ALIGN
        self._buffer[self._start:self._start + len(head)] = np.frombuffer(head, dtype=np.uint8)
        self._in_place = self._IN_PLACE or native.itemsize == 1
        offset = self._start + len(head)
        self.words = (np.frombuffer(self._buffer, dtype=native, count=length, offset=offset) if self._in_place
                      else np.empty(length, dtype=native))
        self._offset, self._sealed = offset, False

    def seal(self) -> bytes | memoryview:
        """The finished message (see the class docstring); the slot is spent."""
        if self._sealed:
            raise MessageError("this message slot was already sealed")
        self._sealed = True
        if not self._in_place:  # big-endian host: the wire's little-endian words, written once
            view = np.frombuffer(self._buffer, dtype=self.words.dtype.newbyteorder("<"), count=self.words.size,
                                 offset=self._offset)
            view[...] = self.words
            message = self._buffer[self._start:self._start + self._size].tobytes()
        else:
            message = memoryview(self._buffer)[self._start:self._start + self._size].toreadonly()
        self.words = None  # type: ignore[assignment] - the sender's handle on the message's bytes ends here
        return message


def _encode_value(name: str, value: Any) -> list[bytes]:
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        return [_TAGS["bytes"], struct.pack("<Q", len(raw)), raw]
    if isinstance(value, (bool, np.bool_)):
        raise MessageError(f"field {name!r}: booleans are sent as int")
    if isinstance(value, (int, np.integer)):
        return [_TAGS["int"], struct.pack("<q", int(value))]
    if isinstance(value, (float, np.floating)):
        return [_TAGS["float"], struct.pack("<d", float(value))]
    if isinstance(value, str):
        raw = value.encode("utf-8")
        return [_TAGS["str"], struct.pack("<I", len(raw)), raw]
    if isinstance(value, np.ndarray):
        code = _CODE_OF_NATIVE.get(value.dtype)
        if code is None:  # another byte order of a supported type, or an unsupported one
            code = _DTYPE_CODE.get(value.dtype.name)
        if code is None or not 1 <= value.ndim <= _MAX_NDIM:
            raise MessageError(f"field {name!r}: unsupported array dtype {value.dtype.name} or ndim {value.ndim}")
        arr = np.ascontiguousarray(value, dtype=_WIRE_DTYPE[_DTYPES[code]])
        header = struct.pack("<BB", code, arr.ndim) + struct.pack(f"<{arr.ndim}Q", *arr.shape)
        # the array's own buffer: encode's single join copies it once into the message
        return [_TAGS["array"], header, memoryview(arr).cast("B") if arr.size else b""]
    if isinstance(value, (list, tuple)):
        out = [_TAGS["list"], struct.pack("<I", len(value))]
        for item in value:
            if not isinstance(item, (bytes, bytearray)):
                raise MessageError(f"field {name!r}: lists carry bytes only")
            out += [struct.pack("<Q", len(item)), bytes(item)]
        return out
    raise MessageError(f"field {name!r}: cannot encode {type(value).__name__}")


_U64 = struct.Struct("<Q")
_STRUCTS: dict[str, struct.Struct] = {}  # compiled layouts of the reader (a handful of fixed formats)


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        start = self.skip(n)
        chunk = self.data[start:self.pos]
        return chunk if type(chunk) is bytes else bytes(chunk)  # a memoryview message's fields come out as bytes

    def skip(self, n: int) -> int:
        """Advance over n bytes that must be present; returns where they start."""
        start = self.pos
        if n < 0 or start + n > len(self.data):
            raise MessageError("message truncated")
        self.pos = start + n
        return start

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        layout = _STRUCTS.get(fmt)
        if layout is None:
            layout = _STRUCTS.setdefault(fmt, struct.Struct(fmt))
        return layout.unpack_from(self.data, self.skip(layout.size))

    def str8(self) -> str:
        n = self.data[self.skip(1)]  # a one-byte length, then the name
        start = self.skip(n)
        try:
            return str(self.data[start:self.pos], "utf-8")
        except UnicodeDecodeError:
            raise MessageError("name is not utf-8") from None


def _received(data: Any) -> bytes | memoryview:
    """A message as the reader takes it: bytes as they are, a bytearray copied (its owner could still change it),
    a memoryview (a sender's :meth:`ArraySlot.seal`) read in place as read-only bytes; anything else is refused."""
    if isinstance(data, bytes):
        return data
    if isinstance(data, bytearray):
        return bytes(data)
    if isinstance(data, memoryview):
        if not data.c_contiguous:
            raise MessageError("message must be contiguous bytes")
        return (data if data.format == "B" and data.ndim == 1 else data.cast("B")).toreadonly()
    raise MessageError("message must be bytes")


_MAX_HEADER = len(MAGIC) + 1 + 2 * (1 + _MAX_NAME) + 16  # magic, version, protocol, kind, round, sender


def peek_header(data: bytes | memoryview) -> tuple[str, str, int, int]:
    """(protocol, kind, round_id, sender) of a message, validating only the header."""
    return _read_header(_Reader(bytes(_received(data)[:_MAX_HEADER])))


def _read_header(reader: _Reader) -> tuple[str, str, int, int]:
    """Magic and version checked; (protocol, kind, round_id, sender) returned."""
    if reader.take(4) != MAGIC:
        raise MessageError("not a privfed message (bad magic)")
    (version,) = reader.unpack("<B")
    if version != WIRE_VERSION:
        raise MessageError(f"unsupported wire version {version}")
    protocol, kind = reader.str8(), reader.str8()
    round_id, sender = reader.unpack("<Qq")
    return protocol, kind, round_id, sender


def decode(data: bytes | memoryview, specs: Mapping[str, MessageSpec] | MessageSpec, *, protocol: str, round_id: int,
           sender: int | None = None) -> Message:
    """Decode and validate ``data`` against the expected kind(s); raise MessageError on anything unexpected.

    ``sender``, when given, must match the sender the transport authenticated.
    """
    if isinstance(specs, MessageSpec):
        specs = {specs.kind: specs}
    data = _received(data)
    limit = max(spec.max_bytes for spec in specs.values())
    if len(data) > limit:
        raise MessageError(f"message of {len(data)} bytes exceeds the limit of {limit}")
    reader = _Reader(data)
    try:
        return _decode(reader, specs, protocol, round_id, sender)
    except MessageError:
        raise
    except (struct.error, ValueError, OverflowError, MemoryError, TypeError) as exc:  # defence in depth
        raise MessageError(f"malformed message: {type(exc).__name__}") from None


def _decode(reader: _Reader, specs: Mapping[str, MessageSpec], protocol: str, round_id: int,
            sender: int | None) -> Message:
    got_protocol, kind, got_round, got_sender = _read_header(reader)
    if got_protocol != protocol:
        raise StaleMessageError(f"message for protocol {got_protocol!r}, expected {protocol!r}")
    if got_round != round_id:
        raise StaleMessageError(f"message for round {got_round}, expected round {round_id}")
    if sender is not None and got_sender != sender:
        raise StaleMessageError(f"message claims sender {got_sender}, transport says {sender}")
    spec = specs.get(kind)
    if spec is None:
        raise MessageError(f"unexpected message kind {kind!r} (expected one of {sorted(specs)})")
    if reader.pos > spec.max_bytes or len(reader.data) > spec.max_bytes:
        raise MessageError(f"{kind} message exceeds {spec.max_bytes} bytes")
    (n_fields,) = reader.unpack("<H")
    if n_fields != len(spec.fields):
        raise MessageError(f"{kind}: expected {len(spec.fields)} fields, got {n_fields}")
    values: dict[str, Any] = {}
    for _ in range(n_fields):
        name = reader.str8()
        if name not in spec.fields or name in values:
            raise MessageError(f"{kind}: unexpected or repeated field {name!r}")
        values[name] = _decode_value(reader, name, spec.fields[name])
    if reader.pos != len(reader.data):
        raise MessageError(f"{kind}: {len(reader.data) - reader.pos} trailing bytes")
    return Message(got_protocol, kind, got_round, got_sender, values)


def _check_length(name: str, spec: FieldSpec, n: int) -> None:
    if spec.length is not None and n != spec.length:
        raise MessageError(f"field {name!r}: length {n}, expected {spec.length}")
    if spec.max_length is not None and n > spec.max_length:
        raise MessageError(f"field {name!r}: length {n} exceeds {spec.max_length}")


def _check_range(name: str, spec: FieldSpec, value: float) -> None:
    if spec.min_value is not None and value < spec.min_value:
        raise MessageError(f"field {name!r}: {value} below {spec.min_value}")
    if spec.max_value is not None and value > spec.max_value:
        raise MessageError(f"field {name!r}: {value} above {spec.max_value}")


def _decode_value(reader: _Reader, name: str, spec: FieldSpec) -> Any:
    at = reader.skip(1)
    if reader.data[at] != _TAG_CODE[spec.type]:
        raise MessageError(f"field {name!r}: wrong type tag {bytes(reader.data[at:at + 1])!r}, expected {spec.type}")
    if spec.type == "bytes":
        (n,) = reader.unpack("<Q")
        _check_length(name, spec, n)
        return reader.take(n)
    if spec.type == "int":
        (value,) = reader.unpack("<q")
        _check_range(name, spec, value)
        return value
    if spec.type == "float":
        (value,) = reader.unpack("<d")
        if spec.finite and not math.isfinite(value):
            raise MessageError(f"field {name!r}: non-finite value")
        _check_range(name, spec, value)
        return value
    if spec.type == "str":
        (n,) = reader.unpack("<I")
        _check_length(name, spec, n)
        try:
            return reader.take(n).decode("utf-8")
        except UnicodeDecodeError:
            raise MessageError(f"field {name!r}: not utf-8") from None
    if spec.type == "list":
        (count,) = reader.unpack("<I")
        _check_length(name, spec, count)
        items = []
        exact, most = spec.item_length, spec.item_max_length
        word = b"" if exact is None else _U64.pack(exact)  # a declared item length, as its length word reads
        for index in range(count):
            at = reader.skip(8)
            n = exact if reader.data[at:at + 8] == word else _U64.unpack_from(reader.data, at)[0]
            if exact is not None and n != exact:
                raise MessageError(f"field {name!r}: item {index} has {n} bytes, expected {exact}")
            if most is not None and n > most:
                raise MessageError(f"field {name!r}: item {index} has {n} bytes, more than {most}")
            items.append(reader.take(n))
        return items
    return _decode_array(reader, name, spec)


def _dtype_name(code: int) -> str:
    return _DTYPES[code] if code < len(_DTYPES) else f"unknown dtype code {code}"


def _decode_array(reader: _Reader, name: str, spec: FieldSpec, *, any_shape: bool = False) -> np.ndarray:
    code, ndim = reader.unpack("<BB")
    if code >= len(_DTYPES) or _DTYPES[code] != spec.dtype:
        raise MessageError(f"field {name!r}: dtype {_dtype_name(code)}, expected {spec.dtype}")
    if ndim < 1 or ndim > _MAX_NDIM:
        raise MessageError(f"field {name!r}: bad ndim {ndim}")
    shape = reader.unpack(f"<{ndim}Q")
    if not any_shape:
        wanted = spec.shape if spec.shape is not None else (None,)  # one axis; its size is the length below
        if ndim != len(wanted) or any(w is not None and d != w for d, w in zip(shape, wanted)):
            got = f"({shape[0]},)" if ndim == 1 else f"({', '.join(map(str, shape))})"
            raise MessageError(f"field {name!r}: shape {got}, expected {spec.expected_shape()}")
    count = math.prod(shape)
    _check_length(name, spec, count)
    wire_dtype = _WIRE_DTYPE[spec.dtype]
    start = reader.skip(count * wire_dtype.itemsize)
    arr = np.frombuffer(reader.data, dtype=wire_dtype, count=count, offset=start) if count else \
        np.frombuffer(b"", dtype=wire_dtype)
    if spec.copy or wire_dtype != _NATIVE_DTYPE[spec.dtype]:  # a view only where the wire layout is the native one
        arr = arr.astype(spec.dtype, copy=True)
    arr = arr.reshape(shape)
    if spec.finite and arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise MessageError(f"field {name!r}: NaN or infinite entries")
    return arr


_ANY_SPECS = {tag: FieldSpec(tag, dtype="float32" if tag == "array" else None, finite=False) for tag in _TAGS}


def inspect(data: bytes | memoryview) -> Message:
    """Parse any well-formed privfed message without a schema (for audits and attack models: what a party *sees*).

    Structure is still checked (magic, version, lengths, trailing bytes) and any failure raises MessageError; field
    values are returned as found (arrays keep their wire dtype, non-finite values are allowed).
    """
    reader = _Reader(_received(data))
    try:
        protocol, kind, round_id, sender = _read_header(reader)
        (n_fields,) = reader.unpack("<H")
        values: dict[str, Any] = {}
        for _ in range(n_fields):
            name = reader.str8()
            tag = reader.data[reader.pos:reader.pos + 1]
            found = next((t for t, code in _TAGS.items() if code == tag), None)
            if found is None:
                raise MessageError(f"field {name!r}: unknown type tag")
            if found == "array":
                code = reader.data[reader.pos + 1] if reader.pos + 1 < len(reader.data) else 255
                if code >= len(_DTYPES):
                    raise MessageError(f"field {name!r}: unknown dtype")
                reader.take(1)  # the tag, peeked above
                spec = FieldSpec("array", dtype=_DTYPES[code], finite=False)
                values[name] = _decode_array(reader, name, spec, any_shape=True)
            else:
                values[name] = _decode_value(reader, name, _ANY_SPECS[found])
        if reader.pos != len(reader.data):
            raise MessageError("trailing bytes")
        return Message(protocol, kind, round_id, sender, values)
    except MessageError:
        raise
    except (struct.error, ValueError, OverflowError, MemoryError, TypeError) as exc:
        raise MessageError(f"malformed message: {type(exc).__name__}") from None
