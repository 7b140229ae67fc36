"""The order journal column by column, read back from ``orders.db`` with a connection of its own:
what an intent, an answer, a fill, an income row, a state and a discrepancy leave on disk, the
order rows come back in, and the sums reconciliation builds on (no simulator: fast). Stages are
written out as the text on disk (what the panel and an operator read), not as the constants."""

from __future__ import annotations

import json
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from app.engine.orders import Order, OrderType, Side
from app.live import ledger as lg
from app.live.ledger import LedgerFill, OrderLedger

SYMBOL = "BTCUSDT"


def _rows(path: Path, sql: str, params: tuple[object, ...] = ()) -> list[dict[str, Any]]:
    """Rows as another process would read them: a fresh connection to the file."""
    conn = sqlite3.connect(path)
    try:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute(sql, params).fetchall()]
    finally:
        conn.close()


def _order(
    client_id: str = "c-1",
    *,
    side: Side = Side.BUY,
    kind: OrderType = OrderType.MARKET,
    price: str | None = None,
    reduce_only: bool = False,
    stop: str | None = None,
    take_profit: str | None = None,
    purpose: str = "entry",
) -> Order:
    return Order(
        client_id,
        SYMBOL,
        side,
        kind,
        Decimal("0.012"),
        None if price is None else Decimal(price),
        reduce_only,
        None if stop is None else Decimal(stop),
        None if take_profit is None else Decimal(take_profit),
        5,
        "model-7",
        purpose,
        b"",
    )


def _fill(
    trade_id: int,
    *,
    side: str = "BUY",
    qty: str = "0.010",
    symbol: str = SYMBOL,
    order_id: int = 77,
    client_id: str | None = None,
    ts_ms: int = 1_000,
) -> LedgerFill:
    return LedgerFill(
        symbol=symbol,
        trade_id=trade_id,
        order_id=order_id,
        client_id=client_id,
        side=side,
        price=Decimal("30000.10"),
        qty=Decimal(qty),
        commission=Decimal("0.12"),
        commission_asset="USDT",
        realized_pnl=Decimal("-1.5"),
        maker=True,
        ts_ms=ts_ms,
        source="userTrades",
    )


async def test_an_intent_row_holds_every_field_of_a_limit_order_and_its_reason(
    ledger: OrderLedger,
) -> None:
    order = _order(
        kind=OrderType.LIMIT,
        side=Side.SELL,
        price="30000.5",
        reduce_only=True,
        stop="29000.1",
        take_profit="31000.2",
        purpose="exit:stop",
    )
    await ledger.record_intent(order, "model signal", 1_234, parent_id="p-9")
    [row] = _rows(ledger.path, "SELECT * FROM orders")
    assert row == {
        "client_id": "c-1",
        "ts_created_ns": 1_234,
        "ts_updated_ns": 1_234,
        "symbol": SYMBOL,
        "side": "SELL",
        "type": "LIMIT",
        "qty": "0.012",
        "price": "30000.5",
        "stop_price": "29000.1",
        "take_profit": "31000.2",
        "reduce_only": 1,
        "purpose": "exit:stop",
        "reason": "model signal",
        "model_version": "model-7",
        "parent_id": "p-9",
        "stage": "intent",
        "status": "",
        "order_id": None,
        "filled_qty": "0",
        "avg_price": None,
        "detail": "",
    }
    [event] = _rows(ledger.path, "SELECT * FROM events")
    assert (event["ts_ns"], event["client_id"], event["kind"]) == (1_234, "c-1", "intent")
    assert json.loads(event["body"]) == {"reason": "model signal", "purpose": "exit:stop"}
    assert await ledger.order("c-1") == row


async def test_a_market_intent_stores_no_prices_and_no_parent(ledger: OrderLedger) -> None:
    await ledger.record_intent(_order(), "signal", 10)
    [row] = _rows(ledger.path, "SELECT * FROM orders")
    assert (row["price"], row["stop_price"], row["take_profit"]) == (None, None, None)
    assert (row["reduce_only"], row["parent_id"], row["type"], row["side"]) == (
        0,
        None,
        "MARKET",
        "BUY",
    )


