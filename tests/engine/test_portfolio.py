"""Positions and PnL, exact: opening, adding, reducing, flipping, fees, funding, equity; the
migration on top of the trading schema; positions and the equity series surviving a reopen."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from app.engine.orders import Fill, Liquidity, Side
from app.engine.portfolio import (
    EquitySampler,
    Portfolio,
    append_equity,
    equity_series,
    load_positions,
    save_positions,
)
from app.store import schema
from tests.engine.risk_support import MIGRATIONS, open_db

D = Decimal


def _fill(side: Side, qty: str, price: str, fee: str = "0", ts: int = 0) -> Fill:
    return Fill("app-1-1", "BTCUSDT", side, D(price), D(qty), D(fee), Liquidity.TAKER, ts)


def test_open_add_reduce_flip_and_close_realise_exact_pnl() -> None:
    p = Portfolio(D(1000))
    assert p.apply_fill(_fill(Side.BUY, "0.010", "30000.10", "0.12")).realized == 0
    p.apply_fill(_fill(Side.BUY, "0.020", "30004.45", "0.24"))
    pos = p.position("BTCUSDT")
    assert (pos.qty, pos.cost) == (D("0.030"), D("900.09"))  # 300.001 + 600.089
    assert pos.entry_price == D("30003")
    # Sell a third at 30,103: realises 0.010 × (30103 − 30003) = 1.
    result = p.apply_fill(_fill(Side.SELL, "0.010", "30103", "0.1"))
    assert result.realized == D("1.00")
    assert result.closed is None
    # Sell 0.05: closes 0.02 at 29,903 (−2) and opens a 0.03 short there.
    result = p.apply_fill(_fill(Side.SELL, "0.050", "29903", "0.2"))
    assert result.realized == D("-2.00")
    assert result.closed is not None
    # The round trip: +1 − 2 realised, fees 0.12 + 0.24 + 0.1 + 0.2.
    assert result.closed.pnl == D("-1.66")
    assert (pos.qty, pos.entry_price) == (D("-0.030"), D("29903"))
    p.mark("BTCUSDT", D("29803"))
    snap = p.snapshot(1)
    assert snap.unrealized == D("3.000")  # short 0.03, 100 lower
    assert snap.fees == D("0.66")
    assert snap.equity == D(1000) + D(-1) - D("0.66") + D(3)
    assert snap.positions["BTCUSDT"].notional == D("894.090")
    result = p.apply_fill(_fill(Side.BUY, "0.030", "29803"))
    assert result.closed is not None and result.closed.pnl == D("3.000")
    assert not pos.qty and pos.cost == 0
    assert p.snapshot(2).equity == D(1000) + D(2) - D("0.66")


def test_funding_longs_pay_a_positive_rate_shorts_receive_it() -> None:
    p = Portfolio(D(1000))
    assert p.apply_funding("BTCUSDT", D("0.0001"), D(30000), 1) is None  # flat: nothing
    p.apply_fill(_fill(Side.BUY, "0.1", "30000"))
    paid = p.apply_funding("BTCUSDT", D("0.0001"), D(31000), 2)
    assert paid is not None and paid.amount == D("-0.31")
    p.apply_fill(_fill(Side.SELL, "0.2", "31000"))
    received = p.apply_funding("BTCUSDT", D("0.0001"), D(31000), 3)
    assert received is not None and received.amount == D("0.31")
    assert p.snapshot(4).funding == 0
    # The first trade's result includes the funding it paid.
    assert p.position("BTCUSDT").trade_pnl == D("0.31")


def test_equity_sampler_keeps_one_point_per_interval() -> None:
    p = Portfolio(D(100))
    sampler = EquitySampler(5.0)
    kept = [
        sampler.sample(p.snapshot(ts)) for ts in (0, 1_000_000_000, 4_999_999_999, 5_000_000_000)
    ]
    assert [k is not None for k in kept] == [True, False, False, True]


def test_migration_applies_on_the_trading_schema_and_state_survives_reopen(
    tmp_path: Path,
) -> None:
    path = tmp_path / "trading.db"
    conn = open_db(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(schema.TRADING_MIGRATIONS)
    p = Portfolio(D(1000))
    p.apply_fill(_fill(Side.BUY, "0.003", "30000.1", "0.036"))
    p.mark("BTCUSDT", D("30100.7"))
    p.position("BTCUSDT").stop_price = D("29900")
    save_positions(conn, p.positions(), 10)
    sampler = EquitySampler(1.0)
    points = [sampler.sample(p.snapshot(ts * 1_000_000_000)) for ts in range(3)]
    append_equity(conn, [pt for pt in points if pt is not None])
    conn.close()

    conn = open_db(path)
    restored = Portfolio(D(1000), load_positions(conn))
    assert restored.snapshot(5) == p.snapshot(5)
    assert restored.position("BTCUSDT").stop_price == D("29900")
    series = equity_series(conn)
    assert [pt.ts_ns for pt in series] == [0, 1_000_000_000, 2_000_000_000]
    assert series[-1].equity == D(1000) - D("0.036") + D("0.003") * D("100.6")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert len(MIGRATIONS) == conn.execute("PRAGMA user_version").fetchone()[0]
    conn.close()
