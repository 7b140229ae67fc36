"""Every bar indicator equals TA-Lib's output at every step, warm-up boundary included.

Series (see conftest.py): a seeded geometric random walk of 5,000 bars; a seeded walk of 3,000
bars on a coarse tick grid (flat stretches: zero variance, RSI's 0/0 case); and the longest real
series in shared/reference, SUSHIUSDT's 305 recorded bookTicker quotes taken as bars
(close = mid, high = ask, low = bid). The reference holds no real kline series longer than 32 bars,
so length comes from the random walks.

Tolerance: 1e-9 relative. Outputs that cross zero (MACD, signal, histogram, log-returns) are
compared relative to ``max(|ta-lib value|, mean |ta-lib value| over the series)``, since a relative
error at a zero crossing measures nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from app.engine.features import ATR, EMA, MACD, RSI, SMA, Bollinger, LogReturn
from tests.features.series import OHLC, load_frames, random_walk

talib = pytest.importorskip("talib")
np = pytest.importorskip("numpy")

REL = 1e-9


def assert_matches(
    ours: Sequence[float | None], ref: object, *, crosses_zero: bool = False
) -> None:
    """``ours`` is None exactly where ``ref`` is NaN and within REL of it elsewhere."""
    ref_arr = np.asarray(ref, dtype=float)
    assert len(ours) == len(ref_arr)
    finite = ref_arr[~np.isnan(ref_arr)]
    assert finite.size > 0, "TA-Lib produced no value: series too short for the test"
    floor = float(np.mean(np.abs(finite))) if crosses_zero else 0.0
    for i, (o, r) in enumerate(zip(ours, ref_arr.tolist(), strict=True)):
        if np.isnan(r):
            assert o is None, f"step {i}: expected None (TA-Lib NaN), got {o}"
        else:
            assert o is not None, f"step {i}: expected {r}, got None"
            assert abs(o - r) <= REL * max(abs(r), floor), f"step {i}: {o} != {r}"


@pytest.fixture
def unstable_reset() -> Iterator[None]:
    yield
    talib.set_unstable_period("ALL", 0)


@pytest.mark.parametrize("period", [2, 12, 26, 50])
def test_ema(series: OHLC, period: int) -> None:
    ema = EMA(period)
    c = series[2]
    assert_matches([ema.update(x) for x in c], talib.EMA(np.array(c), period))


@pytest.mark.parametrize("period", [2, 20, 100])
def test_sma(series: OHLC, period: int) -> None:
    sma = SMA(period)
    c = series[2]
    assert_matches([sma.update(x) for x in c], talib.SMA(np.array(c), period))


@pytest.mark.parametrize("period", [2, 14, 30])
def test_rsi(series: OHLC, period: int) -> None:
    rsi = RSI(period)
    c = series[2]
    assert_matches([rsi.update(x) for x in c], talib.RSI(np.array(c), period))


@pytest.mark.parametrize("period", [1, 14, 30])
def test_atr(series: OHLC, period: int) -> None:
    atr = ATR(period)
    h, lo, c = series
    ours = [atr.update(*bar) for bar in zip(h, lo, c, strict=True)]
    assert_matches(ours, talib.ATR(np.array(h), np.array(lo), np.array(c), period))


@pytest.mark.parametrize("bars", [1, 5])
def test_logret(series: OHLC, bars: int) -> None:
    lr = LogReturn(bars)
    c = series[2]
    ref = np.log(talib.ROCR(np.array(c), bars))
    assert_matches([lr.update(x) for x in c], ref, crosses_zero=True)


@pytest.mark.parametrize(("period", "k"), [(20, 2.0), (10, 1.5), (50, 3.0)])
def test_bollinger(series: OHLC, period: int, k: float) -> None:
    bb = Bollinger(period, k)
    c = series[2]
    out = [bb.update(x) for x in c]
    upper, middle, lower = talib.BBANDS(np.array(c), period, k, k)
    assert_matches([o and o[0] for o in out], middle)
    assert_matches([o and o[1] for o in out], upper)
    assert_matches([o and o[2] for o in out], lower)


@pytest.mark.parametrize(("fast", "slow", "signal"), [(12, 26, 9), (5, 35, 5), (26, 12, 9)])
def test_macd(series: OHLC, fast: int, slow: int, signal: int) -> None:
    m = MACD(fast, slow, signal)
    c = series[2]
    out = [m.update(x) for x in c]
    ref = talib.MACD(np.array(c), fast, slow, signal)
    for k in range(3):
        assert_matches([o and o[k] for o in out], ref[k], crosses_zero=True)


@pytest.mark.usefixtures("unstable_reset")
@pytest.mark.parametrize("unstable", [1, 7, 40])
def test_unstable_period(series: OHLC, unstable: int) -> None:
    """TA-Lib's unstable period: later first values; for MACD a differently seeded signal."""
    h, lo, c = series
    arr = np.array(c)
    talib.set_unstable_period("EMA", unstable)
    talib.set_unstable_period("RSI", unstable)
    talib.set_unstable_period("ATR", unstable)
    ema, rsi, atr, macd = (
        EMA(12, unstable),
        RSI(14, unstable),
        ATR(14, unstable),
        MACD(12, 26, 9, unstable),
    )
    assert_matches([ema.update(x) for x in c], talib.EMA(arr, 12))
    assert_matches([rsi.update(x) for x in c], talib.RSI(arr, 14))
    bars = zip(h, lo, c, strict=True)
    assert_matches([atr.update(*b) for b in bars], talib.ATR(np.array(h), np.array(lo), arr, 14))
    out = [macd.update(x) for x in c]
    ref = talib.MACD(arr, 12, 26, 9)
    for k in range(3):
        assert_matches([o and o[k] for o in out], ref[k], crosses_zero=True)