async def test_a_second_intent_under_the_same_client_id_is_refused_and_leaves_no_event(
    ledger: OrderLedger,
) -> None:
    await ledger.record_intent(_order(), "first", 10)
    with pytest.raises(sqlite3.IntegrityError):
        await ledger.record_intent(_order(), "second", 20)
    assert [e["body"] for e in _rows(ledger.path, "SELECT body FROM events")] == [
        json.dumps({"reason": "first", "purpose": "entry"})
    ]


async def test_an_answer_without_a_stage_is_journalled_and_leaves_the_order_row_alone(
    ledger: OrderLedger,
) -> None:
    await ledger.record_intent(_order(), "signal", 10)
    await ledger.record("c-1", "error", {"code": -1001, "qty": Decimal("0.5")}, 20)
    [row] = _rows(ledger.path, "SELECT * FROM orders")
    assert (row["stage"], row["status"], row["ts_updated_ns"]) == ("intent", "", 10)
    events = _rows(ledger.path, "SELECT * FROM events ORDER BY id")
    assert [(e["ts_ns"], e["client_id"], e["kind"]) for e in events] == [
        (10, "c-1", "intent"),
        (20, "c-1", "error"),
    ]
    # A Decimal in the answer is kept as its exact text.
    assert json.loads(events[1]["body"]) == {"code": -1001, "qty": "0.5"}


async def test_an_answer_with_a_stage_moves_the_row_and_keeps_what_it_does_not_say(
    ledger: OrderLedger,
) -> None:
    await ledger.record_intent(_order(), "signal", 10)
    await ledger.record(
        "c-1",
        "response",
        {"orderId": 99},
        20,
        stage="open",
        status="PARTIALLY_FILLED",
        order_id=99,
        filled_qty="0.004",
        avg_price="30001.5",
        detail="first part",
    )
    [row] = _rows(ledger.path, "SELECT * FROM orders")
    assert {k: row[k] for k in ("ts_updated_ns", "stage", "status", "order_id")} == {
        "ts_updated_ns": 20,
        "stage": "open",
        "status": "PARTIALLY_FILLED",
        "order_id": 99,
    }
    assert (row["filled_qty"], row["avg_price"], row["detail"]) == (
        "0.004",
        "30001.5",
        "first part",
    )
    assert row["ts_created_ns"] == 10
    # A later answer that names no order id, quantity or price keeps the ones recorded; its
    # status and detail default to empty.
    await ledger.record("c-1", "resolved", {}, 30, stage="unknown")
    [row] = _rows(ledger.path, "SELECT * FROM orders")
    assert (row["stage"], row["status"], row["detail"], row["ts_updated_ns"]) == (
        "unknown",
        "",
        "",
        30,
    )
    assert (row["order_id"], row["filled_qty"], row["avg_price"]) == (99, "0.004", "30001.5")
    assert [e["kind"] for e in await ledger.events("c-1")] == ["intent", "response", "resolved"]


async def test_an_answer_moves_only_its_own_order_row(ledger: OrderLedger) -> None:
    await ledger.record_intent(_order("c-1"), "signal", 10)
    await ledger.record_intent(_order("c-2"), "signal", 11)
    await ledger.record("c-2", "response", {}, 20, stage="done", status="FILLED")
    stages = {r["client_id"]: r["stage"] for r in _rows(ledger.path, "SELECT * FROM orders")}
    assert stages == {"c-1": "intent", "c-2": "done"}


@pytest.mark.parametrize(
    ("status", "stage"),
    [("FILLED", "done"), ("NEW", "open"), ("REJECTED", "rejected"), ("EXPIRED", "done")],
)
async def test_an_exchange_order_body_sets_stage_status_id_quantity_and_price(
    ledger: OrderLedger, status: str, stage: str
) -> None:
    await ledger.record_intent(_order(), "signal", 10)
    body = {
        "clientOrderId": "c-1",
        "orderId": "4242",
        "status": status,
        "executedQty": "0.012",
        "avgPrice": "30000.7",
    }
    await ledger.record_exchange_order(body, "query", 20)
    [row] = _rows(ledger.path, "SELECT * FROM orders")
    assert (row["stage"], row["status"], row["order_id"]) == (stage, status, 4242)
    assert (row["filled_qty"], row["avg_price"], row["ts_updated_ns"]) == ("0.012", "30000.7", 20)
    [_, event] = _rows(ledger.path, "SELECT * FROM events ORDER BY id")
    assert (event["kind"], event["client_id"], json.loads(event["body"])) == ("query", "c-1", body)


