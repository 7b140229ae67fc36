"""Shared builders for the risk, paper and portfolio tests (no tests of its own).

Exchange filters come from the reference exchangeInfo, books from the reference recording or from
USD-M-shaped events; databases are real SQLite files with the trading migrations plus ours.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from app.binance.filters import SymbolFilters, parse_symbol_filters
from app.clock import ManualClock
from app.config import RiskConfig
from app.engine.book import DiffDepthSync, OrderBook
from app.engine.decode import decode_frame
from app.engine.events import AggTrade, DepthUpdate, Event, Level, MarkPriceUpdate
from app.engine.orders import ClientOrderIds, Fill, Liquidity, Side
from app.engine.portfolio import AccountSnapshot, Portfolio
from app.engine.risk import Intent, RiskContext, RiskGate
from app.store import db, schema
from tests.engine.reference import MARKET, recorded_frames, recorded_snapshots

MIGRATIONS = schema.TRADING_MIGRATIONS
SUSHI = "SUSHIUSDT"
BTC = "BTCUSDT"


@functools.cache
def reference_filters() -> dict[str, SymbolFilters]:
    """Every symbol's filters from the recorded exchangeInfo response."""
    line = (MARKET / "usdm_2021-07-22_exchangeInfo.txt").read_text().splitlines()[0]
    _, body = line.split(": ", 1)
    return parse_symbol_filters(json.loads(body))


def open_db(path: Path) -> sqlite3.Connection:
    """A trading database file with our migration applied (as the writer opens it)."""
    conn = db.connect(path, synchronous="FULL")
    db.migrate(conn, MIGRATIONS)
    return conn


def direct(conn: sqlite3.Connection) -> Callable[[Callable[[sqlite3.Connection], Any]], Any]:
    """A ``submit`` that runs the function at once on ``conn`` (the writer thread's stand-in)."""
    return lambda fn: fn(conn)


@functools.cache
def sushi_events() -> tuple[tuple[int, Event], ...]:
    """Every SUSHIUSDT event of the reference recording as (receive time ns, event), in order."""
    events: list[tuple[int, Event]] = []
    for frame in recorded_frames():
        event = decode_frame(frame.raw).data
        if event.symbol == SUSHI:
            events.append((frame.ts_recv_ns, event))
    return tuple(events)


def synced_sushi_book() -> OrderBook:
    """SUSHIUSDT's full book (1,000 levels a side) after the whole recording, synced from the
    reference snapshot by the documented procedure."""
    book = OrderBook(SUSHI)
    sync = DiffDepthSync(book)
    snapshot = recorded_snapshots()[SUSHI].snapshot
    for _, event in sushi_events():
        if isinstance(event, DepthUpdate):
            sync.on_event(event)
            if sync.needs_snapshot:
                sync.apply_snapshot(snapshot)
    assert book.synced
    return book


def depth(
    symbol: str, bids: list[Level], asks: list[Level], update_id: int, ts_ms: int
) -> DepthUpdate:
    """A USD-M partial-depth (``depth20@100ms``) event."""
    return DepthUpdate(
        ts_event_ms=ts_ms,
        ts_trans_ms=ts_ms,
        symbol=symbol,
        first_update_id=update_id,
        final_update_id=update_id,
        prev_final_update_id=update_id - 1,
        bids=bids,
        asks=asks,
    )


def partial_book(
    symbol: str, bids: list[Level], asks: list[Level], update_id: int = 1, ts_ms: int = 0
) -> OrderBook:
    book = OrderBook(symbol)
    book.apply_partial(depth(symbol, bids, asks, update_id, ts_ms))
    return book


def agg_trade(symbol: str, price: str, qty: str, *, taker_sold: bool, ts_ms: int = 0) -> AggTrade:
    """An aggTrade; ``taker_sold`` is Binance's ``m`` (the buyer was the maker)."""
    return AggTrade(
        ts_event_ms=ts_ms,
        symbol=symbol,
        agg_trade_id=ts_ms,
        price=price,
        qty=qty,
        first_trade_id=ts_ms,
        last_trade_id=ts_ms,
        ts_trade_ms=ts_ms,
        buyer_is_maker=taker_sold,
    )


def mark_price(
    symbol: str, mark: str, rate: str, next_funding_ms: int, ts_ms: int
) -> MarkPriceUpdate:
    return MarkPriceUpdate(
        ts_event_ms=ts_ms,
        symbol=symbol,
        mark_price=mark,
        index_price=mark,
        est_settle_price=mark,
        funding_rate=rate,
        ts_next_funding_ms=next_funding_ms,
    )


def gate(
    clock: ManualClock, cfg: RiskConfig | None = None, *, boot: int = 1, **kwargs: Any
) -> RiskGate:
    return RiskGate(cfg or RiskConfig(), clock, ClientOrderIds(boot), **kwargs)


def intent(
    clock: ManualClock,
    side: Side = Side.BUY,
    *,
    symbol: str = SUSHI,
    confidence: float = 0.6,
    price: str = "7.612",
    atr: str = "0.02",
    **kwargs: Any,
) -> Intent:
    return Intent(
        symbol=symbol,
        side=side,
        confidence=confidence,
        reference_price=Decimal(price),
        atr=Decimal(atr),
        model_version="m1",
        ts_ns=clock.time_ns(),
        **kwargs,
    )


def context(account: AccountSnapshot, symbol: str = SUSHI, **pending: Decimal) -> RiskContext:
    return RiskContext(account, reference_filters().get(symbol), pending)


def flat_account(clock: ManualClock, balance: str = "10000") -> AccountSnapshot:
    return Portfolio(Decimal(balance)).snapshot(clock.time_ns())


def holding_account(
    clock: ManualClock,
    *fills: tuple[str, Side, str, str],
    balance: str = "10000",
    marks: dict[str, str] | None = None,
) -> AccountSnapshot:
    """An account holding positions opened by fee-free fills (symbol, side, qty, price), each
    then marked at ``marks[symbol]`` (at its fill price when not given)."""
    portfolio = Portfolio(Decimal(balance))
    for symbol, side, qty, price in fills:
        portfolio.apply_fill(
            Fill("x", symbol, side, Decimal(price), Decimal(qty), Decimal(0), Liquidity.TAKER, 0)
        )
    for symbol, mark in (marks or {}).items():
        portfolio.mark(symbol, Decimal(mark))
    return portfolio.snapshot(clock.time_ns())
