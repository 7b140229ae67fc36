"""BarBuilder boundaries, empty intervals and late trades; klines to bars."""

from __future__ import annotations

import pytest

from app.engine.features import ATR, Bar, BarBuilder, bars_from_klines, kline_interval
from tests.features.series import load_frames


def test_bars_close_on_boundaries() -> None:
    b = BarBuilder(5)
    assert b.update(1_000, 10.0, 1.0) == ()
    assert b.update(2_000, 12.0, 2.0) == ()
    assert b.update(4_999, 9.0, 1.0) == ()
    # A trade stamped exactly on the boundary belongs to the next bar and closes this one.
    assert b.update(5_000, 11.0, 1.0) == (Bar(0, 10.0, 12.0, 9.0, 9.0, 4.0),)
    assert b.open_time_ms == 5_000


def test_empty_intervals_give_flat_bars() -> None:
    b = BarBuilder(5)
    b.update(5_000, 11.0, 1.0)
    closed = b.update(17_000, 13.0, 2.0)
    assert closed == (
        Bar(5_000, 11.0, 11.0, 11.0, 11.0, 1.0),
        Bar(10_000, 11.0, 11.0, 11.0, 11.0, 0.0),
    )
    assert b.advance(19_999) == ()
    assert b.advance(20_000) == (Bar(15_000, 13.0, 13.0, 13.0, 13.0, 2.0),)
    assert b.advance(25_000) == (Bar(20_000, 13.0, 13.0, 13.0, 13.0, 0.0),)


def test_late_trade_is_dropped_and_counted() -> None:
    b = BarBuilder(1)
    b.update(2_500, 1.0, 1.0)
    b.advance(3_000)
    assert b.update(2_999, 5.0, 1.0) == ()
    assert b.late_trades == 1
    assert b.advance(4_000) == (Bar(3_000, 1.0, 1.0, 1.0, 1.0, 0.0),)


def test_advance_before_any_trade() -> None:
    assert BarBuilder(1).advance(10_000) == ()
    with pytest.raises(ValueError, match="at least 1 s"):
        BarBuilder(0)


def test_real_aggtrades_into_one_second_bars() -> None:
    """The recorded SUSHIUSDT aggTrades: bars agree with grouping the trades by second."""
    trades = [
        (d["T"], float(d["p"]), float(d["q"]))
        for d in load_frames()
        if d["e"] == "aggTrade" and d["s"] == "SUSHIUSDT"
    ]
    assert len(trades) == 40
    b = BarBuilder(1)
    bars: list[Bar] = []
    for t in trades:
        bars.extend(b.update(*t))
    bars.extend(b.advance(trades[-1][0] // 1000 * 1000 + 1000))
    seconds = {t // 1000 for t, _, _ in trades}
    assert [x.open_time_ms // 1000 for x in bars] == list(range(min(seconds), max(seconds) + 1))
    for bar in bars:
        inside = [(p, q) for t, p, q in trades if t // 1000 * 1000 == bar.open_time_ms]
        if inside:
            prices = [p for p, _ in inside]
            assert (bar.open, bar.high, bar.low, bar.close) == (
                prices[0], max(prices), min(prices), prices[-1]
            )  # fmt: skip
            assert bar.volume == pytest.approx(sum(q for _, q in inside))
        else:
            assert bar.volume == 0.0
            assert bar.open == bar.high == bar.low == bar.close
    assert sum(x.volume for x in bars) == pytest.approx(sum(q for _, _, q in trades))


def _recorded_kline_rows(symbol: str) -> list[list[object]]:
    """REST-shaped rows from the recorded kline_1m frames (last update of each minute)."""
    last: dict[int, dict[str, object]] = {}
    for d in load_frames():
        if d["e"] == "kline" and d["s"] == symbol:
            last[d["k"]["t"]] = d["k"]
    fields = ("t", "o", "h", "l", "c", "v", "T", "q", "n", "V", "Q", "B")
    return [[k[f] for f in fields] for k in last.values()]


def test_bars_from_recorded_klines() -> None:
    rows = _recorded_kline_rows("CTKUSDT")
    assert rows, "the recording has CTKUSDT klines"
    bars = bars_from_klines(rows, 60)
    assert [b.open_time_ms for b in bars] == [r[0] for r in rows]
    t, o, h, lo, c, v = (str(x) for x in rows[0][:6])
    assert bars[0] == Bar(int(t), float(o), float(h), float(lo), float(c), float(v))
    # The recording's last minute had not ended: with now_ms it is left out.
    last_open = rows[-1][0]
    assert isinstance(last_open, int)
    assert bars_from_klines(rows, 60, now_ms=last_open + 59_999) == bars[:-1]
    assert bars_from_klines(rows, 60, now_ms=last_open + 60_000) == bars


def test_bars_from_klines_rejects_bad_rows() -> None:
    good = [0, "1", "2", "0.5", "1.5", "10"]
    with pytest.raises(ValueError, match="boundary"):
        bars_from_klines([[1, *good[1:]]], 60)
    with pytest.raises(ValueError, match="does not follow"):
        bars_from_klines([good, [120_000, *good[1:]]], 60)
    with pytest.raises(ValueError, match="6 fields"):
        bars_from_klines([[0, "1"]], 60)
    with pytest.raises(ValueError, match="decimal string"):
        bars_from_klines([[0, "1", None, "1", "1", "1"]], 60)
    assert bars_from_klines([good, [60_000, *good[1:]]], 60)[1].close == 1.5


def test_kline_interval() -> None:
    assert kline_interval(60) == "1m"
    assert kline_interval(3600) == "1h"
    with pytest.raises(ValueError, match="no Binance kline interval of 5s"):
        kline_interval(5)


def test_copies_go_on_alone_in_the_same_state() -> None:
    # Trader.adopt_risk hands a shadow sandbox copies of the live 1-minute bars and ATR.
    builder, atr = BarBuilder(60), ATR(3)
    trades = [(i * 7_000, 100.0 + (i * 37 % 11) - 5, 1.0 + i % 3) for i in range(200)]
    for ts, price, qty in trades[:100]:
        for bar in builder.update(ts, price, qty):
            atr.update(bar.high, bar.low, bar.close)
    bars_copy, atr_copy = builder.copy(), atr.copy()
    assert atr_copy.value == atr.value is not None
    seen: list[list[float | None]] = [[], []]
    for (b, a), out in zip(((builder, atr), (bars_copy, atr_copy)), seen, strict=True):
        for ts, price, qty in trades[100:]:
            for bar in b.update(ts, price, qty):
                out.append(a.update(bar.high, bar.low, bar.close))
    assert seen[0] == seen[1] and len(seen[0]) > 5
    bars_copy.update(10**9, 1.0, 1.0)  # the copy moves on; the original does not follow
    assert builder.open_time_ms != bars_copy.open_time_ms
