"""The feature catalogue: a feature is asked for by name, parameters in the name.

Grammar: ``kind[_param...][.output]``, e.g. ``logret_1``, ``ema_12``, ``rsi_14``,
``bb_20_2.upper``, ``macd_12_26_9.hist``, ``atr_14``, ``obi_5``, ``ofi``, ``ofi_10``,
``vwap_60``, ``vwap_day``, ``spread``, ``spread_bps``, ``funding_rate``, ``tod_sin``, ``tod_cos``.
:func:`parse_feature` validates a name into a :class:`FeatureSpec`; :func:`build` makes the
indicator. Each spec says which clock the feature runs on (:class:`Cadence`: every event, or the
close of each bar of the model's bar interval) and what it is fed (:class:`Source`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from app.engine.features.averages import EMA, MACD, MAX_PERIOD, SMA, Bollinger
from app.engine.features.context import FundingRate, TimeOfDay
from app.engine.features.microstructure import (
    BookImbalance,
    OrderFlowImbalance,
    OrderFlowImbalanceWindow,
    RollingVWAP,
    SessionVWAP,
    Spread,
)
from app.engine.features.momentum import ATR, RSI, LogReturn

Indicator = (
    SMA
    | EMA
    | Bollinger
    | MACD
    | LogReturn
    | RSI
    | ATR
    | BookImbalance
    | OrderFlowImbalance
    | OrderFlowImbalanceWindow
    | Spread
    | RollingVWAP
    | SessionVWAP
    | FundingRate
    | TimeOfDay
)


class UnknownFeatureError(ValueError):
    """A feature name is unknown or malformed; the message lists the names that are known."""


class Cadence(StrEnum):
    """The clock a feature runs on."""

    EVENT = "event"  # every book, trade, funding event
    BAR = "bar"  # each closed bar of the model's bar interval


class Source(StrEnum):
    """What a feature is fed, and so which ``update`` signature its indicator has."""

    CLOSE = "close"  # bar close: update(close)
    BAR = "bar"  # bar high/low/close: update(high, low, close)
    DEPTH = "depth"  # top-N quantities: update(bid_qtys, ask_qtys)
    QUOTE = "quote"  # best bid/ask: see the indicator class
    TRADE = "trade"  # update(ts_ms, price, qty)
    FUNDING = "funding"  # update(rate)
    TIME = "time"  # update(ts_ms)


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """A validated feature name.

    ``key`` identifies the indicator instance: names that differ only in their output
    (``bb_20_2.upper`` and ``bb_20_2.lower``, ``spread`` and ``spread_bps``) share one, and
    ``output`` is the attribute read from it.
    """

    name: str
    kind: str
    params: tuple[int | float, ...]
    output: str
    cadence: Cadence
    source: Source
    key: str

    def read(self, indicator: Indicator) -> float | None:
        """This feature's current value from its indicator (None while warming up)."""
        v: float | None = getattr(indicator, self.output)
        return v


@dataclass(frozen=True, slots=True)
class _Param:
    name: str
    type: type[int] | type[float]
    minimum: float


@dataclass(frozen=True, slots=True)
class _Kind:
    pattern: str  # how the name is written, for error messages
    params: tuple[_Param, ...]
    outputs: tuple[str, ...]  # allowed ``.output`` suffixes; empty: no suffix
    attr: str  # attribute read when there is no suffix
    cadence: Cadence
    source: Source
    factory: Callable[..., Indicator]
    shared_key: str = ""  # instance key shared by several kinds (e.g. spread/spread_bps)


def _period(name: str, minimum: int = 2) -> _Param:
    return _Param(name, int, minimum)


_BB_OUT = ("middle", "upper", "lower", "pctb", "width")
_MACD_OUT = ("macd", "signal", "hist")
_B, _E = Cadence.BAR, Cadence.EVENT