def test_macd_unstable_changes_signal_seed(unstable_reset: None) -> None:
    """With an EMA unstable period TA-Lib seeds the signal later, so its values differ."""
    c = random_walk(400, seed=3, start=50.0, sigma=0.01)[2]
    a, b = MACD(12, 26, 9), MACD(12, 26, 9, unstable=10)
    out_a = [a.update(x) for x in c]
    out_b = [b.update(x) for x in c]
    first_b = next(i for i, o in enumerate(out_b) if o is not None)
    assert first_b == 25 + 8 + 2 * 10
    a_first, b_first = out_a[first_b], out_b[first_b]
    assert a_first is not None
    assert b_first is not None
    assert a_first[0] == b_first[0]  # the MACD line itself is unchanged
    assert a_first[1] != b_first[1]  # the signal is not


@pytest.mark.parametrize("symbol", ["SUSHIUSDT", "CTKUSDT", "AKROUSDT", "KEEPUSDT"])
def test_recorded_kline_updates(symbol: str) -> None:
    """The recorded kline_1m frames (real, but at most 32 per symbol) as a short bar series."""
    ks = [d["k"] for d in load_frames() if d["e"] == "kline" and d["s"] == symbol]
    h, lo, c = ([float(k[f]) for k in ks] for f in "hlc")
    arr = np.array(c)
    ema, rsi, atr, bb, macd = EMA(3), RSI(3), ATR(2), Bollinger(4, 2.0), MACD(2, 3, 2)
    assert_matches([ema.update(x) for x in c], talib.EMA(arr, 3))
    assert_matches([rsi.update(x) for x in c], talib.RSI(arr, 3))
    bars = zip(h, lo, c, strict=True)
    assert_matches([atr.update(*b) for b in bars], talib.ATR(np.array(h), np.array(lo), arr, 2))
    out = [bb.update(x) for x in c]
    assert_matches([o and o[1] for o in out], talib.BBANDS(arr, 4, 2.0, 2.0)[0])
    mout = [macd.update(x) for x in c]
    assert_matches([o and o[2] for o in mout], talib.MACD(arr, 2, 3, 2)[2], crosses_zero=True)
