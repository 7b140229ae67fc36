"""Just enough of the ONNX protobuf wire format to read a model's header and set its metadata.

The appliance has onnxruntime but not the ``onnx`` package. The validator wants the opsets and
operators a file declares (to say *why* onnxruntime refused it), and the exporter wants to embed
the contract's ``metadata_props`` into whatever ``torch.onnx`` wrote; both are a walk over
top-level protobuf fields, which this module does without decoding the (large) weights.

Field numbers (onnx.proto3): ModelProto ``ir_version`` 1, ``graph`` 7, ``opset_import`` 8,
``metadata_props`` 14; OperatorSetIdProto ``domain`` 1, ``version`` 2; StringStringEntryProto
``key`` 1, ``value`` 2; GraphProto ``node`` 1; NodeProto ``op_type`` 4, ``domain`` 7,
``attribute`` 5; AttributeProto ``g`` 6, ``graphs`` 11.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_MAX_DEPTH = 8  # subgraphs nested deeper than this are not walked (no legitimate model does)


class ProtoError(ValueError):
    """The bytes are not a well-formed protobuf message."""


def _varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ProtoError("truncated varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ProtoError("varint too long")


def fields(data: bytes | memoryview) -> Iterator[tuple[int, int, int | memoryview, int, int]]:
    """Yield ``(field number, wire type, value, start, end)`` for each top-level field.

    ``value`` is an int for varint and fixed-width fields and a memoryview for length-delimited
    ones; ``start:end`` is the field's whole encoding (tag included).
    """
    view = memoryview(data)
    pos, end = 0, len(view)
    while pos < end:
        start = pos
        tag, pos = _varint(view, pos)
        number, wire = tag >> 3, tag & 7
        value: int | memoryview
        if wire == _VARINT:
            value, pos = _varint(view, pos)
        elif wire == _LEN:
            length, pos = _varint(view, pos)
            if pos + length > end:
                raise ProtoError(f"field {number} runs past the end ({pos + length} > {end})")
            value = view[pos : pos + length]
            pos += length
        elif wire == _I64:
            if pos + 8 > end:
                raise ProtoError("truncated fixed64")
            value = int.from_bytes(view[pos : pos + 8], "little")
            pos += 8
        elif wire == _I32:
            if pos + 4 > end:
                raise ProtoError("truncated fixed32")
            value = int.from_bytes(view[pos : pos + 4], "little")
            pos += 4
        else:
            raise ProtoError(f"unsupported wire type {wire} for field {number}")
        if number == 0:
            raise ProtoError("field number 0")
        yield number, wire, value, start, pos


def _text(value: int | memoryview) -> str:
    if not isinstance(value, memoryview):
        raise ProtoError("expected a string field")
    return bytes(value).decode("utf-8", errors="replace")


@dataclass(frozen=True)
class ModelHeader:
    """What a model file declares about itself, read without onnxruntime."""

    ir_version: int
    opsets: dict[str, int]  # domain ("" = ai.onnx) -> version
    operators: frozenset[tuple[str, str]]  # (domain, op_type), subgraphs included
    metadata: dict[str, str]


def _operators(graph: memoryview, out: set[tuple[str, str]], depth: int) -> None:
    if depth > _MAX_DEPTH:
        return
    for number, _wire, value, _s, _e in fields(graph):
        if number != 1 or not isinstance(value, memoryview):
            continue
        op, domain = "", ""
        for n2, _w2, v2, _s2, _e2 in fields(value):
            if n2 == 4:
                op = _text(v2)
            elif n2 == 7:
                domain = _text(v2)
            elif n2 == 5 and isinstance(v2, memoryview):
                for n3, _w3, v3, _s3, _e3 in fields(v2):
                    if n3 in (6, 11) and isinstance(v3, memoryview):
                        _operators(v3, out, depth + 1)
        out.add((domain, op))


def read_header(data: bytes) -> ModelHeader:
    """Read ir_version, opset imports, operators and metadata; raises :class:`ProtoError`."""
    ir_version = 0
    opsets: dict[str, int] = {}
    ops: set[tuple[str, str]] = set()
    meta: dict[str, str] = {}
    graphs = 0
    for number, _wire, value, _s, _e in fields(data):
        if number == 1 and isinstance(value, int):
            ir_version = value
        elif number == 7 and isinstance(value, memoryview):
            graphs += 1
            _operators(value, ops, 0)
        elif number == 8 and isinstance(value, memoryview):
            domain, version = "", 0
            for n2, _w2, v2, _s2, _e2 in fields(value):
                if n2 == 1:
                    domain = _text(v2)
                elif n2 == 2 and isinstance(v2, int):
                    version = v2
            opsets[domain] = version
        elif number == 14 and isinstance(value, memoryview):
            key = val = ""
            for n2, _w2, v2, _s2, _e2 in fields(value):
                if n2 == 1:
                    key = _text(v2)
                elif n2 == 2:
                    val = _text(v2)
            meta[key] = val
    if graphs != 1 or not opsets:
        raise ProtoError(f"not an ONNX model: {graphs} graphs, {len(opsets)} opset imports")
    return ModelHeader(ir_version, opsets, frozenset(ops), meta)


def _encode_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _len_field(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | _LEN) + _encode_varint(len(payload)) + payload


def with_metadata(data: bytes, metadata: Mapping[str, str]) -> bytes:
    """``data`` with its ``metadata_props`` replaced by ``metadata`` (other fields byte for byte).

    Keys are written in sorted order, so the same model and metadata give the same bytes.
    """
    kept = bytearray()
    for number, _wire, _value, start, end in fields(data):
        if number != 14:
            kept += data[start:end]
    for key in sorted(metadata):
        entry = _len_field(1, key.encode()) + _len_field(2, metadata[key].encode())
        kept += _len_field(14, entry)
    return bytes(kept)
