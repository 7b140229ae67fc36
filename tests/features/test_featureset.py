"""A model's feature vector fed with recorded market data and warmed from klines."""

from __future__ import annotations

import math

import pytest

from app.engine.features import (
    ATR,
    EMA,
    MACD,
    RSI,
    Bollinger,
    FeatureSet,
    OrderFlowImbalance,
    RollingVWAP,
    Spread,
    UnknownFeatureError,
)
from tests.features.series import load_frames, random_walk

NAMES = [
    "logret_1",
    "ema_12",
    "rsi_14",
    "bb_20_2.pctb",
    "bb_20_2.width",
    "macd_12_26_9.hist",
    "atr_14",
    "obi_5",
    "ofi",
    "vwap_60",
    "spread_bps",
    "funding_rate",
    "tod_sin",
    "tod_cos",
]


def _klines(n: int, start_ms: int) -> list[list[object]]:
    h, lo, c = random_walk(n, seed=99, start=7.6, sigma=0.002)
    rows: list[list[object]] = []
    prev = c[0]
    for i in range(n):
        t = start_ms + i * 60_000
        rows.append([t, str(prev), str(h[i]), str(lo[i]), str(c[i]), "100", t + 59_999])
        prev = c[i]
    return rows


def test_duplicate_and_unknown_names() -> None:
    with pytest.raises(UnknownFeatureError, match="listed twice"):
        FeatureSet(["ema_12", "ema_012"], 60)
    with pytest.raises(UnknownFeatureError, match="unknown kind"):
        FeatureSet(["ema_12", "nope"], 60)


def test_warm_then_replay_recorded_events() -> None:
    """Warm bar features from 100 one-minute klines, then replay the recorded SUSHIUSDT events."""
    frames = [d for d in load_frames() if d.get("s") == "SUSHIUSDT"]
    first_ms = frames[0]["E"]
    minute = first_ms - first_ms % 60_000
    rows = _klines(101, minute - 100 * 60_000)  # the last row is the still-open minute
    fs = FeatureSet(NAMES, 60)
    assert fs.names == tuple(NAMES)
    assert {s.name for s in fs.bar_specs} == set(NAMES[:7])
    assert fs.warm(rows, now_ms=first_ms) == 100

    # The same bars fed to standalone indicators give the same values.
    closes = [float(r[4]) for r in rows[:100]]  # type: ignore[arg-type]
    ema, rsi, bb, macd, atr = EMA(12), RSI(14), Bollinger(20, 2.0), MACD(12, 26, 9), ATR(14)
    for r in rows[:100]:
        h, lo, c = (float(x) for x in r[2:5])  # type: ignore[arg-type]
        ema.update(c)
        rsi.update(c)
        bb.update(c)
        macd.update(c)
        atr.update(h, lo, c)
    v = dict(zip(NAMES, fs.values(first_ms), strict=True))
    assert v["ema_12"] == ema.value
    assert v["rsi_14"] == rsi.value
    assert v["bb_20_2.pctb"] == bb.pctb
    assert v["bb_20_2.width"] == bb.width
    assert v["macd_12_26_9.hist"] == macd.hist
    assert v["atr_14"] == atr.value
    assert v["logret_1"] == pytest.approx(math.log(closes[-1] / closes[-2]))
    assert v["spread_bps"] is None
    assert v["ofi"] is None
    assert v["funding_rate"] is None

    spread, ofi, vwap = Spread(), OrderFlowImbalance(), RollingVWAP(60)
    last_ms = first_ms
    for d in frames:
        last_ms = d["E"]
        fs.on_time(d["E"])
        if d["e"] == "bookTicker":
            q = (float(d["b"]), float(d["B"]), float(d["a"]), float(d["A"]))
            fs.on_quote(d["T"], *q)
            spread.update(q[0], q[2])
            ofi.update(*q)
        elif d["e"] == "aggTrade":
            fs.on_trade(d["T"], float(d["p"]), float(d["q"]))
            vwap.update(d["T"], float(d["p"]), float(d["q"]))
        elif d["e"] == "depthUpdate":
            # Diff depth is not a book; the quantities stand in for a rebuilt top 5 here.
            fs.on_depth([float(q) for _, q in d["b"]], [float(q) for _, q in d["a"]])
    fs.on_funding(0.0001)
    v = dict(zip(NAMES, fs.values(last_ms), strict=True))
    assert v["spread_bps"] == spread.bps
    assert v["ofi"] == ofi.value
    assert v["vwap_60"] == vwap.value
    assert v["funding_rate"] == 0.0001
    assert v["obi_5"] is not None
    assert -1.0 <= v["obi_5"] <= 1.0
    assert all(x is not None for x in v.values())
    # The recording spans a minute boundary: the live trades closed at least one more bar.
    assert fs.bars.open_time_ms is not None
    assert fs.bars.open_time_ms > minute
    assert v["ema_12"] != ema.value


def test_bars_close_on_time_without_trades() -> None:
    fs = FeatureSet(["ema_2", "rsi_2"], 1)
    fs.on_trade(1_000, 10.0, 1.0)
    fs.on_trade(1_500, 11.0, 1.0)
    assert fs.values(1_500) == [None, None]
    fs.on_time(4_000)  # closes 1 s (close 11) and two flat bars (11, 11)
    ema_2, rsi_2 = fs.values(4_000)
    assert ema_2 == 11.0
    assert rsi_2 == 0.0  # no change over the two flat bars: TA-Lib's 0/0 convention
