"""The live venue in-process against a loopback exchange speaking Binance's documented answers
(tests/live/fake_binance.py): every order path, refusal and unknown state; the user-data stream;
fills and income recovery; resync after a restart; bulk cancel and flatten. Each test reads back
what a trader would: the order sent, the ledger row and events, the position, the refusal."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from app.binance.filters import SymbolFilters
from app.binance.signed import SignedRest
from app.binance.signing import Credentials
from app.clock import ManualClock
from app.engine.events import MarkPriceUpdate
from app.engine.orders import (
    ClientOrderIds,
    Order,
    OrderNotApprovedError,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Side,
)
from app.engine.portfolio import Portfolio, Position
from app.engine.risk import RiskEvent, RiskGate
from app.live.ledger import LedgerFill, OrderLedger
from app.live.venue import (
    LiveVenue,
    _opt_dec,
    fill_from_stream,
    fill_from_trade,
    forced_close,
    order_params,
    protective_params,
)
from tests.live.conftest import FAST, KEY, RISK, SECRET, SYMBOL, entry
from tests.live.fake_binance import UNKNOWN_503, FakeBinance, Fault, error
from tests.paths import REFERENCE

ETH = "ETHUSDT"
FILTERS = {
    SYMBOL: SymbolFilters(SYMBOL, Decimal("0.1"), Decimal("0.001"), Decimal("100"), 2, 3),
    ETH: SymbolFilters(ETH, Decimal("0.01"), Decimal("0.001"), Decimal("20"), 2, 3),
}
PRICE = Decimal("50000")
ORDER = "/fapi/v1/order"
ONE_TRY = replace(FAST, resolve_attempts=1)


@pytest.fixture
def exchange() -> Iterator[FakeBinance]:
    yield from FakeBinance(KEY, SECRET).serve()


@pytest.fixture
def mclock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def rest(exchange: FakeBinance, mclock: ManualClock) -> AsyncIterator[SignedRest]:
    c = SignedRest(exchange.url, Credentials(KEY, SECRET), FAST, mclock)
    yield c
    await c.aclose()


@pytest.fixture
def mgate(mclock: ManualClock) -> RiskGate:
    return RiskGate(RISK, mclock, ClientOrderIds(1))


@pytest.fixture
def events() -> list[RiskEvent]:
    return []


@pytest.fixture
def venue(
    rest: SignedRest,
    ledger: OrderLedger,
    mgate: RiskGate,
    mclock: ManualClock,
    events: list[RiskEvent],
) -> LiveVenue:
    v = LiveVenue(
        rest, ledger, mgate, mclock, FILTERS, FAST, ("btcusdt", "ethusdt"),
        record_risk=events.append,
    )  # fmt: skip
    v.release()
    return v


def buy(gate: RiskGate, qty: str = "0.010", symbol: str = SYMBOL) -> Order:
    """A sealed market entry of ``qty`` at 50,000 (the gate adds stop and take-profit)."""
    if symbol == SYMBOL:
        return entry(gate, FILTERS, PRICE, qty)
    from app.engine.risk import Approved, Intent, RiskContext

    intent = Intent(symbol, Side.BUY, 0.9, Decimal("3000"), Decimal("5"), "test", 0)
    intent = replace(intent, qty=Decimal(qty))
    decision = gate.check(intent, RiskContext(Portfolio(Decimal(10000)).snapshot(0), FILTERS[ETH]))
    assert isinstance(decision, Approved), decision
    return decision.order


def trade_update(
    client_id: str,
    *,
    x: str = "TRADE",
    status: str = "FILLED",
    side: str = "BUY",
    qty: str = "0.010",
    filled: str = "0.010",
    price: str = "50000.0",
    trade_id: int = 5001,
    order_id: int = 8001,
    order_type: str = "MARKET",
    symbol: str = SYMBOL,
) -> dict[str, Any]:
    """An ``ORDER_TRADE_UPDATE`` in the documented shape (USD-M user data stream)."""
    return {
        "e": "ORDER_TRADE_UPDATE",
        "E": 1568879465651,
        "T": 1568879465650,
        "o": {
            "s": symbol, "c": client_id, "S": side, "o": order_type, "f": "GTC", "q": qty,
            "p": "0", "ap": price if filled != "0" else "0", "sp": "0", "x": x, "X": status,
            "i": order_id, "l": qty if x == "TRADE" else "0", "z": filled,
            "L": price if x == "TRADE" else "0", "N": "USDT", "n": "0.20000000",
            "T": 1568879465650, "t": trade_id if x == "TRADE" else 0, "b": "0", "a": "0",
            "m": False, "R": False, "wt": "CONTRACT_PRICE", "ot": order_type, "ps": "BOTH",
            "cp": False, "rp": "0", "pP": False, "si": 0, "ss": 0, "V": "NONE", "pm": "NONE",
            "gtd": 0,
        },
    }  # fmt: skip


def user_trade(
    trade_id: int, order_id: int, side: str = "BUY", qty: str = "0.010"
) -> dict[str, Any]:
    """A ``GET /fapi/v1/userTrades`` row in the documented shape."""
    return {
        "buyer": side == "BUY", "commission": "0.20000000", "commissionAsset": "USDT",
        "id": trade_id, "maker": False, "orderId": order_id, "price": "50000.0", "qty": qty,
        "quoteQty": "500.0", "realizedPnl": "0", "side": side, "positionSide": "BOTH",
        "symbol": SYMBOL, "time": 1569514978020,
    }  # fmt: skip


def posted(exchange: FakeBinance) -> list[str]:
    return [p["newClientOrderId"] for p in exchange.sent("POST", ORDER)]


async def kinds(ledger: OrderLedger, client_id: str) -> list[str]:
    return [e["kind"] for e in await ledger.events(client_id)]


# -- pure helpers ---------------------------------------------------------------------------------


def test_order_params_are_binance_new_order_fields() -> None:
    limit = Order(
        "app-1-9", SYMBOL, Side.SELL, OrderType.LIMIT, Decimal("0.010"), Decimal("50100.5"),
        True, None, None, 0, "m", "reduce", b"",
    )  # fmt: skip
    assert order_params(limit) == {
        "symbol": SYMBOL,
        "side": "SELL",
        "type": "LIMIT",
        "quantity": "0.010",
        "newClientOrderId": "app-1-9",
        "price": "50100.5",
        "timeInForce": "GTC",
        "reduceOnly": "true",
    }
    market = replace(limit, type=OrderType.MARKET, price=None, reduce_only=False, side=Side.BUY)
    assert order_params(market) == {
        "symbol": SYMBOL,
        "side": "BUY",
        "type": "MARKET",
        "quantity": "0.010",
        "newClientOrderId": "app-1-9",
    }


def test_protective_params_close_the_entry_at_its_levels() -> None:
    long = Order(
        "app-1-3", SYMBOL, Side.BUY, OrderType.MARKET, Decimal("0.020"), None, False,
        Decimal("49000.0"), Decimal("52000.0"), 0, "m", "entry", b"",
    )  # fmt: skip
    assert protective_params(long, "sl", Decimal("0.015"), Decimal("49000.0")) == (
        "app-1-3-sl",
        {
            "symbol": SYMBOL,
            "side": "SELL",
            "type": "STOP_MARKET",
            "quantity": "0.015",
            "stopPrice": "49000.0",
            "reduceOnly": "true",
            "workingType": "CONTRACT_PRICE",
            "newClientOrderId": "app-1-3-sl",
        },
    )
    short = replace(long, side=Side.SELL)
    client_id, params = protective_params(short, "tp", Decimal("0.020"), Decimal("48000.0"))
    assert client_id == "app-1-3-tp"
    assert (params["side"], params["type"]) == ("BUY", "TAKE_PROFIT_MARKET")


def test_a_stream_trade_becomes_a_ledger_fill_with_every_field() -> None:
    doc = trade_update("app-1-1")["o"]
    doc.update({"n": "0.01500000", "N": "BNB", "rp": "12.5", "m": True, "L": "50010.5"})
    assert fill_from_stream(doc) == LedgerFill(
        symbol=SYMBOL,
        trade_id=5001,
        order_id=8001,
        client_id="app-1-1",
        side="BUY",
        price=Decimal("50010.5"),
        qty=Decimal("0.010"),
        commission=Decimal("0.01500000"),
        commission_asset="BNB",
        realized_pnl=Decimal("12.5"),
        maker=True,
        ts_ms=1568879465650,
        source="stream",
    )
    bare = {k: v for k, v in doc.items() if k not in ("n", "N", "rp", "m")}
    f = fill_from_stream(bare)
    assert (f.commission, f.commission_asset, f.realized_pnl, f.maker) == (0, "USDT", 0, False)
    assert fill_from_stream({**bare, "N": ""}).commission_asset == "USDT"


def test_a_user_trades_row_becomes_a_ledger_fill_with_every_field() -> None:
    row = {
        "buyer": False, "commission": "-0.07819010", "commissionAsset": "BNB", "id": 698759,
        "maker": True, "orderId": 25851813, "price": "7819.01", "qty": "0.002",
        "quoteQty": "15.63802", "realizedPnl": "-0.91539999", "side": "SELL",
        "positionSide": "SHORT", "symbol": "BTCUSDT", "time": 1569514978020,
    }  # fmt: skip
    assert fill_from_trade(row) == LedgerFill(
        symbol="BTCUSDT",
        trade_id=698759,
        order_id=25851813,
        client_id=None,
        side="SELL",
        price=Decimal("7819.01"),
        qty=Decimal("0.002"),
        commission=Decimal("-0.07819010"),
        commission_asset="BNB",
        realized_pnl=Decimal("-0.91539999"),
        maker=True,
        ts_ms=1569514978020,
        source="userTrades",
    )
    bare = {k: v for k, v in row.items() if k not in ("commissionAsset", "realizedPnl", "maker")}
    f = fill_from_trade(bare)
    assert (f.commission_asset, f.realized_pnl, f.maker) == ("USDT", 0, False)
    assert fill_from_trade({**bare, "commissionAsset": ""}).commission_asset == "USDT"


def test_forced_closes_by_order_type_alone() -> None:
    assert forced_close({"c": "web_1", "o": "ADL"}) == "adl"
    assert forced_close({"c": "web_1", "o": "LIQUIDATION"}) == "liquidation"
    assert forced_close({"c": "web_1", "o": "MARKET", "ot": "LIQUIDATION"}) == "liquidation"
    assert forced_close({"c": "adl_autoclose", "o": "LIQUIDATION"}) == "adl"
    assert forced_close({"o": "MARKET"}) is None
    assert forced_close({}) is None


def test_optional_decimals_of_a_ledger_row() -> None:
    assert _opt_dec(None) is None
    assert _opt_dec("") is None
    assert _opt_dec("49000.5") == Decimal("49000.5")
    assert _opt_dec(0) == Decimal(0)


# -- state without I/O ----------------------------------------------------------------------------


async def test_a_new_venue_is_halted_until_reconciled(
    rest: SignedRest, ledger: OrderLedger, mgate: RiskGate, mclock: ManualClock
) -> None:
    book = Portfolio(Decimal("1234"))
    v = LiveVenue(rest, ledger, mgate, mclock, FILTERS, FAST, ("btcusdt",), portfolio=book)
    assert (v.halted, v.halt_reason) == (True, "not reconciled yet")
    assert v.symbols == (SYMBOL,)
    assert v.portfolio is book
    assert (v.orders_sent, v.resolved_by_query, v.resent, v.forced_closes) == (0, 0, 0, [])
    order = buy(mgate)
    refused = v.submit(order)
    assert refused == OrderUpdate(
        order, OrderStatus.REJECTED, Decimal(0), None, Decimal(0), mclock.now_ns,
        "live trading halted: not reconciled yet",
    )  # fmt: skip
    assert await ledger.order(order.client_id) is None
    plain = LiveVenue(rest, ledger, mgate, mclock, FILTERS, FAST, (SYMBOL,))
    assert plain.portfolio.balance == 0 and plain.portfolio.positions() == []


def test_halt_warns_once_and_release_clears_the_reason(
    venue: LiveVenue, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="app.live.venue"):
        venue.halt("clock drift")
        venue.halt("still drifting")
    assert (venue.halted, venue.halt_reason) == (True, "still drifting")
    assert [r.getMessage() for r in caplog.records] == ["live venue halted: clock drift"]
    venue.release()
    assert (venue.halted, venue.halt_reason) == (False, "")


def test_marks_snapshots_and_reset_books(venue: LiveVenue, mclock: ManualClock) -> None:
    doc = (REFERENCE / "binance" / "streams" / "usdm_markPriceUpdate.json").read_bytes()
    mark = msgspec.json.decode(doc, type=MarkPriceUpdate)
    venue.on_mark(mark, 0)
    assert venue.portfolio.position(SYMBOL).mark == Decimal("11794.15000000")
    assert venue.snapshot().ts_ns == mclock.now_ns
    assert venue.snapshot(7).ts_ns == 7
    own_mark = Position(ETH, Decimal("1"), Decimal("3000"), mark=Decimal("3100"))
    venue.reset_books(
        Decimal("9000"), [Position(SYMBOL, Decimal("-0.5"), Decimal("-6000")), own_mark]
    )
    assert venue.portfolio.balance == Decimal("9000")
    assert venue.position_qty(SYMBOL) == Decimal("-0.5")
    assert venue.portfolio.position(SYMBOL).mark == Decimal("11794.15000000")
    assert venue.portfolio.position(ETH).mark == Decimal("3100")
    assert venue.position_qty("XRPUSDT") == 0


# -- the order path -------------------------------------------------------------------------------


async def test_submit_answers_new_and_the_filled_entry_gets_both_exits(
    venue: LiveVenue,
    exchange: FakeBinance,
    ledger: OrderLedger,
    mgate: RiskGate,
    mclock: ManualClock,
) -> None:
    order = buy(mgate)
    update = venue.submit(order)
    assert update == OrderUpdate(
        order, OrderStatus.NEW, Decimal(0), None, Decimal(0), mclock.now_ns
    )
    assert venue.pending_qty() == {SYMBOL: Decimal("0.010")}
    assert venue.submit(order).reason == "duplicate_client_id"
    await venue.drain()
    assert venue.pending_qty() == {}
    assert venue.open_orders() == []
    assert posted(exchange) == [order.client_id, f"{order.client_id}-sl", f"{order.client_id}-tp"]
    assert venue.orders_sent == 3
    row = await ledger.order(order.client_id)
    assert row is not None
    assert (row["stage"], row["status"], row["reason"], row["filled_qty"], row["avg_price"]) == (
        "done", "FILLED", "entry", "0.010", "50000.0"
    )  # fmt: skip
    assert await kinds(ledger, order.client_id) == ["intent", "response"]
    for kind, purpose, level in (
        ("sl", "exit:stop", order.stop_price),
        ("tp", "exit:take_profit", order.take_profit),
    ):
        exit_row = await ledger.order(f"{order.client_id}-{kind}")
        assert exit_row is not None
        assert exit_row["purpose"] == exit_row["reason"] == purpose
        assert (exit_row["parent_id"], exit_row["side"], exit_row["qty"]) == (
            order.client_id, "SELL", "0.010"
        )  # fmt: skip
        assert (exit_row["reduce_only"], exit_row["stop_price"]) == (1, str(level))
        assert (exit_row["stage"], exit_row["status"], exit_row["type"]) == (
            "open",
            "NEW",
            "MARKET",
        )
        assert exit_row["model_version"] == "test"
        assert exit_row["ts_created_ns"] == mclock.now_ns
    sl = exchange.orders[f"{order.client_id}-sl"]
    assert (sl["type"], sl["stopPrice"], sl["reduceOnly"]) == (
        "STOP_MARKET",
        str(order.stop_price),
        True,
    )


async def test_unsealed_orders_are_refused_before_anything_is_sent(
    venue: LiveVenue, exchange: FakeBinance, mgate: RiskGate
) -> None:
    forged = replace(buy(mgate), qty=Decimal("1.000"))
    with pytest.raises(OrderNotApprovedError, match=f"order {forged.client_id} was not approved"):
        venue.submit(forged)
    with pytest.raises(OrderNotApprovedError, match=f"order {forged.client_id} was not approved"):
        await venue.place(forged)
    assert exchange.requests == []


async def test_place_records_the_reason_given_or_the_purpose(
    venue: LiveVenue, ledger: OrderLedger, mgate: RiskGate, mclock: ManualClock
) -> None:
    first, second = buy(mgate), buy(mgate)
    done = await venue.place(first)
    assert done == OrderUpdate(
        first, OrderStatus.FILLED, Decimal("0.010"), Decimal("50000.0"), Decimal(0), mclock.now_ns
    )
    await venue.place(second, "breakout")
    row1, row2 = await ledger.order(first.client_id), await ledger.order(second.client_id)
    assert row1 is not None and row2 is not None
    assert (row1["reason"], row2["reason"]) == ("entry", "breakout")
    venue.halt("test")
    third = buy(mgate)
    halted = await venue.place(third, "x")
    assert (halted.status, halted.reason, halted.ts_ns) == (
        OrderStatus.REJECTED, "live trading halted: test", mclock.now_ns
    )  # fmt: skip
    assert (halted.filled_qty, halted.avg_price, halted.fees) == (0, None, 0)


async def test_a_working_order_counts_as_pending_until_done(
    venue: LiveVenue, exchange: FakeBinance, mgate: RiskGate
) -> None:
    exchange.market_status = "NEW"
    a, b = buy(mgate, "0.010"), buy(mgate, "0.020")
    eth = buy(mgate, "0.500", ETH)
    for o in (a, b, eth):
        assert (await venue.place(o)).status is OrderStatus.NEW
    assert venue.pending_qty() == {SYMBOL: Decimal("0.030"), ETH: Decimal("0.500")}
    assert [u.order.client_id for u in venue.open_orders(ETH)] == [eth.client_id]
    assert len(venue.open_orders()) == 3
    # No exit before a fill: nothing but the three entries went out.
    assert posted(exchange) == [a.client_id, b.client_id, eth.client_id]
    await venue.on_user_event(
        trade_update(a.client_id, status="PARTIALLY_FILLED", qty="0.004", filled="0.004")
    )
    assert venue.pending_qty()[SYMBOL] == Decimal("0.026")
    assert len(posted(exchange)) == 3  # partly filled: not yet protected
    exit_order = mgate.exit_order(SYMBOL, Decimal("0.004"), "reduce", 0)
    assert exit_order is not None and exit_order.side is Side.SELL
    await venue.place(exit_order)
    assert venue.pending_qty()[SYMBOL] == Decimal("0.022")


async def test_margin_refusal_is_a_rejected_order_and_a_risk_event(
    venue: LiveVenue,
    exchange: FakeBinance,
    ledger: OrderLedger,
    mgate: RiskGate,
    mclock: ManualClock,
    events: list[RiskEvent],
) -> None:
    exchange.fail("POST", ORDER, Fault(400, error(-2019, "Margin is insufficient.")))
    order = buy(mgate)
    update = await venue.place(order)
    reason = "exchange -2019: Margin is insufficient."
    assert update == OrderUpdate(
        order, OrderStatus.REJECTED, Decimal(0), None, Decimal(0), mclock.now_ns, reason
    )
    assert events == [
        RiskEvent(
            mclock.now_ns, "rejected", "exchange:-2019", SYMBOL, reason,
            {"client_id": order.client_id, "side": "BUY", "qty": "0.010"},
        )
    ]  # fmt: skip
    row = await ledger.order(order.client_id)
    assert row is not None
    assert (row["stage"], row["status"], row["detail"]) == ("rejected", "REJECTED", reason)
    evs = await ledger.events(order.client_id)
    assert [e["kind"] for e in evs] == ["intent", "rejected"]
    assert evs[1]["body"] == '{"code": -2019, "msg": "Margin is insufficient."}'
    assert evs[1]["ts_ns"] == mclock.now_ns
    assert venue.open_orders() == [] and venue.pending_qty() == {}
    assert not venue.halted
    assert posted(exchange) == [order.client_id]  # no exits for a refused entry


async def test_a_refusal_without_a_message_keeps_the_whole_error(
    venue: LiveVenue, exchange: FakeBinance, mgate: RiskGate
) -> None:
    exchange.fail("POST", ORDER, Fault(400, {"code": -1111, "msg": ""}))
    update = await venue.place(buy(mgate))
    assert update.reason == "exchange -1111: POST /fapi/v1/order: HTTP 400 code -1111: "


async def test_rate_limit_on_an_order_rejects_it_without_halting(
    venue: LiveVenue, exchange: FakeBinance, mgate: RiskGate, events: list[RiskEvent]
) -> None:
    exchange.fail("POST", ORDER, Fault(429, error(-1003, "Too many requests.")))
    update = await venue.place(buy(mgate))
    assert update.status is OrderStatus.REJECTED
    assert update.reason == "exchange -1003: Too many requests."
    assert [e.code for e in events] == ["exchange:-1003"]
    assert not venue.halted


async def test_a_refused_api_key_rejects_the_order_and_halts(
    venue: LiveVenue, exchange: FakeBinance, ledger: OrderLedger, mgate: RiskGate
) -> None:
    exchange.fail("POST", ORDER, Fault(401, error(-2015, "Invalid API-key, IP, or permissions.")))
    order = buy(mgate)
    update = await venue.place(order)
    err = (
        "POST /fapi/v1/order: HTTP 401 code -2015: Invalid API-key, IP, or permissions. "
        "(check the API key, its secret and its permissions)"
    )
    assert update.reason == f"exchange -2015: {err}"
    assert venue.halted and venue.halt_reason == f"API key refused: {err}"
    row = await ledger.order(order.client_id)
    assert row is not None and row["stage"] == "rejected"


async def test_an_order_accepted_then_503_is_adopted_from_the_query(
    venue: LiveVenue,
    exchange: FakeBinance,
    ledger: OrderLedger,
    mgate: RiskGate,
    mclock: ManualClock,
) -> None:
    exchange.fail("POST", ORDER, replace(UNKNOWN_503, apply=True))
    order = buy(mgate)
    update = await venue.place(order)
    assert (update.status, update.filled_qty) == (OrderStatus.FILLED, Decimal("0.010"))
    assert (venue.resolved_by_query, venue.resent, venue.orders_sent) == (1, 0, 3)
    assert posted(exchange).count(order.client_id) == 1
    evs = await ledger.events(order.client_id)
    assert [e["kind"] for e in evs] == ["intent", "error", "query", "response"]
    error_body = msgspec.json.decode(evs[1]["body"])
    assert error_body["status"] == 503 and "HTTP 503" in error_body["error"]
    assert evs[1]["ts_ns"] == evs[2]["ts_ns"] == mclock.now_ns
    assert msgspec.json.decode(evs[2]["body"])["clientOrderId"] == order.client_id
    assert not venue.halted
    assert f"{order.client_id}-sl" in exchange.orders


async def test_an_order_lost_before_the_exchange_is_sent_once_more_under_its_id(
    venue: LiveVenue, exchange: FakeBinance, ledger: OrderLedger, mgate: RiskGate
) -> None:
    exchange.fail("POST", ORDER, UNKNOWN_503)
    order = buy(mgate)
    update = await venue.place(order)
    assert update.status is OrderStatus.FILLED
    assert (venue.resolved_by_query, venue.resent) == (0, 1)
    # Queried twice (a grace period apart), then the same client id once more.
    assert len(exchange.sent("GET", ORDER)) == 2
    assert posted(exchange)[:2] == [order.client_id, order.client_id]
    assert await kinds(ledger, order.client_id) == ["intent", "error", "response"]


async def test_a_resend_refused_as_duplicate_means_it_arrived_and_is_queried(
    venue: LiveVenue, exchange: FakeBinance, mgate: RiskGate
) -> None:
    exchange.fail("POST", ORDER, UNKNOWN_503)
    exchange.fail(
        "POST", ORDER, Fault(400, error(-4116, "ClientOrderId is duplicated."), apply=True)
    )
    update = await venue.place(buy(mgate))
    assert update.status is OrderStatus.FILLED
    assert (venue.resolved_by_query, venue.resent) == (1, 1)
    assert len(exchange.sent("GET", ORDER)) == 3


async def test_a_resend_that_fails_again_is_left_to_the_next_query(
    venue: LiveVenue, exchange: FakeBinance, mgate: RiskGate
) -> None:
    exchange.fail("POST", ORDER, UNKNOWN_503, replace(UNKNOWN_503, apply=True))
    update = await venue.place(buy(mgate))
    assert update.status is OrderStatus.FILLED
    assert (venue.resolved_by_query, venue.resent) == (1, 1)


async def test_a_query_rate_limited_waits_and_asks_again(
    venue: LiveVenue, exchange: FakeBinance, mgate: RiskGate
) -> None:
    exchange.fail("POST", ORDER, replace(UNKNOWN_503, apply=True))
    exchange.fail("GET", ORDER, Fault(429, error(-1003, "Too many requests.")))
    update = await venue.place(buy(mgate))
    assert update.status is OrderStatus.FILLED
    assert venue.resolved_by_query == 1
    assert len(exchange.sent("GET", ORDER)) == 2


async def test_an_unresolved_order_stays_unknown_and_halts_trading(
    rest: SignedRest,
    exchange: FakeBinance,
    ledger: OrderLedger,
    mgate: RiskGate,
    mclock: ManualClock,
) -> None:
    venue = LiveVenue(rest, ledger, mgate, mclock, FILTERS, ONE_TRY, (SYMBOL,))
    venue.release()
    exchange.fail("POST", ORDER, UNKNOWN_503)
    exchange.fail("GET", ORDER, UNKNOWN_503)
    order = buy(mgate)
    update = await venue.place(order)
    reason = "state unknown: halted until reconciliation"
    assert update == OrderUpdate(
        order, OrderStatus.NEW, Decimal(0), None, Decimal(0), mclock.now_ns, reason
    )
    assert venue.halted and venue.halt_reason == f"order {order.client_id} in unknown state"
    row = await ledger.order(order.client_id)
    assert row is not None
    assert (row["stage"], row["status"], row["detail"]) == ("unknown", "UNKNOWN", reason)
    evs = await ledger.events(order.client_id)
    assert [e["kind"] for e in evs] == ["intent", "error", "unresolved"]
    assert evs[2]["body"] == "{}"
    assert venue.pending_qty() == {SYMBOL: Decimal("0.010")}
    assert posted(exchange) == [order.client_id]  # never sent twice while unknown
    # Reconciliation later finds it at the exchange: adopted, protected, trading may resume.
    exchange.new_order(
        {"symbol": SYMBOL, "side": "BUY", "type": "MARKET", "quantity": "0.010",
         "newClientOrderId": order.client_id}
    )  # fmt: skip
    assert await venue.resync_open() == 0
    assert venue.pending_qty() == {}
    assert posted(exchange)[1:] == [f"{order.client_id}-sl", f"{order.client_id}-tp"]
    row = await ledger.order(order.client_id)
    assert row is not None and (row["stage"], row["status"]) == ("done", "FILLED")


async def test_not_found_with_one_attempt_is_unknown(
    rest: SignedRest,
    exchange: FakeBinance,
    ledger: OrderLedger,
    mgate: RiskGate,
    mclock: ManualClock,
) -> None:
    venue = LiveVenue(rest, ledger, mgate, mclock, FILTERS, ONE_TRY, (SYMBOL,))
    venue.release()
    exchange.fail("POST", ORDER, UNKNOWN_503)
    update = await venue.place(buy(mgate))
    assert update.reason == "state unknown: halted until reconciliation"
    assert venue.resent == 0 and len(exchange.sent("GET", ORDER)) == 1


# -- protective exits -----------------------------------------------------------------------------


async def test_an_exit_level_already_passed_closes_at_market(
    venue: LiveVenue, exchange: FakeBinance, ledger: OrderLedger, mgate: RiskGate
) -> None:
    order = buy(mgate)
    refusal = error(-2021, "Order would immediately trigger.")
    update = await place_with_refused_exit(venue, exchange, order, refusal)
    assert update.status is OrderStatus.FILLED
    sl_id = f"{order.client_id}-sl"
    row = await ledger.order(sl_id)
    assert row is not None
    err = "POST /fapi/v1/order: HTTP 400 code -2021: Order would immediately trigger."
    assert (row["stage"], row["status"], row["detail"]) == ("rejected", "REJECTED", err)
    evs = await ledger.events(sl_id)
    assert [e["kind"] for e in evs] == ["intent", "rejected"]
    assert msgspec.json.decode(evs[1]["body"]) == {"error": err}
    exits = [o for o in await ledger.orders() if o["parent_id"] is None and o["reduce_only"]]
    assert len(exits) == 1
    market_exit = exits[0]
    assert (market_exit["side"], market_exit["qty"], market_exit["type"]) == (
        "SELL", "0.010", "MARKET"
    )  # fmt: skip
    assert (market_exit["purpose"], market_exit["reason"]) == (
        "exit:stop", "exit:stop level already passed"
    )  # fmt: skip
    assert market_exit["stage"] == "done"
    # Stop refused, market exit sent, and the take-profit still placed.
    assert posted(exchange) == [
        order.client_id, sl_id, market_exit["client_id"], f"{order.client_id}-tp"
    ]  # fmt: skip
    assert not venue.halted


async def place_with_refused_exit(
    venue: LiveVenue, exchange: FakeBinance, order: Order, refusal: dict[str, Any]
) -> OrderUpdate:
    """Place ``order``; the exchange refuses its stop (the second POST) with ``refusal``."""
    original = exchange.answer

    def answer(method: str, path: str, params: dict[str, str]) -> tuple[int, Any]:
        if (method, path) == ("POST", ORDER) and params["newClientOrderId"].endswith("-sl"):
            return 400, refusal
        return original(method, path, params)

    exchange.answer = answer  # type: ignore[method-assign]
    try:
        return await venue.place(order)
    finally:
        exchange.answer = original  # type: ignore[method-assign]


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, error(-2022, "ReduceOnly Order is rejected.")),
        (429, error(-1003, "Too many requests.")),
        (401, error(-2015, "Invalid API-key, IP, or permissions.")),
    ],
)
async def test_a_refused_protective_exit_halts_entries(
    venue: LiveVenue,
    exchange: FakeBinance,
    ledger: OrderLedger,
    mgate: RiskGate,
    status: int,
    body: dict[str, Any],
) -> None:
    order = buy(mgate)
    await place_with_refused_exit(venue, exchange, order, body)
    assert venue.halted
    assert venue.halt_reason.startswith(f"protective exit:stop for {order.client_id} refused: ")
    assert str(body["code"]) in venue.halt_reason
    row = await ledger.order(f"{order.client_id}-sl")
    assert row is not None and row["stage"] == "rejected"
    # The take-profit still went out, and no market exit was made.
    assert posted(exchange) == [order.client_id, f"{order.client_id}-sl", f"{order.client_id}-tp"]


async def test_a_protective_exit_in_unknown_state_halts(
    rest: SignedRest,
    exchange: FakeBinance,
    ledger: OrderLedger,
    mgate: RiskGate,
    mclock: ManualClock,
) -> None:
    venue = LiveVenue(rest, ledger, mgate, mclock, FILTERS, ONE_TRY, (SYMBOL,))
    venue.release()
    order = buy(mgate)
    original = exchange.answer

    def answer(method: str, path: str, params: dict[str, str]) -> tuple[int, Any]:
        client_id = params.get("newClientOrderId") or params.get("origClientOrderId", "")
        if client_id.endswith("-sl"):
            return UNKNOWN_503.status, UNKNOWN_503.body
        return original(method, path, params)

    exchange.answer = answer  # type: ignore[method-assign]
    await venue.place(order)
    assert venue.halted
    assert venue.halt_reason == f"protective exit:stop for {order.client_id} in unknown state"


async def test_a_protective_exit_answered_503_is_found_by_query_and_tracked(
    venue: LiveVenue, exchange: FakeBinance, ledger: OrderLedger, mgate: RiskGate
) -> None:
    order = buy(mgate)
    exchange.fail("POST", ORDER, Fault(200, None, apply=True))
    exchange.faults.clear()
    original = exchange.answer
    lost = {f"{order.client_id}-sl"}

    def answer(method: str, path: str, params: dict[str, str]) -> tuple[int, Any]:
        client_id = params.get("newClientOrderId", "")
        if method == "POST" and client_id in lost:
            lost.discard(client_id)
            original(method, path, params)
            return UNKNOWN_503.status, UNKNOWN_503.body
        return original(method, path, params)

    exchange.answer = answer  # type: ignore[method-assign]
    await venue.place(order)
    assert not venue.halted and venue.resolved_by_query == 1
    row = await ledger.order(f"{order.client_id}-sl")
    assert row is not None and (row["stage"], row["status"]) == ("open", "NEW")
    # Both exits are tracked: when the position is flat again, both are cancelled.
    await venue.on_user_event(trade_update(order.client_id, trade_id=1))
    await venue.on_user_event(trade_update("app-1-77", side="SELL", trade_id=2, order_id=9001))
    assert [p["origClientOrderId"] for p in exchange.sent("DELETE", ORDER)] == [
        f"{order.client_id}-sl", f"{order.client_id}-tp"
    ]  # fmt: skip


# -- the user-data stream -------------------------------------------------------------------------


async def test_a_stream_fill_is_recorded_booked_and_protected(
    venue: LiveVenue,
    exchange: FakeBinance,
    ledger: OrderLedger,
    mgate: RiskGate,
    mclock: ManualClock,
) -> None:
    exchange.market_status = "NEW"
    order = buy(mgate)
    await venue.place(order)
    doc = trade_update(order.client_id, order_id=exchange.orders[order.client_id]["orderId"])
    doc["o"]["n"] = "0.25"
    await venue.on_user_event(doc)
    row = await ledger.order(order.client_id)
    assert row is not None
    assert (row["stage"], row["status"], row["order_id"], row["filled_qty"], row["avg_price"]) == (
        "done", "FILLED", doc["o"]["i"], "0.010", "50000.0"
    )  # fmt: skip
    evs = await ledger.events(order.client_id)
    assert [e["kind"] for e in evs] == ["intent", "response", "stream"]
    assert msgspec.json.decode(evs[2]["body"]) == doc and evs[2]["ts_ns"] == mclock.now_ns
    fills = await ledger.fills(SYMBOL)
    assert [(f["trade_id"], f["client_id"], f["source"]) for f in fills] == [
        (5001, order.client_id, "stream")
    ]
    pos = venue.portfolio.position(SYMBOL)
    assert (pos.qty, pos.fees) == (Decimal("0.010"), Decimal("0.25"))
    assert venue.open_orders() == [] and venue.pending_qty() == {}
    assert posted(exchange)[1:] == [f"{order.client_id}-sl", f"{order.client_id}-tp"]
    # The same trade again (a reconnect replays it): booked once, protected once.
    await venue.on_user_event(doc)
    assert venue.position_qty(SYMBOL) == Decimal("0.010")
    assert len(posted(exchange)) == 3


async def test_stream_events_of_orders_not_in_the_ledger_leave_no_order_row(
    venue: LiveVenue, ledger: OrderLedger
) -> None:
    await venue.on_user_event(trade_update("web_abc", x="NEW", status="NEW", filled="0"))
    assert await ledger.order("web_abc") is None
    evs = await ledger.events("web_abc")
    assert [e["kind"] for e in evs] == ["stream"]
    assert await ledger.fills() == []
    assert venue.forced_closes == []


async def test_a_liquidation_on_the_stream_is_recorded_for_the_alarm(
    venue: LiveVenue, ledger: OrderLedger, mclock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    venue.reset_books(Decimal("1000"), [Position(SYMBOL, Decimal("0.010"), Decimal("500"))])
    doc = trade_update(
        "autoclose-1700000000000", side="SELL", order_type="LIQUIDATION", price="45000.0"
    )
    with caplog.at_level(logging.ERROR, logger="app.live.venue"):
        await venue.on_user_event(doc)
    assert venue.forced_closes == [("liquidation", SYMBOL, mclock.now_ns)]
    assert [r.getMessage() for r in caplog.records] == [
        "liquidation on BTCUSDT: SELL 0.010 at 45000.0"
    ]
    evs = await ledger.events("autoclose-1700000000000")
    assert [e["kind"] for e in evs] == ["stream", "liquidation"]
    assert msgspec.json.decode(evs[1]["body"]) == doc
    assert evs[1]["ts_ns"] == mclock.now_ns
    assert venue.position_qty(SYMBOL) == 0
    # The new order of a forced close is not yet a forced close.
    await venue.on_user_event(
        trade_update("adl_autoclose", x="NEW", status="NEW", filled="0", order_type="ADL")
    )
    assert len(venue.forced_closes) == 1


async def test_an_adl_fill_is_recorded_with_its_detail(
    venue: LiveVenue, ledger: OrderLedger
) -> None:
    await venue.on_user_event(trade_update("adl_autoclose", side="SELL", order_type="ADL"))
    assert [k for k, _, _ in venue.forced_closes] == ["adl"]
    conn_events = await ledger.events("adl_autoclose")
    assert conn_events[1]["kind"] == "adl"
    import sqlite3

    conn = sqlite3.connect(ledger.path)
    try:
        # The ledger keeps the forced close's description with the event.
        rows = conn.execute("SELECT kind FROM events WHERE client_id = 'adl_autoclose'").fetchall()
    finally:
        conn.close()
    assert [r[0] for r in rows] == ["stream", "adl"]


@pytest.mark.parametrize("kind", ["ACCOUNT_UPDATE", "ACCOUNT_CONFIG_UPDATE"])
async def test_account_events_are_recorded(
    venue: LiveVenue, ledger: OrderLedger, kind: str
) -> None:
    doc = {"e": kind, "E": 1564745798939, "T": 1564745798938, "a": {"m": "ORDER", "B": [], "P": []}}
    await venue.on_user_event(doc)
    evs = await ledger.events("")
    assert [(e["kind"], msgspec.json.decode(e["body"])) for e in evs] == [("stream", doc)]


async def test_other_stream_events_are_ignored(venue: LiveVenue, ledger: OrderLedger) -> None:
    await venue.on_user_event({"e": "listenKeyExpired", "E": 1576653824250})
    assert await ledger.events() == []


async def test_a_stop_filled_on_the_stream_cancels_the_take_profit(
    venue: LiveVenue, exchange: FakeBinance, ledger: OrderLedger, mgate: RiskGate
) -> None:
    order = buy(mgate)
    await venue.place(order)
    sl, tp = f"{order.client_id}-sl", f"{order.client_id}-tp"
    await venue.on_user_event(trade_update(order.client_id, trade_id=1))
    assert venue.position_qty(SYMBOL) == Decimal("0.010")
    exchange.orders[sl]["status"] = "FILLED"  # the stop triggered at the exchange
    await venue.on_user_event(
        trade_update(
            sl,
            side="SELL",
            trade_id=2,
            order_id=exchange.orders[sl]["orderId"],
            order_type="STOP_MARKET",
        )
    )
    assert venue.position_qty(SYMBOL) == 0
    # The stop itself is asked too (the exchange answers -2011: already filled).
    assert [p["origClientOrderId"] for p in exchange.sent("DELETE", ORDER)] == [sl, tp]
    assert exchange.orders[sl]["status"] == "FILLED"
    assert exchange.orders[tp]["status"] == "CANCELED"
    row = await ledger.order(tp)
    assert row is not None and (row["stage"], row["status"]) == ("done", "CANCELED")
    assert (await kinds(ledger, tp))[-1] == "cancel"
    # Flat again later: nothing left to cancel.
    await venue.on_user_event(trade_update("app-1-80", trade_id=3, order_id=1))
    await venue.on_user_event(trade_update("app-1-81", side="SELL", trade_id=4, order_id=2))
    assert len(exchange.sent("DELETE", ORDER)) == 2


@pytest.mark.parametrize("status", ["CANCELED", "EXPIRED"])
async def test_a_protective_exit_gone_on_the_stream_is_not_cancelled_again(
    venue: LiveVenue, exchange: FakeBinance, mgate: RiskGate, status: str
) -> None:
    order = buy(mgate)
    await venue.place(order)
    tp = f"{order.client_id}-tp"
    await venue.on_user_event(trade_update(tp, x=status, status=status, filled="0", side="SELL"))
    await venue.on_user_event(trade_update(order.client_id, trade_id=1))
    await venue.on_user_event(trade_update("app-1-70", side="SELL", trade_id=2, order_id=3))
    assert [p["origClientOrderId"] for p in exchange.sent("DELETE", ORDER)] == [
        f"{order.client_id}-sl"
    ]


async def test_cancelling_protection_goes_on_past_an_order_already_gone(
    venue: LiveVenue, exchange: FakeBinance, ledger: OrderLedger, mgate: RiskGate
) -> None:
    order = buy(mgate)
    await venue.place(order)
    del exchange.orders[f"{order.client_id}-sl"]  # gone at the exchange already
    await venue.on_user_event(trade_update(order.client_id, trade_id=1))
    await venue.on_user_event(trade_update("app-1-70", side="SELL", trade_id=2, order_id=3))
    assert [p["origClientOrderId"] for p in exchange.sent("DELETE", ORDER)] == [
        f"{order.client_id}-sl", f"{order.client_id}-tp"
    ]  # fmt: skip
    assert exchange.orders[f"{order.client_id}-tp"]["status"] == "CANCELED"


# -- recovery -------------------------------------------------------------------------------------


async def test_recover_fills_pages_through_user_trades_once(
    venue: LiveVenue, exchange: FakeBinance, ledger: OrderLedger
) -> None:
    exchange.trades = [user_trade(i, 70) for i in range(1, 1501)]
    assert await venue.recover_fills() == 1500
    sent = [p for p in exchange.sent("GET", "/fapi/v1/userTrades") if p["symbol"] == SYMBOL]
    assert [p.get("fromId") for p in sent] == [None, "1001"]
    assert venue.position_qty(SYMBOL) == Decimal("15.000")
    assert await ledger.last_trade_id(SYMBOL) == 1500
    exchange.trades.append(user_trade(1501, 71, "SELL", "0.500"))
    assert await venue.recover_fills() == 1
    sent = [p for p in exchange.sent("GET", "/fapi/v1/userTrades") if p["symbol"] == SYMBOL]
    assert sent[-1]["fromId"] == "1501"
    assert await venue.recover_fills() == 0
    assert venue.position_qty(SYMBOL) == Decimal("14.500")
    assert {p["symbol"] for p in exchange.sent("GET", "/fapi/v1/userTrades")} == {SYMBOL, ETH}


async def test_recover_fills_ignores_trades_already_booked(
    venue: LiveVenue, exchange: FakeBinance
) -> None:
    await venue.on_user_event(trade_update("app-1-5", trade_id=10, order_id=70))
    exchange.trades = [user_trade(i, 70) for i in (9, 10, 11)]
    assert await venue.recover_fills() == 1
    assert venue.position_qty(SYMBOL) == Decimal("0.020")


async def test_recover_income_from_the_last_recorded(
    venue: LiveVenue, exchange: FakeBinance, ledger: OrderLedger
) -> None:
    exchange.income_rows = [
        {"symbol": "", "incomeType": "TRANSFER", "income": "-0.37500000", "asset": "USDT",
         "info": "TRANSFER", "time": 1570608000000, "tranId": 9689322392, "tradeId": ""},
        {"symbol": "BTCUSDT", "incomeType": "COMMISSION", "income": "-0.01000000",
         "asset": "USDT", "info": "COMMISSION", "time": 1570636800000, "tranId": 9689322393,
         "tradeId": "2059192"},
    ]  # fmt: skip
    assert await venue.recover_income(1570000000000) == 2
    assert await venue.recover_income(1) == 0
    starts = [p.get("startTime") for p in exchange.sent("GET", "/fapi/v1/income")]
    assert starts == ["1570000000000", "1570636800000"]
    assert len(await ledger.income()) == 2


async def test_recover_income_without_a_start(venue: LiveVenue, exchange: FakeBinance) -> None:
    assert await venue.recover_income() == 0
    assert [p.get("startTime") for p in exchange.sent("GET", "/fapi/v1/income")] == [None]


async def test_resync_settles_intents_the_exchange_never_got(
    venue: LiveVenue,
    exchange: FakeBinance,
    ledger: OrderLedger,
    mgate: RiskGate,
    mclock: ManualClock,
) -> None:
    never, lost = buy(mgate), buy(mgate)
    await ledger.record_intent(never, "entry", 1)
    await ledger.record_intent(lost, "entry", 2)
    await ledger.record(lost.client_id, "error", {}, 3, stage="unknown", status="UNKNOWN")
    assert await venue.resync_open() == 1
    row = await ledger.order(never.client_id)
    assert row is not None
    assert (row["stage"], row["status"], row["detail"]) == (
        "not_sent", "NOT_SENT", "not known to the exchange after restart"
    )  # fmt: skip
    assert (await ledger.events(never.client_id))[-1]["kind"] == "resolved"
    assert (await ledger.events(never.client_id))[-1]["ts_ns"] == mclock.now_ns
    row = await ledger.order(lost.client_id)
    assert row is not None and row["stage"] == "unknown"
    assert exchange.sent("POST", ORDER) == []  # nothing resent by a resync
    assert len(exchange.sent("GET", ORDER)) == 2


async def test_resync_protects_an_entry_filled_while_we_were_down(
    venue: LiveVenue, exchange: FakeBinance, ledger: OrderLedger, mgate: RiskGate
) -> None:
    order = buy(mgate)
    await ledger.record_intent(order, "entry", 1)
    exchange.market_status = "PARTIALLY_FILLED"
    exchange.new_order(order_params(order))
    exchange.orders[order.client_id].update(status="CANCELED", executedQty="0.004")
    assert await venue.resync_open() == 0
    sl = await ledger.order(f"{order.client_id}-sl")
    tp = await ledger.order(f"{order.client_id}-tp")
    assert sl is not None and tp is not None
    assert (sl["qty"], sl["stop_price"], sl["parent_id"]) == (
        "0.004", str(order.stop_price), order.client_id
    )  # fmt: skip
    assert (tp["qty"], tp["stop_price"]) == ("0.004", str(order.take_profit))
    assert (sl["model_version"], sl["side"]) == ("test", "SELL")
    row = await ledger.order(order.client_id)
    assert row is not None and (row["stage"], row["status"]) == ("done", "CANCELED")
    assert (await kinds(ledger, order.client_id))[1:] == ["query", "query"]
    # A second resync neither re-protects nor re-queries a settled entry.
    assert await venue.resync_open() == 0
    assert posted(exchange) == [f"{order.client_id}-sl", f"{order.client_id}-tp"]


async def test_resync_leaves_an_unfilled_entry_unprotected(
    venue: LiveVenue, exchange: FakeBinance, ledger: OrderLedger, mgate: RiskGate
) -> None:
    for status in ("CANCELED", "EXPIRED"):
        order = buy(mgate)
        await ledger.record_intent(order, "entry", 1)
        exchange.new_order(order_params(order))
        exchange.orders[order.client_id].update(status=status, executedQty="0")
    await venue.resync_open()
    assert len(posted(exchange)) == 0


async def test_resync_protects_a_short_entry_with_only_a_stop(
    venue: LiveVenue, exchange: FakeBinance, ledger: OrderLedger, mgate: RiskGate
) -> None:
    order = Order(
        "app-1-60", SYMBOL, Side.SELL, OrderType.MARKET, Decimal("0.020"), None, False,
        Decimal("51000.0"), None, 5, "v2", "entry", b"",
    )  # fmt: skip
    await ledger.record_intent(order, "entry", 1)
    exchange.new_order(order_params(order))
    assert await venue.resync_open() == 0
    assert posted(exchange) == ["app-1-60-sl"]
    sl = exchange.orders["app-1-60-sl"]
    assert (sl["side"], sl["origQty"], sl["stopPrice"]) == ("BUY", "0.020", "51000.0")
    row = await ledger.order("app-1-60-sl")
    assert row is not None and row["model_version"] == "v2"


async def test_resync_reattaches_working_exits_and_adopts_live_orders(
    venue: LiveVenue, exchange: FakeBinance, ledger: OrderLedger, mgate: RiskGate
) -> None:
    order = buy(mgate)
    await venue.place(order)
    # A restart: a new venue over the same ledger knows nothing of the working exits.
    fresh = LiveVenue(venue.client, ledger, mgate, venue._clock, FILTERS, FAST, (SYMBOL,))
    fresh.release()
    assert await fresh.resync_open() == 0
    await fresh.on_user_event(trade_update(order.client_id, trade_id=1))
    await fresh.on_user_event(trade_update("app-1-70", side="SELL", trade_id=2, order_id=3))
    assert [p["origClientOrderId"] for p in exchange.sent("DELETE", ORDER)] == [
        f"{order.client_id}-sl", f"{order.client_id}-tp"
    ]  # fmt: skip


async def test_resync_does_not_reattach_a_market_exit(
    venue: LiveVenue, exchange: FakeBinance, ledger: OrderLedger, mgate: RiskGate
) -> None:
    exchange.market_status = "NEW"
    exit_order = mgate.exit_order(SYMBOL, Decimal("0.010"), "exit:stop", 0)
    assert exit_order is not None
    await venue.place(exit_order)
    fresh = LiveVenue(venue.client, ledger, mgate, venue._clock, FILTERS, FAST, (SYMBOL,))
    await fresh.resync_open()
    await fresh.on_user_event(trade_update("app-1-80", trade_id=1, order_id=1))
    await fresh.on_user_event(trade_update("app-1-81", side="SELL", trade_id=2, order_id=2))
    assert exchange.sent("DELETE", ORDER) == []


# -- bulk actions ---------------------------------------------------------------------------------


async def test_cancel_all_cancels_working_orders_and_forgets_the_exits(
    venue: LiveVenue, exchange: FakeBinance, ledger: OrderLedger, mgate: RiskGate
) -> None:
    order = buy(mgate)
    await venue.place(order)
    assert await venue.cancel_all("kill switch") == 2
    cancels = exchange.sent("DELETE", "/fapi/v1/allOpenOrders")
    assert [p["symbol"] for p in cancels] == [SYMBOL]  # ETHUSDT had nothing open
    evs = await ledger.events("")
    assert [(e["kind"], msgspec.json.decode(e["body"])) for e in evs] == [
        ("cancel_all", {"reason": "kill switch", "orders": 2})
    ]
    for kind in ("sl", "tp"):
        row = await ledger.order(f"{order.client_id}-{kind}")
        assert row is not None and (row["stage"], row["status"]) == ("done", "CANCELED")
    await venue.on_user_event(trade_update(order.client_id, trade_id=1))
    await venue.on_user_event(trade_update("app-1-70", side="SELL", trade_id=2, order_id=3))
    assert exchange.sent("DELETE", ORDER) == []
    assert await venue.cancel_all() == 0
    evs = await ledger.events("")
    assert msgspec.json.decode(evs[-1]["body"]) == {"reason": "canceled", "orders": 0}


async def test_flatten_closes_every_position_of_our_symbols(
    venue: LiveVenue, exchange: FakeBinance, ledger: OrderLedger, mgate: RiskGate
) -> None:
    exchange.positions = [
        {"symbol": SYMBOL, "positionAmt": "-0.020", "markPrice": "50000"},
        {"symbol": ETH, "positionAmt": "0.000", "markPrice": "3000"},
        {"symbol": "XRPUSDT", "positionAmt": "100", "markPrice": "0.5"},
    ]
    updates = await venue.flatten(mgate.exit_order, "operator flatten")
    assert [(u.order.symbol, u.order.side, u.order.qty, u.status) for u in updates] == [
        (SYMBOL, Side.BUY, Decimal("0.020"), OrderStatus.FILLED)
    ]
    row = await ledger.order(updates[0].order.client_id)
    assert row is not None
    assert (row["purpose"], row["reason"], row["reduce_only"]) == ("kill", "operator flatten", 1)
    assert exchange.orders[updates[0].order.client_id]["reduceOnly"] is True
    none = await venue.flatten(lambda *_: None, "x")
    assert none == []


async def test_a_resend_refused_by_the_exchange_is_a_rejected_order(
    venue: LiveVenue,
    exchange: FakeBinance,
    ledger: OrderLedger,
    mgate: RiskGate,
    events: list[RiskEvent],
) -> None:
    # The first answer is lost; the order is not found twice; the resend is refused (margin).
    exchange.fail("POST", ORDER, UNKNOWN_503, Fault(400, error(-2019, "Margin is insufficient.")))
    order = buy(mgate)
    update = await venue.place(order)
    assert update.status is OrderStatus.REJECTED
    assert update.reason == "exchange -2019: Margin is insufficient."
    assert [e.code for e in events] == ["exchange:-2019"]
    row = await ledger.order(order.client_id)
    assert row is not None and (row["stage"], row["status"]) == ("rejected", "REJECTED")
    assert venue.pending_qty() == {} and venue.open_orders() == []
    assert not venue.halted


async def test_a_lost_stop_whose_resend_would_trigger_closes_at_market(
    venue: LiveVenue, exchange: FakeBinance, ledger: OrderLedger, mgate: RiskGate
) -> None:
    order = buy(mgate)
    sl_id = f"{order.client_id}-sl"
    original = exchange.answer
    stop_posts = 0

    def answer(method: str, path: str, params: dict[str, str]) -> tuple[int, Any]:
        nonlocal stop_posts
        if (method, path) == ("POST", ORDER) and params["newClientOrderId"] == sl_id:
            stop_posts += 1
            if stop_posts == 1:
                return UNKNOWN_503.status, UNKNOWN_503.body
            return 400, error(-2021, "Order would immediately trigger.")
        return original(method, path, params)

    exchange.answer = answer  # type: ignore[method-assign]
    update = await venue.place(order)
    assert update.status is OrderStatus.FILLED
    assert stop_posts == 2
    row = await ledger.order(sl_id)
    assert row is not None and (row["stage"], row["status"]) == ("rejected", "REJECTED")
    exits = [o for o in await ledger.orders() if o["parent_id"] is None and o["reduce_only"]]
    assert [(o["side"], o["qty"], o["purpose"]) for o in exits] == [("SELL", "0.010", "exit:stop")]
    assert f"{order.client_id}-tp" in exchange.orders
    assert not venue.halted


async def test_a_partly_filled_order_shows_its_average_price_now(
    venue: LiveVenue, exchange: FakeBinance, mgate: RiskGate, mclock: ManualClock
) -> None:
    exchange.market_status = "NEW"
    order = buy(mgate)
    await venue.place(order)
    await venue.on_user_event(
        trade_update(
            order.client_id, status="PARTIALLY_FILLED", qty="0.004", filled="0.004", price="50010.0"
        )
    )
    mclock.advance(1)
    [update] = venue.open_orders()
    assert (update.filled_qty, update.avg_price, update.ts_ns) == (
        Decimal("0.004"), Decimal("50010.0"), mclock.now_ns
    )  # fmt: skip


async def test_flatten_skips_other_symbols_and_goes_on(
    venue: LiveVenue, exchange: FakeBinance, mgate: RiskGate
) -> None:
    exchange.positions = [
        {"symbol": "XRPUSDT", "positionAmt": "100", "markPrice": "0.5"},
        {"symbol": ETH, "positionAmt": "0", "markPrice": "3000"},
        {"symbol": SYMBOL, "positionAmt": "0.020", "markPrice": "50000"},
    ]
    updates = await venue.flatten(mgate.exit_order, "kill switch")
    assert [(u.order.symbol, u.order.side) for u in updates] == [(SYMBOL, Side.SELL)]


async def test_cancel_all_counts_every_symbol(
    venue: LiveVenue, exchange: FakeBinance, mgate: RiskGate
) -> None:
    exchange.market_status = "NEW"
    await venue.place(buy(mgate))
    await venue.place(buy(mgate, "0.500", ETH))
    assert await venue.cancel_all() == 2
    assert [p["symbol"] for p in exchange.sent("DELETE", "/fapi/v1/allOpenOrders")] == [SYMBOL, ETH]


async def test_a_cancel_refused_is_logged_with_the_order(
    venue: LiveVenue, exchange: FakeBinance, mgate: RiskGate, caplog: pytest.LogCaptureFixture
) -> None:
    order = buy(mgate)
    await venue.place(order)
    del exchange.orders[f"{order.client_id}-sl"]
    await venue.on_user_event(trade_update(order.client_id, trade_id=1))
    with caplog.at_level(logging.INFO, logger="app.live.venue"):
        await venue.on_user_event(trade_update("app-1-70", side="SELL", trade_id=2, order_id=3))
    assert {p["symbol"] for p in exchange.sent("DELETE", ORDER)} == {SYMBOL}
    err = "DELETE /fapi/v1/order: HTTP 400 code -2011: Unknown order sent."
    assert f"cancel {order.client_id}-sl: {err} (already gone)" in [
        r.getMessage() for r in caplog.records
    ]


async def test_resync_counts_every_unknown_order_and_queries_only_unsettled_ones(
    venue: LiveVenue, exchange: FakeBinance, ledger: OrderLedger, mgate: RiskGate
) -> None:
    done = buy(mgate)
    await venue.place(done)
    gets = len(exchange.sent("GET", ORDER))
    a, b, c = buy(mgate), buy(mgate), buy(mgate)
    await ledger.record_intent(a, "entry", 18 * 10**17)
    await ledger.record_intent(b, "entry", 18 * 10**17 + 1)
    await ledger.record_intent(c, "entry", 18 * 10**17 + 2)
    for o in (a, b):
        await ledger.record(o.client_id, "error", {}, 1, stage="unknown", status="UNKNOWN")
    assert await venue.resync_open() == 2
    queried = [p["origClientOrderId"] for p in exchange.sent("GET", ORDER)[gets:]]
    # The filled entry is settled; its two working exits and the three intents are not.
    exits = [f"{done.client_id}-sl", f"{done.client_id}-tp"]
    assert sorted(queried) == sorted([*exits, a.client_id, b.client_id, c.client_id])
    row = await ledger.order(c.client_id)
    assert row is not None and row["stage"] == "not_sent"
    assert (await ledger.events(c.client_id))[-1]["body"] == "{}"


async def test_resync_protects_what_filled_and_reattaches_partly_filled_exits(
    venue: LiveVenue, exchange: FakeBinance, ledger: OrderLedger, mgate: RiskGate
) -> None:
    # An entry that expired part-filled, with only a take-profit level.
    tp_only = Order(
        "app-1-61", SYMBOL, Side.BUY, OrderType.MARKET, Decimal("0.020"), None, False, None,
        Decimal("52000.0"), 5, "v2", "entry", b"",
    )  # fmt: skip
    await ledger.record_intent(tp_only, "entry", 1)
    exchange.new_order(order_params(tp_only))
    exchange.orders["app-1-61"].update(status="EXPIRED", executedQty="0.005")
    # A stop of an earlier entry that has filled: it is not an entry, nothing to protect.
    stop = Order(
        "app-1-5-sl", SYMBOL, Side.SELL, OrderType.MARKET, Decimal("0.010"), None, True,
        Decimal("49000.0"), None, 5, "v2", "exit:stop", b"",
    )  # fmt: skip
    await ledger.record_intent(stop, "exit:stop", 2)
    exchange.new_order(order_params(stop))
    exchange.orders["app-1-5-sl"].update(status="FILLED", executedQty="0.010")
    # A take-profit partly filled: still working, re-attached.
    tp = replace(stop, client_id="app-1-6-tp", purpose="exit:take_profit")
    await ledger.record_intent(tp, "exit:take_profit", 3, "app-1-6")
    exchange.new_order(order_params(tp))
    exchange.orders["app-1-6-tp"].update(status="PARTIALLY_FILLED", executedQty="0.002")
    assert await venue.resync_open() == 0
    assert posted(exchange) == ["app-1-61-tp"]
    placed = exchange.orders["app-1-61-tp"]
    assert (placed["symbol"], placed["origQty"], placed["stopPrice"]) == (
        SYMBOL, "0.005", "52000.0"
    )  # fmt: skip
    await venue.on_user_event(trade_update("app-1-80", trade_id=1, order_id=1))
    await venue.on_user_event(trade_update("app-1-81", side="SELL", trade_id=2, order_id=2))
    cancelled = [p["origClientOrderId"] for p in exchange.sent("DELETE", ORDER)]
    assert "app-1-6-tp" in cancelled


async def test_a_failed_resend_is_not_repeated_and_resends_are_counted(
    venue: LiveVenue, exchange: FakeBinance, mgate: RiskGate
) -> None:
    exchange.fail("POST", ORDER, UNKNOWN_503, UNKNOWN_503)
    first = await venue.place(buy(mgate))
    # Sent, lost; sent once more, lost again; never a third time.
    assert posted(exchange).count(first.order.client_id) == 2
    assert first.status is OrderStatus.NEW and venue.halted
    venue.release()
    exchange.fail("POST", ORDER, UNKNOWN_503)
    await venue.place(buy(mgate))
    assert venue.resent == 2


async def test_a_failed_query_is_logged_and_asked_again(
    rest: SignedRest,
    exchange: FakeBinance,
    ledger: OrderLedger,
    mgate: RiskGate,
    mclock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    venue = LiveVenue(
        rest, ledger, mgate, mclock, FILTERS, replace(FAST, resolve_attempts=2), (SYMBOL,)
    )
    venue.release()
    order = buy(mgate)
    exchange.fail("POST", ORDER, replace(UNKNOWN_503, apply=True))
    exchange.fail("GET", ORDER, UNKNOWN_503)
    with caplog.at_level(logging.WARNING, logger="app.live.venue"):
        update = await venue.place(order)
    assert update.status is OrderStatus.FILLED
    err = (
        "GET /fapi/v1/order: HTTP 503 code -1000: Unknown error, please check your request "
        "or try again."
    )
    assert f"query {order.client_id} failed: {err}" in [r.getMessage() for r in caplog.records]


async def test_a_stream_event_gives_an_unanswered_order_its_exchange_id(
    rest: SignedRest,
    exchange: FakeBinance,
    ledger: OrderLedger,
    mgate: RiskGate,
    mclock: ManualClock,
) -> None:
    venue = LiveVenue(rest, ledger, mgate, mclock, FILTERS, ONE_TRY, (SYMBOL,))
    venue.release()
    exchange.fail("POST", ORDER, UNKNOWN_503)
    exchange.fail("GET", ORDER, UNKNOWN_503)
    order = buy(mgate)
    await venue.place(order)
    await venue.on_user_event(trade_update(order.client_id, order_id=424242))
    row = await ledger.order(order.client_id)
    assert row is not None and (row["order_id"], row["stage"]) == (424242, "done")


async def test_every_order_sent_is_counted_and_exit_answers_are_responses(
    venue: LiveVenue, ledger: OrderLedger, mgate: RiskGate
) -> None:
    first = buy(mgate)
    await venue.place(first)
    await venue.place(buy(mgate))
    assert venue.orders_sent == 6  # two entries, each with its stop and take-profit
    assert await kinds(ledger, f"{first.client_id}-sl") == ["intent", "response"]


async def test_a_halted_refusal_names_the_order(venue: LiveVenue, mgate: RiskGate) -> None:
    venue.halt("test")
    order = buy(mgate)
    assert (await venue.place(order)).order is order


# -- races, late events and odd answers -----------------------------------------------------------


async def test_drain_waits_for_every_order_path_even_after_one_failed(
    venue: LiveVenue, exchange: FakeBinance, ledger: OrderLedger, mgate: RiskGate
) -> None:
    # One answer carries no order at all: that path fails; the other still completes, and
    # drain (what closing the live session awaits before closing the client) returns.
    exchange.fail("POST", ORDER, Fault(200, {}))
    first, second = buy(mgate), buy(mgate)
    venue.submit(first)
    venue.submit(second)
    await venue.drain()
    rows = [await ledger.order(o.client_id) for o in (first, second)]
    assert sorted(r["stage"] for r in rows if r is not None) == ["done", "intent"]
    assert len(posted(exchange)) == 4  # both entries, and the filled one's stop and take-profit


async def test_a_lost_answer_is_logged_with_the_order_and_the_error(
    venue: LiveVenue, exchange: FakeBinance, mgate: RiskGate, caplog: pytest.LogCaptureFixture
) -> None:
    exchange.fail("POST", ORDER, replace(UNKNOWN_503, apply=True))
    order = buy(mgate)
    with caplog.at_level(logging.WARNING, logger="app.live.venue"):
        await venue.place(order)
    err = (
        "POST /fapi/v1/order: HTTP 503 code -1000: Unknown error, please check your request "
        "or try again."
    )
    assert f"order {order.client_id}: {err}; querying before any retry" in [
        r.getMessage() for r in caplog.records
    ]


async def test_a_status_the_venue_does_not_know_leaves_the_order_working(
    venue: LiveVenue, exchange: FakeBinance, ledger: OrderLedger, mgate: RiskGate
) -> None:
    exchange.market_status = "NEW"
    order = buy(mgate)
    await venue.place(order)
    # PENDING_NEW is a Binance status (spot) OrderStatus does not have: taken as NEW.
    await venue.on_user_event(
        trade_update(order.client_id, x="NEW", status="PENDING_NEW", filled="0")
    )
    [working] = venue.open_orders()
    assert (working.status, working.filled_qty) == (OrderStatus.NEW, Decimal(0))
    assert venue.pending_qty() == {SYMBOL: Decimal("0.010")}
    row = await ledger.order(order.client_id)
    assert row is not None and (row["stage"], row["status"]) == ("open", "PENDING_NEW")
    assert posted(exchange) == [order.client_id]  # nothing filled: no exits


async def test_an_order_with_nothing_filled_has_no_average_price(
    venue: LiveVenue, exchange: FakeBinance, mgate: RiskGate
) -> None:
    exchange.market_status = "NEW"  # the answer's avgPrice is "0.00"
    update = await venue.place(buy(mgate))
    assert (update.status, update.filled_qty, update.avg_price) == (
        OrderStatus.NEW, Decimal(0), None
    )  # fmt: skip
    [working] = venue.open_orders()
    assert working.avg_price is None


async def test_a_fill_on_the_stream_before_the_answer_protects_the_entry_once(
    venue: LiveVenue, exchange: FakeBinance, ledger: OrderLedger, mgate: RiskGate
) -> None:
    order = buy(mgate)
    sl, tp = f"{order.client_id}-sl", f"{order.client_id}-tp"
    accepted, answer_now = threading.Event(), threading.Event()
    original = exchange.answer

    def answer(method: str, path: str, params: dict[str, str]) -> tuple[int, Any]:
        result = original(method, path, params)
        if (method, path) == ("POST", ORDER) and params["newClientOrderId"] == order.client_id:
            # Filled at the exchange; the answer waits for the stream's event, letting the
            # exchange serve other requests meanwhile (the server holds its lock around answer).
            accepted.set()
            exchange.lock.release()
            try:
                answer_now.wait(30)
            finally:
                exchange.lock.acquire()
        return result

    exchange.answer = answer  # type: ignore[method-assign]
    placing = asyncio.create_task(venue.place(order))
    try:
        await asyncio.to_thread(accepted.wait, 30)
        order_id = exchange.orders[order.client_id]["orderId"]
        await venue.on_user_event(trade_update(order.client_id, order_id=order_id))
    finally:
        answer_now.set()
    update = await placing
    assert (update.status, update.filled_qty) == (OrderStatus.FILLED, Decimal("0.010"))
    # Protected by the stream's event; the answer after it neither re-sends nor halts.
    assert posted(exchange) == [order.client_id, sl, tp]
    assert not venue.halted
    assert venue.position_qty(SYMBOL) == Decimal("0.010")
    assert venue.open_orders() == [] and venue.pending_qty() == {}
    assert await kinds(ledger, order.client_id) == ["intent", "stream", "response"]
    for exit_id in (sl, tp):
        row = await ledger.order(exit_id)
        assert row is not None and (row["stage"], row["status"]) == ("open", "NEW")


async def test_an_entry_that_expired_unfilled_gets_no_exits(
    venue: LiveVenue, exchange: FakeBinance, ledger: OrderLedger, mgate: RiskGate
) -> None:
    exchange.market_status = "EXPIRED"
    order = buy(mgate)
    update = await venue.place(order)
    assert (update.status, update.filled_qty) == (OrderStatus.EXPIRED, Decimal(0))
    assert posted(exchange) == [order.client_id]
    assert await ledger.order(f"{order.client_id}-sl") is None
    assert not venue.halted


async def test_an_entry_that_expired_part_filled_is_protected_for_what_filled(
    venue: LiveVenue, exchange: FakeBinance, mgate: RiskGate
) -> None:
    exchange.market_status = "NEW"
    order = buy(mgate)
    await venue.place(order)
    await venue.on_user_event(
        trade_update(order.client_id, status="PARTIALLY_FILLED", qty="0.004", filled="0.004")
    )
    assert posted(exchange) == [order.client_id]  # partly filled and working: not yet
    await venue.on_user_event(
        trade_update(order.client_id, x="EXPIRED", status="EXPIRED", filled="0.004")
    )
    sl, tp = f"{order.client_id}-sl", f"{order.client_id}-tp"
    assert posted(exchange) == [order.client_id, sl, tp]
    for exit_id, level in ((sl, order.stop_price), (tp, order.take_profit)):
        placed = exchange.orders[exit_id]
        assert (placed["side"], placed["origQty"], placed["stopPrice"]) == (
            "SELL", "0.004", str(level)
        )  # fmt: skip
    assert venue.pending_qty() == {}


async def test_a_stop_found_partly_filled_after_a_lost_answer_is_cancelled_when_flat(
    venue: LiveVenue, exchange: FakeBinance, ledger: OrderLedger, mgate: RiskGate
) -> None:
    order = buy(mgate)
    sl, tp = f"{order.client_id}-sl", f"{order.client_id}-tp"
    original = exchange.answer

    def answer(method: str, path: str, params: dict[str, str]) -> tuple[int, Any]:
        if (method, path) == ("POST", ORDER) and params["newClientOrderId"] == sl:
            original(method, path, params)
            # The stop triggered and partly filled before the venue's query; its answer is lost.
            exchange.orders[sl].update(status="PARTIALLY_FILLED", executedQty="0.004")
            return UNKNOWN_503.status, UNKNOWN_503.body
        return original(method, path, params)

    exchange.answer = answer  # type: ignore[method-assign]
    await venue.place(order)
    assert not venue.halted and venue.resolved_by_query == 1
    row = await ledger.order(sl)
    assert row is not None and (row["stage"], row["status"]) == ("open", "PARTIALLY_FILLED")
    stop_id = exchange.orders[sl]["orderId"]
    await venue.on_user_event(trade_update(order.client_id, trade_id=1))
    await venue.on_user_event(
        trade_update(
            sl, side="SELL", status="PARTIALLY_FILLED", qty="0.004", filled="0.004",
            trade_id=2, order_id=stop_id, order_type="STOP_MARKET",
        )
    )  # fmt: skip
    assert exchange.sent("DELETE", ORDER) == []  # 0.006 still open: the exits stay
    await venue.on_user_event(
        trade_update("app-1-77", side="SELL", qty="0.006", filled="0.006", trade_id=3, order_id=9)
    )
    assert venue.position_qty(SYMBOL) == 0
    assert [p["origClientOrderId"] for p in exchange.sent("DELETE", ORDER)] == [sl, tp]
    assert exchange.orders[sl]["status"] == "CANCELED"


async def test_an_exit_filled_while_a_position_remains_is_not_cancelled_later(
    venue: LiveVenue, exchange: FakeBinance, mgate: RiskGate
) -> None:
    first, second = buy(mgate), buy(mgate)
    await venue.place(first)
    await venue.place(second)
    await venue.on_user_event(trade_update(first.client_id, trade_id=1, order_id=1))
    await venue.on_user_event(trade_update(second.client_id, trade_id=2, order_id=2))
    # The first entry's stop fills: 0.010 of the 0.020 long remains, so nothing is cancelled.
    first_sl = f"{first.client_id}-sl"
    exchange.orders[first_sl]["status"] = "FILLED"
    await venue.on_user_event(
        trade_update(first_sl, side="SELL", trade_id=3, order_id=3, order_type="STOP_MARKET")
    )
    assert venue.position_qty(SYMBOL) == Decimal("0.010")
    assert exchange.sent("DELETE", ORDER) == []
    # The second's take-profit fills: flat. What still works is cancelled, not the filled stop.
    second_tp = f"{second.client_id}-tp"
    exchange.orders[second_tp]["status"] = "FILLED"
    await venue.on_user_event(
        trade_update(
            second_tp, side="SELL", trade_id=4, order_id=4, order_type="TAKE_PROFIT_MARKET"
        )
    )
    assert venue.position_qty(SYMBOL) == 0
    # (The take-profit that made the position flat is asked too: its FILLED comes with the fill.)
    assert [p["origClientOrderId"] for p in exchange.sent("DELETE", ORDER)] == sorted(
        [f"{first.client_id}-tp", f"{second.client_id}-sl", second_tp]
    )


async def test_a_resync_after_a_late_stream_event_does_not_protect_an_entry_twice(
    venue: LiveVenue, exchange: FakeBinance, ledger: OrderLedger, mgate: RiskGate
) -> None:
    order = buy(mgate)
    await venue.place(order)  # answered FILLED: protected
    # The stream delivers a partial fill after the answer, then drops before the final event:
    # the entry's row is open again, and the reconnect resyncs.
    await venue.on_user_event(
        trade_update(order.client_id, status="PARTIALLY_FILLED", qty="0.004", filled="0.004")
    )
    row = await ledger.order(order.client_id)
    assert row is not None and row["stage"] == "open"
    assert await venue.resync_open() == 0
    row = await ledger.order(order.client_id)
    assert row is not None and (row["stage"], row["status"]) == ("done", "FILLED")
    # Its exits already exist: not placed again (which the exchange would refuse, -4116).
    assert posted(exchange) == [order.client_id, f"{order.client_id}-sl", f"{order.client_id}-tp"]
    assert not venue.halted
