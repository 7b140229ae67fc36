"""Tests that kill the mutants of app/engine/orders.py the other tests let survive: sides and
statuses, the sealed payload field by field, client order ids at Binance's length limit, the
filters' rounding and every rejection with its message, and the order and fill tables read back
from a real SQLite file (transactions rolled back on error)."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from app.binance.filters import SymbolFilters
from app.engine.orders import (
    CLIENT_ID_RE,
    ZERO,
    ClientOrderIds,
    Fill,
    Liquidity,
    Order,
    OrderStatus,
    OrderType,
    OrderUpdate,
    RejectCode,
    Side,
    check_filters,
    expire_open_orders,
    load_fills,
    load_orders,
    min_qty,
    next_boot,
    on_grid,
    round_price,
    round_qty,
    save_fills,
    save_order_update,
    transaction,
)
from tests.engine.risk_support import open_db

D = Decimal
FILTERS = SymbolFilters("BTCUSDT", D("0.10"), D("0.001"), D("5"), 2, 3)
PRICE, STOP, TAKE_PROFIT = D("30000.1"), D("29900"), D("30200.5")


def _order(
    client_id: str = "app-1-1",
    *,
    side: Side = Side.BUY,
    type_: OrderType = OrderType.LIMIT,
    price: Decimal | None = PRICE,
    reduce_only: bool = False,
    stop: Decimal | None = STOP,
    take_profit: Decimal | None = TAKE_PROFIT,
    ts: int = 100,
    purpose: str = "entry",
) -> Order:
    return Order(
        client_id,
        "BTCUSDT",
        side,
        type_,
        D("0.003"),
        price,
        reduce_only,
        stop,
        take_profit,
        ts,
        "m-7",
        purpose,
        b"seal",
    )


# -- enums --------------------------------------------------------------------------------------


def test_sides_have_their_sign_and_opposite() -> None:
    assert Side.BUY.sign == 1
    assert Side.SELL.sign == -1
    assert Side.BUY.opposite is Side.SELL
    assert Side.SELL.opposite is Side.BUY
    assert (str(Side.BUY), str(Side.SELL)) == ("BUY", "SELL")


def test_only_filled_cancelled_expired_and_rejected_orders_are_done() -> None:
    done = {s for s in OrderStatus if s.done}
    assert done == {
        OrderStatus.FILLED,
        OrderStatus.CANCELED,
        OrderStatus.EXPIRED,
        OrderStatus.REJECTED,
    }
    assert not OrderStatus.NEW.done
    assert not OrderStatus.PARTIALLY_FILLED.done


def test_enum_values_are_binances_and_the_journals() -> None:
    assert [str(t) for t in OrderType] == ["MARKET", "LIMIT"]
    assert [str(s) for s in OrderStatus] == [
        "NEW",
        "PARTIALLY_FILLED",
        "FILLED",
        "CANCELED",
        "EXPIRED",
        "REJECTED",
    ]
    assert (str(Liquidity.MAKER), str(Liquidity.TAKER)) == ("maker", "taker")
    assert RejectCode.DUPLICATE_ID == "duplicate_client_id"
    assert RejectCode.QTY_BELOW_MIN == "qty_below_min"


# -- the sealed payload -------------------------------------------------------------------------


def test_payload_lists_every_field_but_the_seal_in_order() -> None:
    order = _order()
    assert order.payload() == (
        b"app-1-1|BTCUSDT|BUY|LIMIT|0.003|30000.1|0|29900|30200.5|100|m-7|entry"
    )
    market = _order(
        side=Side.SELL,
        type_=OrderType.MARKET,
        price=None,
        reduce_only=True,
        stop=None,
        take_profit=None,
        purpose="exit:stop",
    )
    assert (
        market.payload() == b"app-1-1|BTCUSDT|SELL|MARKET|0.003|None|1|None|None|100|m-7|exit:stop"
    )


def test_the_seal_is_neither_compared_nor_shown() -> None:
    order = _order()
    other = Order(*[getattr(order, f) for f in Order.__dataclass_fields__][:-1], b"another")
    assert order == other
    assert "seal" not in repr(order)
    assert "app-1-1" in repr(order)


# -- client order ids ---------------------------------------------------------------------------


def test_client_ids_count_up_within_a_boot_from_the_start_seq() -> None:
    ids = ClientOrderIds(7)
    assert [ids.next(), ids.next(), ids.next()] == ["app-7-1", "app-7-2", "app-7-3"]
    resumed = ClientOrderIds(0, start_seq=41)
    assert resumed.next() == "app-0-42"


def test_a_negative_boot_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^boot must be >= 0$"):
        ClientOrderIds(-1)


def test_a_client_id_over_36_characters_is_refused_not_sent() -> None:
    boot = 10**27  # "app-" + 28 digits + "-" = 33 characters before the sequence
    ids = ClientOrderIds(boot, start_seq=997)
    assert ids.next() == f"app-{boot}-998"
    assert ids.next() == f"app-{boot}-999"  # exactly 36: Binance's limit
    with pytest.raises(ValueError, match="breaks Binance's format") as err:
        ids.next()
    assert f"app-{boot}-1000" in str(err.value)


def test_the_client_id_pattern_is_binances() -> None:
    assert CLIENT_ID_RE.match("app-1-1")
    assert CLIENT_ID_RE.match("A.b:c/d_e-9")
    assert CLIENT_ID_RE.match("x" * 36)
    assert not CLIENT_ID_RE.match("x" * 37)
    assert not CLIENT_ID_RE.match("")
    assert not CLIENT_ID_RE.match("app 1")
    assert not CLIENT_ID_RE.match("app-1-1#")


# -- filters ------------------------------------------------------------------------------------


def test_round_qty_rounds_down_to_the_step() -> None:
    assert round_qty(D("0.0039"), D("0.001")) == D("0.003")
    assert round_qty(D("0.003"), D("0.001")) == D("0.003")
    assert round_qty(D("-0.0031"), D("0.001")) == D("-0.004")  # floor, toward -infinity
    assert round_qty(D("17"), D("5")) == D("15")


def test_round_price_rounds_a_buy_down_and_a_sell_up() -> None:
    assert round_price(D("30000.17"), D("0.10"), Side.BUY) == D("30000.10")
    assert round_price(D("30000.11"), D("0.10"), Side.SELL) == D("30000.20")
    assert round_price(D("30000.10"), D("0.10"), Side.BUY) == D("30000.10")
    assert round_price(D("30000.10"), D("0.10"), Side.SELL) == D("30000.10")
    assert round_price(D("7"), D("5"), Side.BUY) == D("5")
    assert round_price(D("7"), D("5"), Side.SELL) == D("10")


def test_on_grid_means_an_exact_multiple() -> None:
    assert on_grid(D("0.003"), D("0.001"))
    assert on_grid(D("0"), D("0.001"))
    assert not on_grid(D("0.0031"), D("0.001"))
    assert on_grid(D("30000.2"), D("0.1"))
    assert not on_grid(D("1"), D("2"))


def test_min_qty_is_the_step_size() -> None:
    assert min_qty(FILTERS) == D("0.001")


def test_check_filters_passes_an_order_on_the_grid_and_above_the_minimums() -> None:
    assert check_filters(FILTERS, D("0.001"), D("5000.0"), reduce_only=False) is None  # 5 exactly
    assert check_filters(FILTERS, D("0.002"), D("30000.1"), reduce_only=False) is None


def test_check_filters_refuses_a_quantity_off_the_step() -> None:
    assert check_filters(FILTERS, D("0.0015"), D("30000"), reduce_only=False) == (
        RejectCode.QTY_OFF_STEP,
        "BTCUSDT: qty 0.0015 is not a multiple of 0.001",
    )


def test_check_filters_refuses_a_quantity_below_the_minimum() -> None:
    assert check_filters(FILTERS, D("0"), D("30000"), reduce_only=True) == (
        RejectCode.QTY_BELOW_MIN,
        "BTCUSDT: qty 0 < minimum 0.001",
    )


def test_check_filters_refuses_a_price_off_the_tick() -> None:
    assert check_filters(FILTERS, D("0.001"), D("30000.15"), reduce_only=False) == (
        RejectCode.PRICE_OFF_TICK,
        "BTCUSDT: price 30000.15 is not a multiple of 0.10",
    )


def test_check_filters_refuses_a_notional_below_the_minimum_unless_reduce_only() -> None:
    assert check_filters(FILTERS, D("0.001"), D("4999.9"), reduce_only=False) == (
        RejectCode.NOTIONAL_BELOW_MIN,
        "BTCUSDT: notional 4.9999 < minNotional 5",
    )
    assert check_filters(FILTERS, D("0.001"), D("4999.9"), reduce_only=True) is None


# -- persistence --------------------------------------------------------------------------------


def test_a_transaction_commits_or_rolls_back_everything(tmp_path: Path) -> None:
    conn = open_db(tmp_path / "trading.db")
    with transaction(conn) as same:
        assert same is conn
        conn.execute("INSERT INTO boots (ts_ns) VALUES (1)")
        assert conn.in_transaction
    assert not conn.in_transaction

    def interrupted() -> None:
        with transaction(conn):
            conn.execute("INSERT INTO boots (ts_ns) VALUES (2)")
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # any BaseException rolls back
        interrupted()
    assert not conn.in_transaction
    assert conn.execute("SELECT ts_ns FROM boots").fetchall() == [(1,)]
    conn.close()
    # What was committed is on disk for another connection.
    other = open_db(tmp_path / "trading.db")
    assert other.execute("SELECT ts_ns FROM boots").fetchall() == [(1,)]
    other.close()


def test_a_transaction_takes_the_write_lock_at_begin(tmp_path: Path) -> None:
    path = tmp_path / "trading.db"
    conn = open_db(path)
    other = open_db(path)
    other.execute("PRAGMA busy_timeout = 0")
    with transaction(conn):
        # BEGIN IMMEDIATE: another writer is locked out before this one has written anything.
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
    other.execute("BEGIN IMMEDIATE")
    other.execute("ROLLBACK")
    conn.close()
    other.close()


def test_next_boot_counts_starts_and_records_their_time(tmp_path: Path) -> None:
    path = tmp_path / "trading.db"
    conn = open_db(path)
    assert next_boot(conn, 11) == 1
    assert next_boot(conn, 12) == 2
    conn.close()
    conn = open_db(path)
    assert next_boot(conn, 13) == 3
    assert conn.execute("SELECT id, ts_ns FROM boots ORDER BY id").fetchall() == [
        (1, 11),
        (2, 12),
        (3, 13),
    ]
    conn.close()


def _update(
    order: Order, status: OrderStatus, filled: str, avg: str | None, ts: int
) -> OrderUpdate:
    return OrderUpdate(
        order, status, D(filled), None if avg is None else D(avg), D("0.012"), ts, "why"
    )


def test_an_order_row_is_inserted_then_updated_in_place(tmp_path: Path) -> None:
    conn = open_db(tmp_path / "trading.db")
    order = _order()
    save_order_update(conn, _update(order, OrderStatus.NEW, "0", None, 100))
    assert load_orders(conn) == [
        {
            "client_id": "app-1-1",
            "ts_created_ns": 100,
            "ts_updated_ns": 100,
            "symbol": "BTCUSDT",
            "side": "BUY",
            "type": "LIMIT",
            "qty": "0.003",
            "price": "30000.1",
            "reduce_only": 0,
            "stop_price": "29900",
            "take_profit": "30200.5",
            "model_version": "m-7",
            "purpose": "entry",
            "status": "NEW",
            "filled_qty": "0",
            "avg_price": None,
            "fees": "0.012",
            "reason": "why",
        }
    ]
    filled = OrderUpdate(order, OrderStatus.FILLED, D("0.003"), D("30000.05"), D("0.036"), 200, "")
    save_order_update(conn, filled)
    (row,) = load_orders(conn)
    assert row["ts_created_ns"] == 100
    assert (row["ts_updated_ns"], row["status"], row["filled_qty"]) == (200, "FILLED", "0.003")
    assert (row["avg_price"], row["fees"], row["reason"]) == ("30000.05", "0.036", "")
    conn.close()


def test_a_market_exit_is_stored_with_nulls_and_reduce_only(tmp_path: Path) -> None:
    conn = open_db(tmp_path / "trading.db")
    order = _order(
        "app-1-2-sl",
        side=Side.SELL,
        type_=OrderType.MARKET,
        price=None,
        reduce_only=True,
        stop=None,
        take_profit=None,
        purpose="exit:stop",
    )
    save_order_update(conn, _update(order, OrderStatus.NEW, "0", None, 5))
    (row,) = load_orders(conn)
    assert (row["side"], row["type"], row["reduce_only"]) == ("SELL", "MARKET", 1)
    assert (row["price"], row["stop_price"], row["take_profit"]) == (None, None, None)
    conn.close()


def test_load_orders_lists_oldest_first_and_open_only_leaves_done_ones_out(
    tmp_path: Path,
) -> None:
    conn = open_db(tmp_path / "trading.db")
    rows = [
        ("app-1-3", 30, OrderStatus.PARTIALLY_FILLED),
        ("app-1-1", 10, OrderStatus.FILLED),
        ("app-1-2", 20, OrderStatus.NEW),
        ("app-1-0", 20, OrderStatus.CANCELED),
        ("app-1-4", 40, OrderStatus.EXPIRED),
        ("app-1-5", 50, OrderStatus.REJECTED),
    ]
    for client_id, ts, status in rows:
        save_order_update(conn, _update(_order(client_id, ts=ts), status, "0", None, ts))
    every = [r["client_id"] for r in load_orders(conn)]
    assert every == ["app-1-1", "app-1-0", "app-1-2", "app-1-3", "app-1-4", "app-1-5"]
    assert [r["client_id"] for r in load_orders(conn, open_only=True)] == ["app-1-2", "app-1-3"]
    conn.close()


def test_expire_open_orders_expires_only_the_open_ones(tmp_path: Path) -> None:
    conn = open_db(tmp_path / "trading.db")
    for client_id, status in (
        ("app-1-1", OrderStatus.NEW),
        ("app-1-2", OrderStatus.PARTIALLY_FILLED),
        ("app-1-3", OrderStatus.FILLED),
        ("app-1-4", OrderStatus.CANCELED),
    ):
        save_order_update(conn, _update(_order(client_id), status, "0", None, 100))
    assert expire_open_orders(conn, 900, "engine stopped") == 2
    got = {
        r["client_id"]: (r["status"], r["ts_updated_ns"], r["reason"]) for r in load_orders(conn)
    }
    assert got == {
        "app-1-1": ("EXPIRED", 900, "engine stopped"),
        "app-1-2": ("EXPIRED", 900, "engine stopped"),
        "app-1-3": ("FILLED", 100, "why"),
        "app-1-4": ("CANCELED", 100, "why"),
    }
    assert load_orders(conn, open_only=True) == []
    assert expire_open_orders(conn, 901, "again") == 0
    conn.close()


def test_fills_are_appended_with_their_pnl_and_read_back_per_order(tmp_path: Path) -> None:
    conn = open_db(tmp_path / "trading.db")
    for client_id in ("app-1-1", "app-1-2"):
        save_order_update(conn, _update(_order(client_id), OrderStatus.NEW, "0", None, 1))
    first = Fill(
        "app-1-2", "BTCUSDT", Side.SELL, D("30000.1"), D("0.002"), D("0.024"), Liquidity.MAKER, 7
    )
    second = Fill(
        "app-1-1", "BTCUSDT", Side.BUY, D("29999.9"), D("0.001"), D("0.012"), Liquidity.TAKER, 8
    )
    third = Fill(
        "app-1-2", "BTCUSDT", Side.SELL, D("30000"), D("0.001"), D("0.012"), Liquidity.TAKER, 9
    )
    save_fills(conn, [(first, ZERO), (second, D("-0.5"))])
    save_fills(conn, [(third, D("1.25"))])
    assert load_fills(conn) == [
        {
            "ts_ns": 7,
            "client_id": "app-1-2",
            "symbol": "BTCUSDT",
            "side": "SELL",
            "price": "30000.1",
            "qty": "0.002",
            "fee": "0.024",
            "liquidity": "maker",
            "realized_pnl": "0",
        },
        {
            "ts_ns": 8,
            "client_id": "app-1-1",
            "symbol": "BTCUSDT",
            "side": "BUY",
            "price": "29999.9",
            "qty": "0.001",
            "fee": "0.012",
            "liquidity": "taker",
            "realized_pnl": "-0.5",
        },
        {
            "ts_ns": 9,
            "client_id": "app-1-2",
            "symbol": "BTCUSDT",
            "side": "SELL",
            "price": "30000",
            "qty": "0.001",
            "fee": "0.012",
            "liquidity": "taker",
            "realized_pnl": "1.25",
        },
    ]
    assert [f["ts_ns"] for f in load_fills(conn, "app-1-2")] == [7, 9]
    assert [f["ts_ns"] for f in load_fills(conn, "app-1-1")] == [8]
    assert load_fills(conn, "app-9-9") == []
    conn.close()
