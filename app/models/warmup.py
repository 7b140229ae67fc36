"""The inputs the engine uses at start, recorded beside the stream frames so a replay can use them.

A replay that had only the stream frames would not trade where the engine traded, for two reasons:

- the engine's trader begins when its model is loaded, a moment after the streams start: the
  frames before it build no bars, so its windows fill later than a replay's from the first frame;
- the engine warms each symbol's 1-minute risk ATR from ``GET /fapi/v1/klines`` (live trading
  would otherwise wait 15 minutes for its first stop distance).

So the engine records both, each at the moment it happened, in the same raw log as the market
frames (the recorder keeps their order, which is the order the engine used them in):

``{"stream": "engine@warmup@model", "data": {"e": "warmup_model", "E": <ms>, "sha256": ...,
"v": <model_version>}}`` right after the model is swapped in, and per symbol

``{"stream": "<symbol>@warmup@kline_1m", "data": {"e": "warmup", "E": <now ms>, "s": <SYMBOL>,
"i": "1m", "k": [<the REST rows as received>]}}`` right after
:meth:`~app.engine.trader.Trader.warm_risk`, whose ``now_ms`` is ``E`` (a still-open last kline
is left out against it), so the replay repeats the call exactly.

No live stream is called ``...@warmup@...`` and these event types are not stream events: every
other reader of a recording (the decoder, the simulator's replay, datasets) skips these frames as
it skips any frame it does not know.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

STREAM_MARK = "@warmup@"
MODEL_STREAM = f"engine{STREAM_MARK}model"
_encode = msgspec.json.Encoder().encode


class _Klines(msgspec.Struct, frozen=True, tag_field="e", tag="warmup"):
    E: int
    s: str
    i: str
    k: list[list[object]]


class _Model(msgspec.Struct, frozen=True, tag_field="e", tag="warmup_model"):
    E: int
    sha256: str
    v: str


_decode = msgspec.json.Decoder(_Klines | _Model).decode


@dataclass(frozen=True, slots=True)
class Warmup:
    """Klines the engine warmed ``symbol``'s risk ATR from, with the ``now_ms`` it used."""

    symbol: str
    interval: str
    now_ms: int
    rows: tuple[tuple[object, ...], ...]


@dataclass(frozen=True, slots=True)
class ModelReady:
    """The engine's trader got its model here: its features and windows begin with the next
    frame. ``symbol`` is empty (it concerns every symbol)."""

    sha256: str
    model_version: str
    symbol: str = ""


def warmup_frame(
    symbol: str, interval: str, rows: Sequence[Sequence[object]], now_ms: int
) -> bytes:
    """The raw frame the engine records for one ``warm_risk`` call."""
    data = {"e": "warmup", "E": now_ms, "s": symbol.upper(), "i": interval,
            "k": [list(r) for r in rows]}  # fmt: skip
    return _encode({"stream": f"{symbol.lower()}{STREAM_MARK}kline_{interval}", "data": data})


def model_ready_frame(sha256: str, model_version: str, ts_ms: int) -> bytes:
    """The raw frame the engine records when its model is swapped in at start."""
    data = {"e": "warmup_model", "E": ts_ms, "sha256": sha256, "v": model_version}
    return _encode({"stream": MODEL_STREAM, "data": data})


def is_warmup(stream: str) -> bool:
    return STREAM_MARK in stream


def decode_warmup(data: bytes) -> Warmup | ModelReady:
    """A start-up frame's ``data`` (raises ``msgspec.DecodeError`` when it is not one)."""
    d = _decode(data)
    if isinstance(d, _Model):
        return ModelReady(d.sha256, d.v)
    return Warmup(d.s, d.i, d.E, tuple(tuple(r) for r in d.k))