async def test_an_exchange_order_body_without_status_or_quantities_reads_as_open_and_zero(
    ledger: OrderLedger,
) -> None:
    await ledger.record_intent(_order(), "signal", 10)
    await ledger.record_exchange_order({"clientOrderId": "c-1", "orderId": 5}, "response", 20)
    [row] = _rows(ledger.path, "SELECT * FROM orders")
    assert (row["stage"], row["status"], row["order_id"]) == ("open", "", 5)
    assert (row["filled_qty"], row["avg_price"]) == ("0", "0")


def test_every_other_exchange_status_is_still_working() -> None:
    assert lg.stage_of("NEW_INSURANCE") == "open"
    assert lg.stage_of("") == "open"
    assert lg.UNSETTLED == ("intent", "open", "unknown")
    assert (lg.NOT_SENT, lg.REJECTED, lg.DONE) == ("not_sent", "rejected", "done")


async def test_order_rows_come_oldest_first_filtered_by_stage(ledger: OrderLedger) -> None:
    await ledger.record_intent(_order("late"), "signal", 300)
    await ledger.record_intent(_order("early"), "signal", 100)
    await ledger.record_intent(_order("middle"), "signal", 200)
    await ledger.record("middle", "response", {}, 400, stage="open", status="NEW")
    await ledger.record("late", "response", {}, 400, stage="done", status="FILLED")
    assert [r["client_id"] for r in await ledger.orders()] == ["early", "middle", "late"]
    assert [r["client_id"] for r in await ledger.orders(("intent",))] == ["early"]
    assert [r["client_id"] for r in await ledger.orders(("open", "done"))] == ["middle", "late"]
    assert [r["client_id"] for r in await ledger.orders(lg.UNSETTLED)] == ["early", "middle"]
    assert await ledger.orders(("rejected",)) == []
    assert await ledger.order("nobody") is None
    row = await ledger.order("middle")
    assert row is not None and (row["client_id"], row["status"]) == ("middle", "NEW")


async def test_events_come_in_arrival_order_all_or_for_one_client_id(ledger: OrderLedger) -> None:
    await ledger.record("b", "response", {"n": 1}, 300)
    await ledger.record("a", "stream", {"n": 2}, 100)
    await ledger.record("b", "query", {"n": 3}, 200)
    every = await ledger.events()
    assert [(e["client_id"], e["kind"], e["ts_ns"]) for e in every] == [
        ("b", "response", 300),
        ("a", "stream", 100),
        ("b", "query", 200),
    ]
    assert [json.loads(e["body"])["n"] for e in await ledger.events("b")] == [1, 3]
    assert await ledger.events("c") == []


async def test_a_fill_row_holds_the_exchange_execution_and_maps_its_client_id(
    ledger: OrderLedger,
) -> None:
    await ledger.record_intent(_order("c-1"), "signal", 10)
    await ledger.record("c-1", "response", {}, 20, stage="done", status="FILLED", order_id=77)
    new = await ledger.add_fills([_fill(5), _fill(6, order_id=78)])
    assert [f.trade_id for f in new] == [5, 6]
    rows = _rows(ledger.path, "SELECT * FROM fills ORDER BY trade_id")
    assert rows[0] == {
        "symbol": SYMBOL,
        "trade_id": 5,
        "order_id": 77,
        "client_id": "c-1",  # found by its order id
        "side": "BUY",
        "price": "30000.10",
        "qty": "0.010",
        "commission": "0.12",
        "commission_asset": "USDT",
        "realized_pnl": "-1.5",
        "maker": 1,
        "ts_ms": 1_000,
        "source": "userTrades",
    }
    assert rows[1]["client_id"] is None  # an order id the ledger does not know


async def test_a_fill_that_names_its_client_id_keeps_it(ledger: OrderLedger) -> None:
    await ledger.add_fills([_fill(5, client_id="from-stream")])
    [row] = _rows(ledger.path, "SELECT client_id FROM fills")
    assert row["client_id"] == "from-stream"


