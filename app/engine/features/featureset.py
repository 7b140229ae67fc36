"""A model's feature vector: named features, fed by market events, read in declared order.

The model declares its feature names and one bar interval. Event features update on every book,
trade or funding event; bar features update when a bar of that interval closes. Bars are built
from trades by a :class:`BarBuilder` and also close on time (:meth:`FeatureSet.on_time`), so a
quiet market still produces bars. Indicators that several names share (``bb_20_2.upper`` and
``bb_20_2.lower``) are built once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from app.engine.features.averages import EMA, MACD, SMA, Bollinger
from app.engine.features.bar import Bar
from app.engine.features.bars import BarBuilder, bars_from_klines
from app.engine.features.catalogue import (
    FeatureSpec,
    Indicator,
    Source,
    UnknownFeatureError,
    build,
    parse_feature,
)
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


class FeatureSet:
    """Features named in ``names`` (see :mod:`.catalogue`), bar features on ``bar_interval_s`` bars.

    Feed it with the ``on_*`` methods (timestamps are exchange epoch ms); read it with
    :meth:`values`. Raises :class:`UnknownFeatureError` for a bad name or a duplicate.
    """

    __slots__ = (
        "_close",
        "_depth",
        "_funding",
        "_ofi",
        "_ofi_windows",
        "_ohlc",
        "_readers",
        "_spreads",
        "_tod",
        "_trades",
        "bars",
        "depth_levels",
        "specs",
    )

    def __init__(self, names: Sequence[str], bar_interval_s: int) -> None:
        specs = tuple(parse_feature(n) for n in names)
        seen: set[str] = set()
        for s in specs:
            if s.name in seen:
                raise UnknownFeatureError(f"feature {s.name!r} is listed twice")
            seen.add(s.name)
        self.specs = specs
        self.bars = BarBuilder(bar_interval_s)
        instances: dict[str, Indicator] = {}
        for s in specs:
            if s.key not in instances:
                instances[s.key] = build(s)
        self._readers = tuple((instances[s.key], s.output) for s in specs)
        inds = list(instances.values())
        self._close = [i for i in inds if isinstance(i, SMA | EMA | Bollinger | MACD | LogReturn
                                                     | RSI)]  # fmt: skip
        self._ohlc = [i for i in inds if isinstance(i, ATR)]
        self._depth = [i for i in inds if isinstance(i, BookImbalance)]
        self._ofi = [i for i in inds if isinstance(i, OrderFlowImbalance)]
        self._ofi_windows = [i for i in inds if isinstance(i, OrderFlowImbalanceWindow)]
        self._spreads = [i for i in inds if isinstance(i, Spread)]
        self._trades = [i for i in inds if isinstance(i, RollingVWAP | SessionVWAP)]
        self._funding = [i for i in inds if isinstance(i, FundingRate)]
        self._tod = [i for i in inds if isinstance(i, TimeOfDay)]
        # How many book levels per side the depth features read (0: none read the book).
        self.depth_levels = max((d.levels for d in self._depth), default=0)

    @property
    def names(self) -> tuple[str, ...]:
        """The canonical feature names, in the order :meth:`values` returns them."""
        return tuple(s.name for s in self.specs)

    @property
    def bar_specs(self) -> tuple[FeatureSpec, ...]:
        """The features that run on bar closes (those warmed by :meth:`warm`)."""
        return tuple(s for s in self.specs if s.source in (Source.CLOSE, Source.BAR))

    def on_bar(self, bar: Bar) -> None:
        """Feed a closed bar to the bar features (done for you by ``on_trade``/``on_time``)."""
        c = bar.close
        for ind in self._close:
            ind.update(c)
        for atr in self._ohlc:
            atr.update(bar.high, bar.low, c)

    def on_trade(self, ts_ms: int, price: float, qty: float) -> None:
        """A trade: updates trade features, and bar features if it closed a bar."""
        for bar in self.bars.update(ts_ms, price, qty):
            self.on_bar(bar)
        for t in self._trades:
            t.update(ts_ms, price, qty)

    def on_time(self, ts_ms: int) -> None:
        """Time passed: closes due bars and expires windowed features."""
        for bar in self.bars.advance(ts_ms):
            self.on_bar(bar)
        self.expire(ts_ms)

    def expire(self, ts_ms: int) -> None:
        """Expire windowed features up to ``ts_ms`` (for a caller that closes bars itself)."""
        for t in self._trades:
            t.advance(ts_ms)
        for w in self._ofi_windows:
            w.advance(ts_ms)

    def on_quote(
        self, ts_ms: int, bid_px: float, bid_qty: float, ask_px: float, ask_qty: float
    ) -> None:
        """A best bid/ask change (bookTicker, or the top of the rebuilt book)."""
        for s in self._spreads:
            s.update(bid_px, ask_px)
        for o in self._ofi:
            o.update(bid_px, bid_qty, ask_px, ask_qty)
        for w in self._ofi_windows:
            w.update(ts_ms, bid_px, bid_qty, ask_px, ask_qty)

    def on_depth(self, bid_qtys: Sequence[float], ask_qtys: Sequence[float]) -> None:
        """Top-of-book quantities per level, best first (as many levels as the features need)."""
        for d in self._depth:
            d.update(bid_qtys, ask_qtys)

    def on_funding(self, rate: float) -> None:
        """The latest funding rate."""
        for f in self._funding:
            f.update(rate)

    def values(self, ts_ms: int) -> list[float | None]:
        """Current values in declared order; time-of-day features are taken at ``ts_ms``."""
        for t in self._tod:
            t.update(ts_ms)
        out: list[float | None] = [getattr(ind, attr) for ind, attr in self._readers]
        return out

    def warm(self, klines: Iterable[Sequence[object]], now_ms: int) -> int:
        """Warm the bar features from Binance klines of the bar interval; returns bars used.

        Call it before any live event. Rows whose interval has not ended by ``now_ms`` are
        skipped; the bar builder continues after the last closed kline, so live trades extend the
        same series (a gap between them is filled with flat bars, as for any quiet interval).
        """
        bars = bars_from_klines(klines, self.bars.interval_ms // 1000, now_ms)
        for bar in bars:
            self.on_bar(bar)
        if bars:
            self.bars.seed(bars[-1])
        return len(bars)
