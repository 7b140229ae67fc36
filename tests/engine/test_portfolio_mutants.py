"""Tests that kill the mutants of app/engine/portfolio.py the other tests let survive: every field
of a position and of the account snapshot to the last digit, shorts as well as longs, partial
closes and flips, funding, the equity sampler's boundary, and every table read back from a real
SQLite file."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from app.engine.orders import Fill, Liquidity, Side
from app.engine.portfolio import (
    AccountSnapshot,
    EquityPoint,
    EquitySampler,
    FundingPayment,
    Portfolio,
    Position,
    PositionView,
    append_equity,
    equity_series,
    load_positions,
    save_funding,
    save_positions,
)
from tests.engine.risk_support import open_db

D = Decimal
BTC = "BTCUSDT"
ETH = "ETHUSDT"


def _fill(side: Side, qty: str, price: str, fee: str = "0", ts: int = 0, symbol: str = BTC) -> Fill:
    return Fill("app-1-1", symbol, side, D(price), D(qty), D(fee), Liquidity.TAKER, ts)


# -- Position -----------------------------------------------------------------------------------


def test_a_new_position_is_flat_with_zero_totals_and_no_prices() -> None:
    pos = Position(BTC)
    assert (pos.qty, pos.cost, pos.realized, pos.fees, pos.funding, pos.trade_pnl) == (0,) * 6
    assert (pos.mark, pos.stop_price, pos.take_profit) == (None, None, None)
    assert pos.entry_price is None
    assert pos.unrealized == 0
    assert pos.notional == 0


def test_entry_price_is_cost_over_qty_for_a_long_and_a_short() -> None:
    assert Position(BTC, qty=D("0.4"), cost=D("12000")).entry_price == D("30000")
    assert Position(BTC, qty=D("-0.4"), cost=D("-12000")).entry_price == D("30000")


def test_unrealized_is_qty_times_mark_minus_cost() -> None:
    long = Position(BTC, qty=D("0.4"), cost=D("12000"), mark=D("30100"))
    assert long.unrealized == D("40.0")  # 12040 - 12000
    short = Position(BTC, qty=D("-0.4"), cost=D("-12000"), mark=D("30100"))
    assert short.unrealized == D("-40.0")
    assert Position(BTC, qty=D("0.4"), cost=D("12000")).unrealized == 0  # no mark yet
    assert Position(BTC, mark=D("30100")).unrealized == 0  # flat


def test_notional_is_absolute_qty_times_mark_or_the_entry_price_without_one() -> None:
    assert Position(BTC, qty=D("-0.4"), cost=D("-12000"), mark=D("30100")).notional == D("12040.0")
    assert Position(BTC, qty=D("0.4"), cost=D("12000"), mark=D("29900")).notional == D("11960.0")
    # Without a mark the entry price stands in: |qty| x cost / qty == |cost|.
    assert Position(BTC, qty=D("-0.4"), cost=D("-12000")).notional == D("12000")
    assert Position(BTC, qty=D("0.4"), cost=D("12000")).notional == D("12000")
    assert Position(BTC, mark=D("30100")).notional == 0


# -- AccountSnapshot ----------------------------------------------------------------------------


def _view(symbol: str, qty: str, notional: str) -> PositionView:
    return PositionView(symbol, D(qty), None, None, D(notional), D(0))


def test_gross_notional_sums_every_position_and_qty_reads_one() -> None:
    snap = AccountSnapshot(
        1,
        D(1000),
        D(1000),
        D(0),
        D(0),
        D(0),
        D(0),
        {BTC: _view(BTC, "-0.4", "12000.5"), ETH: _view(ETH, "2", "4000.25")},
    )
    assert snap.gross_notional == D("16000.75")
    assert snap.qty(BTC) == D("-0.4")
    assert snap.qty(ETH) == D("2")
    assert snap.qty("SUSHIUSDT") == 0
    empty = AccountSnapshot(1, D(1), D(1), D(0), D(0), D(0), D(0), {})
    assert empty.gross_notional == 0
    assert isinstance(empty.gross_notional, Decimal)


# -- Portfolio ----------------------------------------------------------------------------------


def test_position_is_created_once_and_qty_reads_without_creating() -> None:
    p = Portfolio(D(1000), [Position(ETH, qty=D("2"), cost=D("4000"))])
    assert p.qty(ETH) == D("2")
    assert p.qty(BTC) == 0
    assert [x.symbol for x in p.positions()] == [ETH]  # qty() made no position
    pos = p.position(BTC)
    assert p.position(BTC) is pos
    assert [x.symbol for x in p.positions()] == [ETH, BTC]
    assert p.balance == D(1000)


def test_a_short_is_opened_added_to_and_partly_covered_exactly() -> None:
    p = Portfolio(D(1000))
    first = p.apply_fill(_fill(Side.SELL, "0.2", "30000", "0.5", ts=1))
    assert (first.realized, first.closed) == (0, None)
    pos = p.position(BTC)
    assert (pos.qty, pos.cost, pos.fees, pos.trade_pnl) == (
        D("-0.2"),
        D("-6000.0"),
        D("0.5"),
        D("-0.5"),
    )
    assert pos.mark == D("30000")  # the first fill marks a position without a mark
    p.apply_fill(_fill(Side.SELL, "0.2", "31000", "0.5", ts=2))
    assert (pos.qty, pos.cost, pos.entry_price) == (D("-0.4"), D("-12200.0"), D("30500"))
    assert pos.mark == D("30000")  # an existing mark is kept
    # Cover a quarter at 30,000: 0.1 x (30,500 - 30,000) = 50 realised.
    cover = p.apply_fill(_fill(Side.BUY, "0.1", "30000", "0.25", ts=3))
    assert cover.realized == D("50")
    assert cover.closed is None
    assert (pos.qty, pos.cost, pos.entry_price) == (D("-0.3"), D("-9150"), D("30500"))
    assert (pos.realized, pos.fees, pos.trade_pnl) == (D("50"), D("1.25"), D("48.75"))


def test_closing_a_short_exactly_ends_the_trade_and_clears_its_exits() -> None:
    p = Portfolio(D(1000))
    p.apply_fill(_fill(Side.SELL, "0.3", "30000", "0.3", ts=1))
    pos = p.position(BTC)
    pos.stop_price, pos.take_profit = D("30500"), D("29000")
    funding = p.apply_funding(BTC, D("0.0001"), D("30000"), 2)
    assert funding is not None and funding.amount == D("0.90000")  # a short receives
    result = p.apply_fill(_fill(Side.BUY, "0.3", "29000", "0.2", ts=7))
    assert result.realized == D("300")
    assert result.closed is not None
    assert result.closed.symbol == BTC
    assert result.closed.ts_ns == 7
    assert result.closed.pnl == D("300") + D("0.9") - D("0.5")
    assert (pos.qty, pos.cost, pos.trade_pnl) == (0, 0, 0)
    assert (pos.stop_price, pos.take_profit) == (None, None)
    assert (pos.realized, pos.fees, pos.funding) == (D("300"), D("0.5"), D("0.9"))


def test_a_flip_closes_the_old_side_then_opens_the_rest_at_the_fill_price() -> None:
    p = Portfolio(D(1000))
    p.apply_fill(_fill(Side.SELL, "0.1", "30000"))
    flip = p.apply_fill(_fill(Side.BUY, "0.3", "29500", "0.1", ts=5))
    assert flip.realized == D("50")
    assert flip.closed is not None and flip.closed.pnl == D("49.9")
    pos = p.position(BTC)
    assert (pos.qty, pos.cost, pos.entry_price) == (D("0.2"), D("5900.0"), D("29500"))
    assert pos.trade_pnl == 0  # the new trade starts clean; its fee went to the old one


def test_an_inexact_share_of_cost_leaves_no_residue_once_flat() -> None:
    p = Portfolio(D(1000))
    p.apply_fill(_fill(Side.BUY, "3", "1"))
    p.apply_fill(_fill(Side.BUY, "3", "2"))  # cost 9 over 6: a third does not divide exactly
    pos = p.position(BTC)
    first = p.apply_fill(_fill(Side.SELL, "1", "1.5"))
    assert first.realized == 0
    p.apply_fill(_fill(Side.SELL, "5", "1.5"))
    assert (pos.qty, pos.cost) == (0, 0)
    assert pos.entry_price is None


def test_mark_sets_the_mark_of_a_new_or_existing_position() -> None:
    p = Portfolio(D(1000))
    p.mark(ETH, D("2000"))
    assert p.position(ETH).mark == D("2000")
    p.apply_fill(_fill(Side.BUY, "1", "2010", symbol=ETH))
    p.mark(ETH, D("2020"))
    assert p.position(ETH).unrealized == D("10")


def test_funding_reports_the_payment_and_books_it_on_the_position() -> None:
    p = Portfolio(D(1000))
    assert p.apply_funding(ETH, D("0.001"), D("2000"), 1) is None  # no position at all
    p.apply_fill(_fill(Side.BUY, "2", "2000", symbol=ETH))
    paid = p.apply_funding(ETH, D("0.001"), D("2100"), 9)
    assert paid == FundingPayment(9, ETH, D("0.001"), D("2100"), D("2"), D("-4.200"))
    pos = p.position(ETH)
    assert (pos.funding, pos.trade_pnl) == (D("-4.200"), D("-4.200"))
    p.apply_fill(_fill(Side.SELL, "2", "2000", symbol=ETH))
    assert p.apply_funding(ETH, D("0.001"), D("2100"), 10) is None  # flat again


def test_snapshot_adds_up_every_position_and_lists_only_open_ones() -> None:
    p = Portfolio(D(1000))
    p.apply_fill(_fill(Side.BUY, "0.1", "30000", "1"))
    p.apply_funding(BTC, D("0.0001"), D("30000"), 1)  # a long pays 0.3
    p.apply_fill(_fill(Side.SELL, "0.1", "30100", "1"))  # +10 realised, now flat
    p.apply_fill(_fill(Side.SELL, "2", "2000", "0.5", symbol=ETH))
    p.apply_funding(ETH, D("0.0001"), D("2000"), 1)  # a short receives 0.4
    p.mark(ETH, D("1990"))  # a short gains 20
    snap = p.snapshot(42)
    assert snap.ts_ns == 42
    assert snap.balance == D(1000)
    assert snap.realized == D("10.0")
    assert snap.fees == D("2.5")
    assert snap.funding == D("0.1")  # -0.3 + 0.4
    assert snap.unrealized == D("20")
    assert snap.equity == D(1000) + D("10") - D("2.5") + D("0.1") + D("20")
    assert list(snap.positions) == [ETH]
    assert snap.positions[ETH] == PositionView(
        ETH, D("-2"), D("2000"), D("1990"), D("3980"), D("20")
    )


# -- EquitySampler ------------------------------------------------------------------------------


def test_equity_sampler_is_due_from_exactly_one_interval_after_a_point() -> None:
    sampler = EquitySampler(2.5)
    assert sampler.due(0)
    p = Portfolio(D(100))
    p.apply_fill(_fill(Side.BUY, "1", "10", "0.1"))
    p.mark(BTC, D("11"))
    point = sampler.sample(p.snapshot(1_000_000_000))
    assert point == EquityPoint(1_000_000_000, D("100.9"), D(0), D(1), D("0.1"), D(0))
    assert not sampler.due(3_499_999_999)
    assert sampler.sample(p.snapshot(3_499_999_999)) is None
    assert sampler.due(3_500_000_000)
    assert sampler.sample(p.snapshot(3_500_000_000)) is not None
    assert not sampler.due(3_500_000_001)


# -- persistence --------------------------------------------------------------------------------


def test_positions_are_upserted_and_read_back_field_by_field(tmp_path: Path) -> None:
    conn = open_db(tmp_path / "trading.db")
    long = Position(
        BTC,
        qty=D("0.003"),
        cost=D("90.0003"),
        realized=D("1.5"),
        fees=D("0.036"),
        funding=D("-0.01"),
        trade_pnl=D("-0.046"),
        mark=D("30100.7"),
        stop_price=D("29900"),
        take_profit=D("30500"),
    )
    flat = Position(ETH, realized=D("-3"), fees=D("0.2"))
    save_positions(conn, [long, flat], 10)
    assert load_positions(conn) == [long, flat]
    assert conn.execute("SELECT symbol, ts_ns FROM positions ORDER BY symbol").fetchall() == [
        (BTC, 10),
        (ETH, 10),
    ]
    # A second save updates every column in place.
    moved = Position(
        BTC,
        qty=D("-0.001"),
        cost=D("-30.2"),
        realized=D("2.5"),
        fees=D("0.05"),
        funding=D("0.02"),
        trade_pnl=D("0.1"),
        mark=D("30200"),
        stop_price=None,
        take_profit=D("29000"),
    )
    save_positions(conn, [moved], 11)
    assert load_positions(conn) == [moved, flat]
    row = conn.execute("SELECT * FROM positions WHERE symbol = ?", (BTC,)).fetchone()
    assert row == (
        BTC,
        "-0.001",
        "-30.2",
        "2.5",
        "0.05",
        "0.02",
        "0.1",
        "30200",
        None,
        "29000",
        11,
    )
    conn.close()


def test_a_position_without_prices_is_stored_with_nulls(tmp_path: Path) -> None:
    conn = open_db(tmp_path / "trading.db")
    save_positions(conn, [Position(BTC, qty=D("1"), cost=D("5"))], 3)
    row = conn.execute("SELECT mark, stop_price, take_profit FROM positions").fetchone()
    assert row == (None, None, None)
    (restored,) = load_positions(conn)
    assert (restored.mark, restored.stop_price, restored.take_profit) == (None, None, None)
    conn.close()


def test_funding_payments_are_stored_exactly(tmp_path: Path) -> None:
    conn = open_db(tmp_path / "trading.db")
    save_funding(conn, FundingPayment(5, ETH, D("0.0001"), D("2000.5"), D("-2"), D("0.40010")))
    save_funding(conn, FundingPayment(6, BTC, D("-0.0002"), D("30000"), D("0.1"), D("0.6")))
    rows = conn.execute(
        "SELECT ts_ns, symbol, rate, mark, position_qty, amount FROM funding_payments ORDER BY id"
    ).fetchall()
    assert rows == [
        (5, ETH, "0.0001", "2000.5", "-2", "0.40010"),
        (6, BTC, "-0.0002", "30000", "0.1", "0.6"),
    ]
    conn.close()


def _point(ts: int, equity: str) -> EquityPoint:
    return EquityPoint(ts, D(equity), D("1.5"), D("-0.25"), D("0.125"), D("0.0625"))


def test_equity_series_reads_from_a_time_on_oldest_first_up_to_a_limit(tmp_path: Path) -> None:
    conn = open_db(tmp_path / "trading.db")
    append_equity(conn, [_point(30, "1030"), _point(10, "1010"), _point(20, "1020")])
    assert conn.execute("SELECT * FROM equity WHERE ts_ns = 10").fetchone() == (
        10,
        "1010",
        "1.5",
        "-0.25",
        "0.125",
        "0.0625",
    )
    assert equity_series(conn) == [_point(10, "1010"), _point(20, "1020"), _point(30, "1030")]
    assert equity_series(conn, since_ns=20) == [_point(20, "1020"), _point(30, "1030")]
    assert equity_series(conn, since_ns=21) == [_point(30, "1030")]
    assert equity_series(conn, limit=2) == [_point(10, "1010"), _point(20, "1020")]
    # A point at an existing timestamp replaces it.
    append_equity(conn, [_point(20, "999")])
    assert [pt.equity for pt in equity_series(conn)] == [D("1010"), D("999"), D("1030")]
    conn.close()


@pytest.mark.parametrize("limit", [1, 3])
def test_equity_series_limit_counts_points(tmp_path: Path, limit: int) -> None:
    conn = open_db(tmp_path / "trading.db")
    append_equity(conn, [_point(ts, str(ts)) for ts in range(1, 6)])
    assert [pt.ts_ns for pt in equity_series(conn, 2, limit)] == list(range(2, 2 + limit))
    conn.close()


def test_equity_series_returns_at_most_ten_thousand_points_by_default(tmp_path: Path) -> None:
    conn = open_db(tmp_path / "trading.db")
    append_equity(conn, [_point(ts, "1000") for ts in range(1, 10_002)])
    series = equity_series(conn)
    assert len(series) == 10_000
    assert (series[0].ts_ns, series[-1].ts_ns) == (1, 10_000)  # the oldest first
    conn.close()