# Keyed by (kind, number of parameters): ``ofi`` and ``ofi_10`` are different indicators.
_KINDS: dict[tuple[str, int], _Kind] = {
    ("logret", 1): _Kind("logret_<bars>", (_period("bars", 1),), (), "value", _B, Source.CLOSE,
                         LogReturn),
    ("sma", 1): _Kind("sma_<period>", (_period("period"),), (), "value", _B, Source.CLOSE, SMA),
    ("ema", 1): _Kind("ema_<period>", (_period("period"),), (), "value", _B, Source.CLOSE, EMA),
    ("rsi", 1): _Kind("rsi_<period>", (_period("period"),), (), "value", _B, Source.CLOSE, RSI),
    ("bb", 2): _Kind("bb_<period>_<k>.{" + ",".join(_BB_OUT) + "}",
                     (_period("period"), _Param("k", float, 0.0)), _BB_OUT, "", _B, Source.CLOSE,
                     Bollinger),
    ("macd", 3): _Kind("macd_<fast>_<slow>_<signal>.{" + ",".join(_MACD_OUT) + "}",
                       (_period("fast"), _period("slow"), _period("signal", 1)), _MACD_OUT, "",
                       _B, Source.CLOSE, MACD),
    ("atr", 1): _Kind("atr_<period>", (_period("period", 1),), (), "value", _B, Source.BAR, ATR),
    ("obi", 1): _Kind("obi_<levels>", (_period("levels", 1),), (), "value", _E, Source.DEPTH,
                      BookImbalance),
    ("ofi", 0): _Kind("ofi", (), (), "value", _E, Source.QUOTE, OrderFlowImbalance),
    ("ofi", 1): _Kind("ofi_<window_s>", (_period("window_s", 1),), (), "value", _E, Source.QUOTE,
                      OrderFlowImbalanceWindow),
    ("vwap", 1): _Kind("vwap_<window_s>", (_period("window_s", 1),), (), "value", _E,
                       Source.TRADE, RollingVWAP),
    ("vwap_day", 0): _Kind("vwap_day", (), (), "value", _E, Source.TRADE, SessionVWAP),
    ("spread", 0): _Kind("spread", (), (), "spread", _E, Source.QUOTE, Spread, "spread"),
    ("spread_bps", 0): _Kind("spread_bps", (), (), "bps", _E, Source.QUOTE, Spread, "spread"),
    ("funding_rate", 0): _Kind("funding_rate", (), (), "value", _E, Source.FUNDING, FundingRate),
    ("tod_sin", 0): _Kind("tod_sin", (), (), "sin", _E, Source.TIME, TimeOfDay, "tod"),
    ("tod_cos", 0): _Kind("tod_cos", (), (), "cos", _E, Source.TIME, TimeOfDay, "tod"),
}  # fmt: skip

KNOWN_FEATURES: tuple[str, ...] = tuple(k.pattern for k in _KINDS.values())

_NAME_RE = re.compile(
    r"(?P<kind>[a-z]+(?:_[a-z]+)*)(?P<params>(?:_\d+(?:\.\d+)?)*)(?:\.(?P<output>[a-z]+))?"
)


def _unknown(name: str, why: str) -> UnknownFeatureError:
    return UnknownFeatureError(
        f"feature {name!r}: {why}; known features: {', '.join(KNOWN_FEATURES)}"
    )


def _fmt(v: int | float) -> str:
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def parse_feature(name: str) -> FeatureSpec:
    """Validate a feature name; raises :class:`UnknownFeatureError` saying what is wrong."""
    m = _NAME_RE.fullmatch(name) if isinstance(name, str) else None
    if m is None:
        raise _unknown(str(name), "not of the form kind[_param...][.output]")
    kind_name = m["kind"]
    raw = m["params"].split("_")[1:] if m["params"] else []
    kind = _KINDS.get((kind_name, len(raw)))
    if kind is None:
        arities = sorted(n for k, n in _KINDS if k == kind_name)
        why = (f"{kind_name!r} takes {' or '.join(map(str, arities))} parameter(s), "
               f"got {len(raw)}") if arities else f"unknown kind {kind_name!r}"  # fmt: skip
        raise _unknown(name, why)
    params: list[int | float] = []
    for p, text in zip(kind.params, raw, strict=True):
        if p.type is int:
            if "." in text:
                raise _unknown(name, f"{p.name} must be an integer, got {text!r}")
            value: int | float = int(text)
            if not p.minimum <= value <= MAX_PERIOD:
                raise _unknown(name, f"{p.name} must be in [{int(p.minimum)}, {MAX_PERIOD}]")
        else:
            value = float(text)
            if not value > p.minimum:
                raise _unknown(name, f"{p.name} must be greater than {_fmt(p.minimum)}")
        params.append(value)
    output = m["output"]
    if kind.outputs:
        if output is None or output not in kind.outputs:
            got = f"got .{output}" if output else "got none"
            raise _unknown(name, f"needs an output .{{{','.join(kind.outputs)}}}, {got}")
        attr = output
    elif output is not None:
        raise _unknown(name, f"{kind.pattern!r} has no output .{output}")
    else:
        attr = kind.attr
    base = "_".join([kind_name, *(_fmt(v) for v in params)])
    canonical = f"{base}.{output}" if output else base
    return FeatureSpec(
        name=canonical,
        kind=kind_name,
        params=tuple(params),
        output=attr,
        cadence=kind.cadence,
        source=kind.source,
        key=kind.shared_key or base,
    )


def build(spec: FeatureSpec) -> Indicator:
    """A new indicator for ``spec`` (several specs with the same ``key`` can share one)."""
    return _KINDS[(spec.kind, len(spec.params))].factory(*spec.params)
