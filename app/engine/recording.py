"""Turns each received frame into the recorder's rows: the raw frame always, derived rows by type.

Runs on the hot path, so it only builds tuples and appends them (see ``store.recorder``). Book
snapshots are taken at most every ``book_snapshot_interval_s`` per symbol, from the engine's own
book, so that queries need not replay depth events.
"""

from __future__ import annotations

from collections.abc import Callable

from app.config import StoreConfig
from app.engine.events import AggTrade, BookTicker, DepthUpdate, Event, Level, MarkPriceUpdate
from app.store.recorder import Recorder

# (last update id, bids best first, asks best first) of a symbol's book, or None while unsynced.
BookView = Callable[[str, int], tuple[int, list[Level], list[Level]] | None]


class RecordingSink:
    """The recorder's subscription to market data."""

    def __init__(self, recorder: Recorder, cfg: StoreConfig, book_view: BookView) -> None:
        self._recorder = recorder
        self._book_view = book_view
        self._levels = cfg.book_snapshot_levels
        self._interval_ns = int(cfg.book_snapshot_interval_s * 1e9)
        self._next_snapshot_ns: dict[str, int] = {}

    def __call__(self, ts_recv_ns: int, raw: bytes, event: Event | None) -> None:
        rec = self._recorder
        rec.frame(ts_recv_ns, raw)
        kind = type(event)
        if kind is AggTrade:
            t: AggTrade = event  # type: ignore[assignment]
            rec.trade(
                (
                    ts_recv_ns,
                    t.ts_trade_ms,
                    t.symbol,
                    t.agg_trade_id,
                    t.price,
                    t.qty,
                    int(t.buyer_is_maker),
                )
            )
        elif kind is BookTicker:
            b: BookTicker = event  # type: ignore[assignment]
            rec.top(
                (
                    ts_recv_ns,
                    b.ts_event_ms,
                    b.symbol,
                    b.update_id,
                    b.bid_price,
                    b.bid_qty,
                    b.ask_price,
                    b.ask_qty,
                )
            )
        elif kind is DepthUpdate:
            d: DepthUpdate = event  # type: ignore[assignment]
            if ts_recv_ns >= self._next_snapshot_ns.get(d.symbol, 0):
                view = self._book_view(d.symbol, self._levels)
                if view is not None:
                    self._next_snapshot_ns[d.symbol] = ts_recv_ns + self._interval_ns
                    update_id, bids, asks = view
                    # The level lists are fresh and their levels immutable: the writer thread
                    # encodes them, off the event loop.
                    rec.book_snapshot((ts_recv_ns, d.symbol, update_id, bids, asks))
        elif kind is MarkPriceUpdate:
            m: MarkPriceUpdate = event  # type: ignore[assignment]
            rec.mark(
                (
                    ts_recv_ns,
                    m.ts_event_ms,
                    m.symbol,
                    m.mark_price,
                    m.index_price,
                    m.funding_rate,
                    m.ts_next_funding_ms,
                )
            )
