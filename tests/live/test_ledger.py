"""The write-ahead ledger's guarantees, each on a real ``orders.db`` and the real simulator:
durable commits, each fill counted once, exchange statuses mapped to stages, and an intent the
exchange never received settled as ``not_sent``."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from app.binance.signed import SignedRest
from app.clock import SystemClock
from app.engine.orders import OrderStatus
from app.engine.risk import RiskGate
from app.live import ledger as lg
from app.live.ledger import OrderLedger
from app.live.venue import LiveVenue, fill_from_trade
from tests.live.conftest import FAST, SYMBOL, entry, filters_of, mark_price


async def _venue(
    client: SignedRest, ledger: OrderLedger, gate: RiskGate, clock: SystemClock
) -> LiveVenue:
    venue = LiveVenue(client, ledger, gate, clock, await filters_of(client), FAST, (SYMBOL,))
    venue.release()
    return venue


async def test_the_ledger_commits_with_synchronous_full(ledger: OrderLedger) -> None:
    # 2 = FULL: a commit is on the disk (not only in the OS cache) when record_intent returns.
    # The setting is per connection, so ask the ledger's own writer connection.
    row = await ledger._db.call(lambda c: c.execute("PRAGMA synchronous").fetchone())
    assert row == (2,)
    mode = await ledger._db.call(lambda c: c.execute("PRAGMA journal_mode").fetchone())
    assert mode == ("wal",)


@pytest.mark.parametrize(
    ("status", "stage"),
    [
        ("NEW", lg.OPEN),
        ("PARTIALLY_FILLED", lg.OPEN),
        ("FILLED", lg.DONE),
        ("CANCELED", lg.DONE),
        ("EXPIRED", lg.DONE),
        ("REJECTED", lg.REJECTED),
    ],
)
def test_every_exchange_status_maps_to_its_stage(status: str, stage: str) -> None:
    assert lg.stage_of(status) == stage


async def test_cancelled_protection_is_recorded_done_and_canceled(
    client: SignedRest, ledger: OrderLedger, gate: RiskGate, clock: SystemClock
) -> None:
    venue = await _venue(client, ledger, gate, clock)
    order = entry(gate, await filters_of(client), await mark_price(client), "0.010")
    assert (await venue.place(order)).status is OrderStatus.FILLED
    assert await venue.cancel_all("test") == 2  # the stop and the take-profit
    for kind in ("sl", "tp"):
        row = await ledger.order(f"{order.client_id}-{kind}")
        assert row is not None
        assert (row["stage"], row["status"]) == (lg.DONE, "CANCELED"), kind
    assert await ledger.orders(lg.UNSETTLED) == []


async def test_each_fill_reaches_the_books_once(
    client: SignedRest, ledger: OrderLedger, gate: RiskGate, clock: SystemClock
) -> None:
    venue = await _venue(client, ledger, gate, clock)
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
    stored = await ledger.fills(SYMBOL)
    assert len(stored) == len(fills)
    assert {r["client_id"] for r in stored} == {order.client_id}  # mapped by the order id


async def test_an_intent_the_exchange_never_got_is_settled_not_sent(
    client: SignedRest, ledger: OrderLedger, gate: RiskGate, clock: SystemClock
) -> None:
    venue = await _venue(client, ledger, gate, clock)
    # A crash between the commit of the intent and the request: only the intent exists.
    order = entry(gate, await filters_of(client), await mark_price(client), "0.010")
    await ledger.record_intent(order, "model signal", clock.time_ns())
    assert await venue.resync_open() == 0
    row = await ledger.order(order.client_id)
    assert row is not None
    assert (row["stage"], row["status"]) == (lg.NOT_SENT, "NOT_SENT")
    assert await ledger.orders(lg.UNSETTLED) == []
    assert venue.orders_sent == 0  # settling it sent nothing
    assert await client.open_orders(SYMBOL) == []
