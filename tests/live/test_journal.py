"""The write-ahead journal's guarantees, each on a real ``orders.db`` and the real simulator:
durable commits, each fill counted once, exchange statuses mapped to stages, and an intent the
exchange never received settled as ``not_sent``."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from app.clock import SystemClock
from app.engine.orders import OrderStatus
from app.engine.risk import RiskGate
from app.live import journal as j
from app.live.client import RestExchange
from app.live.journal import OrderJournal
from app.live.venue import LiveVenue, fill_from_trade
from tests.live.conftest import FAST, SYMBOL, entry, filters_of, mark_price


async def _venue(
    client: RestExchange, journal: OrderJournal, gate: RiskGate, clock: SystemClock
) -> LiveVenue:
    venue = LiveVenue(client, journal, gate, clock, await filters_of(client), FAST, (SYMBOL,))
    venue.release()
    return venue


async def test_the_journal_commits_with_synchronous_full(journal: OrderJournal) -> None:
    # 2 = FULL: a commit is on the disk (not only in the OS cache) when record_intent returns.
    # The setting is per connection, so ask the journal's own writer connection.
    row = await journal._db.call(lambda c: c.execute("PRAGMA synchronous").fetchone())
    assert row == (2,)
    mode = await journal._db.call(lambda c: c.execute("PRAGMA journal_mode").fetchone())
    assert mode == ("wal",)


@pytest.mark.parametrize(
    ("status", "stage"),
    [
        ("NEW", j.OPEN),
        ("PARTIALLY_FILLED", j.OPEN),
        ("FILLED", j.DONE),
        ("CANCELED", j.DONE),
        ("EXPIRED", j.DONE),
        ("REJECTED", j.REJECTED),
    ],
)
def test_every_exchange_status_maps_to_its_stage(status: str, stage: str) -> None:
    assert j.stage_of(status) == stage


async def test_cancelled_protection_is_journalled_done_and_canceled(
    client: RestExchange, journal: OrderJournal, gate: RiskGate, clock: SystemClock
) -> None:
    venue = await _venue(client, journal, gate, clock)
    order = entry(gate, await filters_of(client), await mark_price(client), "0.010")
    assert (await venue.place(order)).status is OrderStatus.FILLED
    assert await venue.cancel_all("test") == 2  # the stop and the take-profit
    for kind in ("sl", "tp"):
        row = await journal.order(f"{order.client_id}-{kind}")
        assert row is not None
        assert (row["stage"], row["status"]) == (j.DONE, "CANCELED"), kind
    assert await journal.orders(j.UNSETTLED) == []


async def test_each_fill_reaches_the_books_once(
    client: RestExchange, journal: OrderJournal, gate: RiskGate, clock: SystemClock
) -> None:
    venue = await _venue(client, journal, gate, clock)
    order = entry(gate, await filters_of(client), await mark_price(client), "0.010")
    assert (await venue.place(order)).status is OrderStatus.FILLED
    rows = await client.user_trades(SYMBOL)
    fills = [fill_from_trade(r) for r in rows]
    assert sum(f.qty for f in fills) == Decimal("0.010")
    first = await venue.apply_fills(fills)
    assert first == fills
    assert venue.position_qty(SYMBOL) == Decimal("0.010")
    # The same executions again, from userTrades and as the stream would carry them.
    assert await venue.apply_fills(fills) == []
    as_stream = [dataclasses.replace(f, client_id=order.client_id, source="stream") for f in fills]
    assert await venue.apply_fills(as_stream) == []
    assert venue.position_qty(SYMBOL) == Decimal("0.010")
    stored = await journal.fills(SYMBOL)
    assert len(stored) == len(fills)
    assert {r["client_id"] for r in stored} == {order.client_id}  # mapped by the order id


async def test_an_intent_the_exchange_never_got_is_settled_not_sent(
    client: RestExchange, journal: OrderJournal, gate: RiskGate, clock: SystemClock
) -> None:
    venue = await _venue(client, journal, gate, clock)
    # A crash between the commit of the intent and the request: only the intent exists.
    order = entry(gate, await filters_of(client), await mark_price(client), "0.010")
    await journal.record_intent(order, "model signal", clock.time_ns())
    assert await venue.resync_open() == 0
    row = await journal.order(order.client_id)
    assert row is not None
    assert (row["stage"], row["status"]) == (j.NOT_SENT, "NOT_SENT")
    assert await journal.orders(j.UNSETTLED) == []
    assert venue.orders_sent == 0  # settling it sent nothing
    assert await client.open_orders(SYMBOL) == []