async def test_a_fill_is_counted_once_whoever_reports_it(ledger: OrderLedger) -> None:
    assert await ledger.add_fills([]) == []
    first = await ledger.add_fills([_fill(5), _fill(6)])
    assert [f.trade_id for f in first] == [5, 6]
    again = await ledger.add_fills([_fill(6, client_id="x"), _fill(7), _fill(5)])
    assert again == [_fill(7)]
    # The same trade id on another symbol is another execution.
    other = await ledger.add_fills([_fill(5, symbol="ETHUSDT")])
    assert [(f.symbol, f.trade_id) for f in other] == [("ETHUSDT", 5)]
    assert len(_rows(ledger.path, "SELECT * FROM fills")) == 4


async def test_fills_come_by_time_then_trade_id_and_per_symbol(ledger: OrderLedger) -> None:
    await ledger.add_fills(
        [
            _fill(9, ts_ms=2_000),
            _fill(8, ts_ms=2_000),
            _fill(3, ts_ms=3_000),
            _fill(1, ts_ms=1_000, symbol="ETHUSDT"),
        ]
    )
    assert [(r["symbol"], r["trade_id"]) for r in await ledger.fills()] == [
        ("ETHUSDT", 1),
        (SYMBOL, 8),
        (SYMBOL, 9),
        (SYMBOL, 3),
    ]
    assert [r["trade_id"] for r in await ledger.fills(SYMBOL)] == [8, 9, 3]
    assert [r["trade_id"] for r in await ledger.fills("ETHUSDT")] == [1]


async def test_the_last_trade_id_is_per_symbol_and_none_before_any_fill(
    ledger: OrderLedger,
) -> None:
    assert await ledger.last_trade_id(SYMBOL) is None
    await ledger.add_fills([_fill(12), _fill(40), _fill(30), _fill(99, symbol="ETHUSDT")])
    assert await ledger.last_trade_id(SYMBOL) == 40
    assert await ledger.last_trade_id("ETHUSDT") == 99
    assert await ledger.last_trade_id("SOLUSDT") is None


async def test_the_position_since_a_trade_id_adds_buys_and_subtracts_sells(
    ledger: OrderLedger,
) -> None:
    await ledger.add_fills(
        [
            _fill(10, qty="0.5"),
            _fill(11, qty="0.3"),
            _fill(12, side="SELL", qty="0.1"),
            _fill(13, qty="7", symbol="ETHUSDT"),
        ]
    )
    assert await ledger.position_since(SYMBOL, 0) == Decimal("0.7")
    assert await ledger.position_since(SYMBOL, 10) == Decimal("0.2")  # strictly after 10
    assert await ledger.position_since(SYMBOL, 11) == Decimal("-0.1")
    assert await ledger.position_since(SYMBOL, 12) == Decimal(0)
    assert await ledger.position_since("ETHUSDT", 0) == Decimal(7)


def _income(tran_id: int, amount: str, **extra: object) -> dict[str, Any]:
    return {"tranId": tran_id, "incomeType": "COMMISSION", "income": amount, "time": 5_000} | extra


async def test_an_income_row_is_stored_with_empty_text_for_what_the_exchange_left_out(
    ledger: OrderLedger,
) -> None:
    assert await ledger.add_income([]) == 0
    added = await ledger.add_income(
        [
            _income(2, "-0.12", symbol=SYMBOL, asset="USDT", tradeId=55, time="6000"),
            _income(1, "3.5", incomeType="FUNDING_FEE"),
        ]
    )
    assert added == 2
    rows = _rows(ledger.path, "SELECT * FROM income ORDER BY tran_id")
    assert rows == [
        {
            "tran_id": 1,
            "symbol": "",
            "income_type": "FUNDING_FEE",
            "amount": "3.5",
            "asset": "",
            "ts_ms": 5_000,
            "trade_id": "",
        },
        {
            "tran_id": 2,
            "symbol": SYMBOL,
            "income_type": "COMMISSION",
            "amount": "-0.12",
            "asset": "USDT",
            "ts_ms": 6_000,
            "trade_id": "55",
        },
    ]
    assert await ledger.income() == rows
    # Recovery may fetch the same rows again: only the new one counts.
    assert await ledger.add_income([_income(2, "-0.12"), _income(3, "1")]) == 1


async def test_the_last_income_time_is_none_before_any_income(ledger: OrderLedger) -> None:
    assert await ledger.last_income_ms() is None
    await ledger.add_income([_income(1, "1", time=700), _income(2, "1", time=900)])
    await ledger.add_income([_income(3, "1", time=800)])
    assert await ledger.last_income_ms() == 900


