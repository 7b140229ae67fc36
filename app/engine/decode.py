"""Frame bytes → typed events, in one pass.

msgspec decodes the JSON and validates it against the tagged union of :mod:`app.engine.events` in
a single C-level pass: the ``e`` key picks the struct, so nothing is decoded twice and no
intermediate ``dict`` is built. ``benchmarks/decode_bench.py`` measures this against stdlib
``json`` and ``orjson`` (which only build dicts, before any dispatch or validation).

Anything that is not a well-formed USD-M event (invalid JSON, a missing or mistyped field, an
unknown ``e``) raises :class:`~app.errors.MalformedFrameError`; the caller counts and skips it.
"""

from __future__ import annotations

import msgspec

from app.binance.public import DepthSnapshot
from app.engine.events import Event, Frame, StreamOnly
from app.errors import MalformedFrameError

# Decoders are built once: building one compiles the type's validation plan.
_FRAME = msgspec.json.Decoder(Frame)
_EVENT: msgspec.json.Decoder[Event] = msgspec.json.Decoder(Event)
_EVENTS: msgspec.json.Decoder[list[Event]] = msgspec.json.Decoder(list[Event])
_SNAPSHOT = msgspec.json.Decoder(DepthSnapshot)


_STREAM_ONLY = msgspec.json.Decoder(StreamOnly)

# What msgspec raises on bad input: DecodeError (and its ValidationError) for bad JSON or a shape
# mismatch, UnicodeDecodeError for a string that is not valid UTF-8.
_ERRORS = (msgspec.DecodeError, UnicodeDecodeError)


def decode_frame(raw: bytes | str) -> Frame:
    """Decode a combined-stream frame ``{"stream": ..., "data": {...}}``."""
    try:
        return _FRAME.decode(raw)
    except _ERRORS as exc:
        raise MalformedFrameError(f"bad frame: {exc}") from exc


def decode_event(raw: bytes | str) -> Event:
    """Decode a raw-stream payload (``/ws/<stream>``): the event object alone."""
    try:
        return _EVENT.decode(raw)
    except _ERRORS as exc:
        raise MalformedFrameError(f"bad event: {exc}") from exc


def decode_events(raw: bytes | str) -> list[Event]:
    """Decode an array payload, as the all-market streams send (``!markPrice@arr``)."""
    try:
        return _EVENTS.decode(raw)
    except _ERRORS as exc:
        raise MalformedFrameError(f"bad event array: {exc}") from exc


def decode_depth_snapshot(raw: bytes | str) -> DepthSnapshot:
    """Decode a ``GET /fapi/v1/depth`` response body."""
    try:
        return _SNAPSHOT.decode(raw)
    except _ERRORS as exc:
        raise MalformedFrameError(f"bad depth snapshot: {exc}") from exc


def stream_of(raw: bytes | str) -> str | None:
    """The ``stream`` of a frame whose ``data`` did not decode, to attribute the error; else None.

    Only for the error path: it decodes the frame a second time.
    """
    try:
        return _STREAM_ONLY.decode(raw).stream
    except _ERRORS:
        return None
