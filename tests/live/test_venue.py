"""The live order path: write-ahead ledger, exchange refusals as risk events, unknown states
resolved by query with no duplicate, protective stops on the exchange."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from app.binance.signed import SignedRest
from app.binance.signing import Credentials
from app.binance.transport import Params
from app.clock import SystemClock
from app.config import LiveConfig
from app.engine.orders import OrderStatus
from app.engine.risk import RiskEvent, RiskGate, recent_risk_events, record_risk_event
from app.live.ledger import OrderLedger
from app.live.venue import LiveVenue
from app.store import schema
from app.store.writer import DbWriter
from tests.live.conftest import FAST, KEY, SECRET, SYMBOL, entry, filters_of, mark_price, sim_fills
from tests.simproc import SimHandle


async def _venue(
    client: SignedRest,
    ledger: OrderLedger,
    gate: RiskGate,
    clock: SystemClock,
    cfg: LiveConfig = FAST,
    events: list[RiskEvent] | None = None,
) -> LiveVenue:
    filters = await filters_of(client)
    venue = LiveVenue(
        client, ledger, gate, clock, filters, cfg, (SYMBOL,),
        record_risk=(events.append if events is not None else lambda _: None),
    )  # fmt: skip
    venue.release()
    return venue


@dataclass(frozen=True)
class SeenAtRequest:
    """What another reader of ``orders.db`` found at the moment a request was about to leave."""

    client_id: str
    row: dict[str, Any] | None


class LedgerWitnessExchange(SignedRest):
    """The real REST client, plus a witness: when ``new_order`` is called it opens
    ``orders.db`` read-only (another connection, as a restart would) and notes the order's row
    before the request is sent."""

    def __init__(self, orders_db: Path, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.orders_db = orders_db
        self.seen: list[SeenAtRequest] = []

    async def new_order(self, params: Params) -> dict[str, Any]:
        client_id = str(params["newClientOrderId"])
        conn = sqlite3.connect(f"file:{self.orders_db}?mode=ro", uri=True)
        try:
            conn.row_factory = sqlite3.Row
            row = conn.execute("SELECT * FROM orders WHERE client_id = ?", (client_id,)).fetchone()
        finally:
            conn.close()
        self.seen.append(SeenAtRequest(client_id, None if row is None else dict(row)))
        return await super().new_order(params)


async def test_intent_is_committed_before_the_request_and_stops_follow_the_fill(
    live_sim: SimHandle,
    client: SignedRest,
    ledger: OrderLedger,
    gate: RiskGate,
    clock: SystemClock,
) -> None:
    witness = LedgerWitnessExchange(
        ledger.path, live_sim.rest_url, Credentials(KEY, SECRET), FAST, clock
    )
    try:
        await witness.sync_time()
        venue = await _venue(witness, ledger, gate, clock)
        filters = await filters_of(client)
        order = entry(gate, filters, await mark_price(client), "0.010")
        assert order.client_id == "app-1-1"  # the gate's id space, sent as newClientOrderId
        update = await venue.place(order, "model signal")
    finally:
        await witness.aclose()
    assert update.status is OrderStatus.FILLED
    # Each of the three requests (entry, stop, take-profit) found its intent committed.
    ids = [order.client_id, f"{order.client_id}-sl", f"{order.client_id}-tp"]
    assert [s.client_id for s in witness.seen] == ids
    for seen in witness.seen:
        assert seen.row is not None, f"{seen.client_id}: no committed intent at request time"
        assert (seen.row["stage"], seen.row["status"], seen.row["order_id"]) == ("intent", "", None)
    first = witness.seen[0].row
    assert first is not None
    assert (first["symbol"], first["side"], first["qty"]) == (SYMBOL, "BUY", "0.010")
    assert (first["reason"], first["stop_price"]) == ("model signal", str(order.stop_price))
    kinds = [e["kind"] for e in await ledger.events(order.client_id)]
    assert kinds[0] == "intent" and "response" in kinds
    row = await ledger.order(order.client_id)
    assert row is not None and row["stage"] == "done" and row["reason"] == "model signal"
    assert row["model_version"] == "test" and row["qty"] == "0.010"
    # Protective exits rest on the exchange: reduce-only STOP_MARKET at the gate's stop and
    # TAKE_PROFIT_MARKET at its take-profit.
    open_orders = {o["clientOrderId"]: o for o in await client.open_orders(SYMBOL)}
    sl, tp = open_orders["app-1-1-sl"], open_orders["app-1-1-tp"]
    assert sl["type"] == "STOP_MARKET" and sl["reduceOnly"] is True and sl["side"] == "SELL"
    assert Decimal(sl["stopPrice"]) == order.stop_price
    assert tp["type"] == "TAKE_PROFIT_MARKET" and Decimal(tp["stopPrice"]) == order.take_profit
    assert len(sim_fills(live_sim, order.client_id)) >= 1


async def test_margin_and_filter_refusals_become_risk_events(
    tmp_path: Path,
    live_sim: SimHandle,
    client: SignedRest,
    ledger: OrderLedger,
    gate: RiskGate,
    clock: SystemClock,
) -> None:
    trading = DbWriter(tmp_path / "trading.db", schema.TRADING_MIGRATIONS)

    def record(event: RiskEvent) -> None:
        trading.submit(lambda c: record_risk_event(c, event))

    try:
        venue = LiveVenue(
            client, ledger, gate, clock, await filters_of(client), FAST, (SYMBOL,),
            record_risk=record,
        )  # fmt: skip
        venue.release()
        filters = await filters_of(client)
        price = await mark_price(client)
        # The gate believes in a large account; the exchange (10,000 USDT at 1x) does not.
        await client.set_leverage(SYMBOL, 1)
        big = entry(gate, filters, price, "1.400", atr="1", equity=Decimal("100000000"))
        refused = await venue.place(big)
        assert refused.status is OrderStatus.REJECTED
        assert "-2019" in refused.reason
        # Judged at 10x the price the gate passes minNotional; at the real price it is short.
        small = entry(gate, filters, price * 10, "0.001", atr="1", equity=Decimal("100000000"))
        refused_small = await venue.place(small)
        assert refused_small.status is OrderStatus.REJECTED
        assert "-4164" in refused_small.reason
        events = await trading.call(lambda c: recent_risk_events(c, 10))
        codes = {e.code: e for e in events}
        assert codes["exchange:-2019"].kind == "rejected"
        assert "Margin is insufficient" in codes["exchange:-2019"].message
        assert codes["exchange:-2019"].detail["client_id"] == big.client_id
        assert "notional" in codes["exchange:-4164"].message
        for o in (big, small):
            row = await ledger.order(o.client_id)
            assert row is not None and row["stage"] == "rejected"
        assert sim_fills(live_sim) == []
    finally:
        trading.close()


async def _no_duplicate(sim: SimHandle, client: SignedRest, client_id: str) -> None:
    fills = sim_fills(sim, client_id)
    assert fills, "the order should have filled"
    assert len({f["orderId"] for f in fills}) == 1  # one order at the exchange, not two
    open_ids = [o["clientOrderId"] for o in await client.open_orders(SYMBOL)]
    assert open_ids.count(f"{client_id}-sl") == 1
    assert open_ids.count(f"{client_id}-tp") == 1


async def test_503_unknown_is_resolved_by_query_without_a_duplicate(
    live_sim: SimHandle,
    client: SignedRest,
    ledger: OrderLedger,
    gate: RiskGate,
    clock: SystemClock,
) -> None:
    venue = await _venue(client, ledger, gate, clock)
    order = entry(gate, await filters_of(client), await mark_price(client), "0.010")
    live_sim.set_faults(order_unknown_503=True)
    update = await venue.place(order)
    live_sim.set_faults(order_unknown_503=False)
    assert update.status is OrderStatus.FILLED
    assert venue.resent == 0
    assert venue.resolved_by_query == 3  # the entry and both protective exits
    kinds = [e["kind"] for e in await ledger.events(order.client_id)]
    assert kinds[:3] == ["intent", "error", "query"]
    await _no_duplicate(live_sim, client, order.client_id)


async def test_accepted_then_timeout_is_resolved_by_query_without_a_duplicate(
    live_sim: SimHandle,
    client: SignedRest,
    ledger: OrderLedger,
    gate: RiskGate,
    clock: SystemClock,
) -> None:
    cfg = LiveConfig(order_timeout_s=0.5)
    slow = SignedRest(live_sim.rest_url, Credentials(KEY, SECRET), cfg, clock)
    try:
        await slow.sync_time()
        venue = await _venue(slow, ledger, gate, clock, cfg)
        order = entry(gate, await filters_of(client), await mark_price(client), "0.010")
        live_sim.set_faults(order_timeout_s=3.0)
        update = await venue.place(order)
        live_sim.set_faults(order_timeout_s=None)
        assert update.status is OrderStatus.FILLED
        assert venue.resent == 0
        assert venue.resolved_by_query >= 1
        events = await ledger.events(order.client_id)
        assert [e["kind"] for e in events][:3] == ["intent", "error", "query"]
        assert "state unknown" in events[1]["body"]
        await _no_duplicate(live_sim, client, order.client_id)
    finally:
        await slow.aclose()


async def test_halted_venue_refuses_entries_but_not_exits(
    client: SignedRest, ledger: OrderLedger, gate: RiskGate, clock: SystemClock
) -> None:
    venue = await _venue(client, ledger, gate, clock)
    venue.halt("test")
    order = entry(gate, await filters_of(client), await mark_price(client), "0.010")
    update = venue.submit(order)
    assert update.status is OrderStatus.REJECTED and "halted" in update.reason
    assert await ledger.order(order.client_id) is None  # nothing sent, nothing recorded
    exit_order = gate.exit_order(SYMBOL, Decimal("0.010"), "exit:stop", clock.time_ns())
    assert exit_order is not None
    accepted = venue.submit(exit_order)
    assert accepted.status is OrderStatus.NEW
    await venue.drain()
    row = await ledger.order(exit_order.client_id)
    # Reduce-only with no position: it went out, and the exchange refused it (-2022).
    assert row is not None
    assert (row["stage"], row["status"]) == ("rejected", "REJECTED")
    assert "-2022" in row["detail"]
    assert [e["kind"] for e in await ledger.events(exit_order.client_id)] == [
        "intent", "rejected"
    ]  # fmt: skip


def test_forced_closes_are_recognised_by_binance_client_ids() -> None:
    from app.live.venue import forced_close

    # The simulator's liquidation (tests/sim/test_margin.py) and Binance's documented ids.
    assert forced_close({"c": "autoclose-1700000000000", "o": "LIQUIDATION"}) == "liquidation"
    assert forced_close({"c": "autoclose-1", "o": "MARKET"}) == "liquidation"
    assert forced_close({"c": "settlement_autoclose-1", "o": "MARKET"}) == "liquidation"
    assert forced_close({"c": "adl_autoclose", "o": "MARKET"}) == "adl"
    assert forced_close({"c": "app-1-7", "o": "MARKET", "ot": "STOP_MARKET"}) is None