async def test_income_since_a_tran_id_sums_usdt_only_and_names_the_highest_id(
    ledger: OrderLedger,
) -> None:
    await ledger.add_income(
        [
            _income(1, "10", asset="USDT"),
            _income(2, "-0.25", asset="USDT"),
            _income(3, "1.5"),  # no asset named: USDT
            _income(4, "100", asset="BNB"),
        ]
    )
    # The BNB row is neither summed nor the highest id (the baseline counts USDT only).
    assert await ledger.income_since(0) == (Decimal("11.25"), 3)
    assert await ledger.income_since(1) == (Decimal("1.25"), 3)
    assert await ledger.income_since(2) == (Decimal("1.5"), 3)
    assert await ledger.income_since(3) == (Decimal(0), 3)
    assert await ledger.income_since(9) == (Decimal(0), 9)  # nothing newer: the id stays
    total, _ = await ledger.income_since(9)
    assert type(total) is Decimal  # an empty sum is a Decimal zero too, never the int 0


async def test_state_is_a_json_value_per_key_that_a_later_write_replaces(
    ledger: OrderLedger,
) -> None:
    assert await ledger.get_state("mode") is None
    assert await ledger.get_state("mode", "paper") == "paper"
    assert ledger.get_state_sync("mode", "off") == "off"
    assert ledger.get_state_sync("mode") is None
    await ledger.set_state("mode", {"mode": "live", "wallet": Decimal("10.5")}, 10)
    await ledger.set_state("halt", True, 11)
    await ledger.set_state("mode", {"mode": "paper"}, 20)
    rows = _rows(ledger.path, "SELECT * FROM live_state ORDER BY key")
    assert rows == [
        {"key": "halt", "value": "true", "ts_ns": 11},
        {"key": "mode", "value": '{"mode": "paper"}', "ts_ns": 20},
    ]
    assert await ledger.get_state("mode") == {"mode": "paper"}
    assert ledger.get_state_sync("halt") is True
    await ledger.set_state("wallet", Decimal("10.5"), 30)
    assert await ledger.get_state("wallet") == "10.5"  # a Decimal is kept as its exact text


async def test_discrepancies_stay_open_until_resolved_once_with_the_resolution(
    ledger: OrderLedger,
) -> None:
    assert (
        await ledger.add_discrepancy("position_mismatch", SYMBOL, "ledger 1, exchange 2", 10) == 1
    )
    assert await ledger.add_discrepancy("balance_mismatch", "", "ledger 5, exchange 6", 11) == 2
    rows = _rows(ledger.path, "SELECT * FROM discrepancies ORDER BY id")
    assert rows[0] == {
        "id": 1,
        "ts_ns": 10,
        "kind": "position_mismatch",
        "symbol": SYMBOL,
        "detail": "ledger 1, exchange 2",
        "resolved_ts_ns": None,
        "resolution": "",
    }
    assert [r["kind"] for r in await ledger.open_discrepancies()] == [
        "position_mismatch",
        "balance_mismatch",
    ]
    assert await ledger.resolve_discrepancies("adopted", 20) == 2
    assert await ledger.open_discrepancies() == []
    assert await ledger.add_discrepancy("order_unknown", "", "1 order", 30) == 3
    assert await ledger.resolve_discrepancies("operator", 40) == 1
    assert await ledger.resolve_discrepancies("again", 50) == 0
    done = await ledger.discrepancies()
    assert [(r["id"], r["resolved_ts_ns"], r["resolution"]) for r in done] == [
        (1, 20, "adopted"),
        (2, 20, "adopted"),
        (3, 40, "operator"),
    ]


def test_a_fill_signs_its_quantity_by_side() -> None:
    assert _fill(1, side="BUY", qty="0.3").signed_qty == Decimal("0.3")
    assert _fill(1, side="SELL", qty="0.3").signed_qty == Decimal("-0.3")


async def test_the_journal_survives_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "orders.db"
    first = OrderLedger(path)
    await first.record_intent(_order(), "signal", 10)
    await first.set_state("baseline", {"wallet": "100"}, 10)
    first.close()
    second = OrderLedger(path)
    try:
        assert second.path == path
        row = await second.order("c-1")
        assert row is not None and row["stage"] == "intent"
        assert await second.get_state("baseline") == {"wallet": "100"}
    finally:
        second.close()
