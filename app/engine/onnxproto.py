"""Just enough of the ONNX protobuf wire format to read a model's header and set its metadata.

The appliance has onnxruntime but not the ``onnx`` package. The validator wants the opsets and
operators a file declares (to say *why* onnxruntime refused it), the engine's loader wants the
contract (``metadata_props``) before it lets onnxruntime build anything, and the exporter wants
to embed the contract into whatever ``torch.onnx`` wrote; all are a walk over protobuf fields,
which this module does without decoding the (large) weights.

**Models are only data.** A tensor anywhere in ONNX may say that its bytes live in another file
(``data_location`` EXTERNAL, ``external_data`` naming a path and an offset); onnxruntime, given
the model as bytes, opens that path relative to the current directory. A model could read any file
the engine can, and its sha256 would no longer pin its weights. :func:`read_header` therefore walks
every place a tensor can be (graph initializers and sparse initializers, node attributes: single
tensors, sparse tensors and lists of either, subgraphs of If/Loop/Scan and any other graph
attribute, model-local functions, training info) and lists each tensor stored outside the file in
:attr:`ModelHeader.external`; a file nested deeper than the walk goes is flagged
(:attr:`ModelHeader.too_deep`) rather than half-read. :meth:`ModelHeader.data_problems` says both
in words; the validator and the loader refuse the file on them before onnxruntime sees it.

Field numbers (onnx.proto3): ModelProto ``ir_version`` 1, ``graph`` 7, ``opset_import`` 8,
``metadata_props`` 14, ``training_info`` 20, ``functions`` 25; OperatorSetIdProto ``domain`` 1,
``version`` 2; StringStringEntryProto ``key`` 1, ``value`` 2; GraphProto ``node`` 1, ``name`` 2,
``initializer`` 5, ``sparse_initializer`` 15; NodeProto ``name`` 3, ``op_type`` 4, ``domain`` 7,
``attribute`` 5; AttributeProto ``name`` 1, ``t`` 5, ``g`` 6, ``tensors`` 10, ``graphs`` 11,
``sparse_tensor`` 22, ``sparse_tensors`` 23; TensorProto ``name`` 8, ``external_data`` 13,
``data_location`` 14 (0 DEFAULT, 1 EXTERNAL); SparseTensorProto ``values`` 1, ``indices`` 2;
FunctionProto ``name`` 1, ``node`` 7, ``domain`` 10, ``attribute_proto`` 11 (attribute defaults);
TrainingInfoProto ``initialization`` 1, ``algorithm`` 2.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_MAX_DEPTH = 8  # subgraphs nested deeper than this are not walked but refused (no real model is)


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


_MAX_NAME = 60  # characters of a (file-supplied) name quoted in a message
_MAX_LISTED = 5  # externally stored tensors named one by one; the rest are counted


def _quote(name: str) -> str:
    return repr(name if len(name) <= _MAX_NAME else name[:_MAX_NAME] + "...")


@dataclass(frozen=True)
class ModelHeader:
    """What a model file declares about itself, read without onnxruntime.

    ``external`` locates every tensor whose bytes the file says are elsewhere (e.g. ``graph
    'main' > initializer 'w'``); ``too_deep`` is where the walk stopped because subgraphs nest
    deeper than it goes (empty: it read everything). Either makes the file more than data.
    """

    ir_version: int
    opsets: dict[str, int]  # domain ("" = ai.onnx) -> version
    operators: frozenset[tuple[str, str]]  # (domain, op_type), subgraphs and functions included
    metadata: dict[str, str]
    external: tuple[str, ...] = ()
    too_deep: str = ""

    def data_problems(self) -> list[str]:
        """Why this file is not only data (an empty list: it is): one message per reason."""
        problems: list[str] = []
        if self.external:
            listed = "; ".join(self.external[:_MAX_LISTED])
            more = len(self.external) - _MAX_LISTED
            if more > 0:
                listed += f"; and {more} more"
            n = len(self.external)
            problems.append(
                f"{n} tensor{'s' if n > 1 else ''} stored as external data (in a file outside "
                f"the model, which onnxruntime would open): {listed}. A model must carry its own "
                "weights: save it with every tensor inside the file"
            )
        if self.too_deep:
            problems.append(
                f"subgraphs nested more than {_MAX_DEPTH} levels deep ({self.too_deep}): "
                "the reader does not walk that far, so the file is refused"
            )
        return problems


class _Walk:
    """One pass over everything in a model that can hold a tensor or an operator."""

    def __init__(self) -> None:
        self.ops: set[tuple[str, str]] = set()
        self.external: list[str] = []
        self.too_deep = ""

    def tensor(self, msg: int | memoryview, where: str) -> None:
        """A TensorProto: external if it says so in either of its two ways."""
        if not isinstance(msg, memoryview):
            return
        name, external = "", False
        for number, _wire, value, _s, _e in fields(msg):
            if number == 8:
                name = _text(value)
            # 13: an external_data entry (location, offset, length, checksum); 14: data_location,
            # 0 DEFAULT, 1 EXTERNAL, anything else unknown (so refused too).
            elif number == 13 or (number == 14 and value != 0):
                external = True
        if external:
            self.external.append(f"{where} {_quote(name)}")

    def sparse(self, msg: int | memoryview, where: str) -> None:
        """A SparseTensorProto: its values and its indices are tensors."""
        if not isinstance(msg, memoryview):
            return
        for number, _wire, value, _s, _e in fields(msg):
            if number == 1:
                self.tensor(value, f"{where} values")
            elif number == 2:
                self.tensor(value, f"{where} indices")

    def graph(self, msg: int | memoryview, where: str, depth: int) -> None:
        """A GraphProto: its nodes, initializers and sparse initializers."""
        if not isinstance(msg, memoryview):
            return
        name = next((_text(v) for n, _w, v, _s, _e in fields(msg) if n == 2), "")
        where = f"{where}graph {_quote(name)}"
        if depth > _MAX_DEPTH:
            self.too_deep = self.too_deep or where
            return
        for number, _wire, value, _s, _e in fields(msg):
            if number == 1:
                self.node(value, where, depth)
            elif number == 5:
                self.tensor(value, f"{where} > initializer")
            elif number == 15:
                self.sparse(value, f"{where} > sparse initializer")

    def node(self, msg: int | memoryview, where: str, depth: int) -> None:
        """A NodeProto: its operator, and every tensor or graph in its attributes."""
        if not isinstance(msg, memoryview):
            return
        op = domain = name = ""
        attributes: list[int | memoryview] = []
        for number, _wire, value, _s, _e in fields(msg):
            if number == 4:
                op = _text(value)
            elif number == 7:
                domain = _text(value)
            elif number == 3:
                name = _text(value)
            elif number == 5:
                attributes.append(value)
        self.ops.add((domain, op))
        where = f"{where} > node {_quote(name)} ({_quote(op)[1:-1]})"
        for attribute in attributes:
            self.attribute(attribute, where, depth)

    def attribute(self, msg: int | memoryview, where: str, depth: int) -> None:
        """An AttributeProto: tensors, sparse tensors and graphs, single or in lists."""
        if not isinstance(msg, memoryview):
            return
        name = next((_text(v) for n, _w, v, _s, _e in fields(msg) if n == 1), "")
        where = f"{where} > attribute {_quote(name)}"
        for number, _wire, value, _s, _e in fields(msg):
            if number in (5, 10):  # t, tensors
                self.tensor(value, f"{where} > tensor")
            elif number in (22, 23):  # sparse_tensor, sparse_tensors
                self.sparse(value, f"{where} > sparse tensor")
            elif number in (6, 11):  # g, graphs (If, Loop, Scan, and any other op's)
                self.graph(value, f"{where} > ", depth + 1)

    def function(self, msg: int | memoryview) -> None:
        """A model-local FunctionProto: its body's nodes and its attributes' default values."""
        if not isinstance(msg, memoryview):
            return
        name = domain = ""
        body: list[tuple[int, int | memoryview]] = []
        for number, _wire, value, _s, _e in fields(msg):
            if number == 1:
                name = _text(value)
            elif number == 10:
                domain = _text(value)
            elif number in (7, 11):
                body.append((number, value))
        where = f"function {_quote(name)} (domain {_quote(domain)})"
        for number, value in body:
            if number == 7:
                self.node(value, where, 0)
            else:
                self.attribute(value, f"{where} > default", 0)

    def training_info(self, msg: int | memoryview, index: int) -> None:
        """A TrainingInfoProto: its initialization and algorithm graphs."""
        if not isinstance(msg, memoryview):
            return
        for number, _wire, value, _s, _e in fields(msg):
            if number == 1:
                self.graph(value, f"training_info {index} initialization > ", 0)
            elif number == 2:
                self.graph(value, f"training_info {index} algorithm > ", 0)


# Long on purpose: one branch per protobuf field of the message it walks.
def read_header(data: bytes) -> ModelHeader:  # noqa: PLR0912
    """Read ir_version, opset imports, operators and metadata, and find every tensor stored
    outside the file; raises :class:`ProtoError` for bytes that are not an ONNX model."""
    ir_version = 0
    opsets: dict[str, int] = {}
    meta: dict[str, str] = {}
    walk = _Walk()
    graphs = trainings = 0
    for number, _wire, value, _s, _e in fields(data):
        if number == 1 and isinstance(value, int):
            ir_version = value
        elif number == 7 and isinstance(value, memoryview):
            graphs += 1
            walk.graph(value, "", 0)
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
        elif number == 20:
            walk.training_info(value, trainings)
            trainings += 1
        elif number == 25:
            walk.function(value)
    if graphs != 1 or not opsets:
        raise ProtoError(f"not an ONNX model: {graphs} graphs, {len(opsets)} opset imports")
    return ModelHeader(
        ir_version, opsets, frozenset(walk.ops), meta, tuple(walk.external), walk.too_deep
    )


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
