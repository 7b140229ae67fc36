"""Feature rows at bar closes: the one sampling rule that training and trading share.

A model's window row is read when a bar closes, *before* any event stamped at or after the close is
applied (see models/README.md, "What a window is"). The default model's script, the dataset builder
and the live engine all go through :class:`BarSampler`, so training never disagrees with serving.

Event times: a trade's ``T`` (trade time), a bookTicker's ``T`` (transaction time) for its quote,
and ``E`` (event time) for everything else.

Book features read the order book after the depth event was applied when one is given (an
unsynced book leaves them as they were), else the event's own levels; only as many levels as the
features need are read. The two agree for partial depth (``depth<N>@100ms``, the
engine's default: the event *is* the top of the book); for diff depth only the book is right, so
the engine and the dataset builder pass the book they rebuilt.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from app.engine.book import OrderBook
from app.engine.events import AggTrade, BookTicker, DepthUpdate, Event, Kline, MarkPriceUpdate
from app.engine.features import Bar, FeatureSet

Row = list[float | None]
_NO_ROWS: tuple[tuple[Bar, Row], ...] = ()


class BarSampler:
    """Feeds a :class:`FeatureSet` with events and yields a row at every bar close."""

    __slots__ = ("features", "interval_ms")

    def __init__(self, names: Sequence[str], bar_interval_s: int) -> None:
        self.features = FeatureSet(names, bar_interval_s)
        self.interval_ms = bar_interval_s * 1000

    def on_event(self, ev: Event, book: OrderBook | None = None) -> tuple[tuple[Bar, Row], ...]:
        """Apply one event; return the (bar, row) pairs of the bars it closed, oldest first.

        ``book`` is the symbol's order book with ``ev`` already applied, if the caller keeps one.
        """
        kind = type(ev)
        if kind is Kline:
            return _NO_ROWS
        ts = ev.ts_trade_ms if kind is AggTrade else ev.ts_event_ms  # type: ignore[union-attr]
        fs = self.features
        closed = fs.bars.advance(ts)
        out: tuple[tuple[Bar, Row], ...] = _NO_ROWS
        if closed:
            rows = []
            for bar in closed:
                fs.on_bar(bar)
                rows.append((bar, fs.values(bar.open_time_ms + self.interval_ms)))
            out = tuple(rows)
        fs.expire(ts)  # the bars were advanced above
        if kind is AggTrade:
            t: AggTrade = ev  # type: ignore[assignment]
            fs.on_trade(t.ts_trade_ms, float(t.price), float(t.qty))
        elif kind is BookTicker:
            b: BookTicker = ev  # type: ignore[assignment]
            fs.on_quote(
                b.ts_trans_ms, float(b.bid_price), float(b.bid_qty), float(b.ask_price),
                float(b.ask_qty),
            )  # fmt: skip
        elif kind is DepthUpdate:
            n = fs.depth_levels
            if n:
                if book is not None:
                    if book.synced:  # an unsynced book is stale: keep the last values
                        fs.on_depth(book.bid_qtys(n), book.ask_qtys(n))
                else:
                    d: DepthUpdate = ev  # type: ignore[assignment]
                    fs.on_depth(
                        [float(q) for _, q in d.bids[:n]], [float(q) for _, q in d.asks[:n]]
                    )
        elif kind is MarkPriceUpdate:
            fs.on_funding(float(ev.funding_rate))  # type: ignore[union-attr]
        return out


def as_floats(row: Row) -> list[float]:
    """A row with unknown (warming-up) values as NaN, for datasets."""
    return [math.nan if v is None else v for v in row]
