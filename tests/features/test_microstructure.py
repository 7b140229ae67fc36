"""Event features on small hand-computed cases: OBI, OFI, spread, VWAP, funding, time of day."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from app.engine.features import (
    BookImbalance,
    FundingRate,
    OrderFlowImbalance,
    OrderFlowImbalanceWindow,
    RollingVWAP,
    SessionVWAP,
    Spread,
    TimeOfDay,
)

# Successive best quotes (bid_px, bid_qty, ask_px, ask_qty) and the OFI increment each one gives.
QUOTES = [
    ((100.0, 5.0, 101.0, 7.0), None),  # first quote: nothing to compare with
    ((100.0, 8.0, 101.0, 7.0), 3.0),  # bid size 5 -> 8 at the same price: +8 - 5
    ((100.5, 2.0, 101.0, 4.0), 5.0),  # bid up: +2; ask same price 7 -> 4: -4 + 7
    ((100.0, 6.0, 100.5, 3.0), -5.0),  # bid down: -2 (old size); ask down: -3 (new size)
    ((100.0, 6.0, 101.0, 9.0), 3.0),  # bid unchanged: +6 - 6; ask up: +3 (old size)
]


def test_ofi_increments() -> None:
    ofi = OrderFlowImbalance()
    for quote, expected in QUOTES:
        assert ofi.update(*quote) == expected


def test_ofi_window() -> None:
    w = OrderFlowImbalanceWindow(1)
    stamps = [0, 100, 600, 1100, 1150]
    got = [w.update(ts, *q) for ts, (q, _) in zip(stamps, QUOTES, strict=True)]
    # Window (ts - 1000, ts]: at 1100 the increment stamped 100 has left.
    assert got == [None, 3.0, 8.0, 0.0, 3.0]
    assert w.advance(1700) == -2.0  # only 1100 (-5) and 1150 (+3) remain
    assert w.advance(2150) == 0.0  # empty window
    assert w.value == 0.0


def test_book_imbalance() -> None:
    obi = BookImbalance(2)
    assert obi.update([3.0, 1.0, 100.0], [1.0, 1.0]) == pytest.approx((4 - 2) / 6)
    assert BookImbalance(5).update([3.0], [1.0, 2.0, 4.0]) == pytest.approx((3 - 7) / 10)
    assert obi.update([], []) is None
    assert BookImbalance(1).update([2.0], [0.0]) == 1.0
    with pytest.raises(ValueError, match="positive integer"):
        BookImbalance(0)


def test_spread() -> None:
    s = Spread()
    assert s.update(99.5, 100.5) == pytest.approx(100.0)
    assert s.spread == 1.0
    assert s.bps == pytest.approx(100.0)
    assert Spread().update(0.0, 0.0) is None


def test_rolling_vwap() -> None:
    v = RollingVWAP(60)
    assert v.update(0, 10.0, 1.0) == 10.0
    assert v.update(30_000, 20.0, 3.0) == pytest.approx((10 + 60) / 4)
    assert v.advance(59_999) == pytest.approx(17.5)
    assert v.advance(60_000) == 20.0  # the trade stamped 0 is out of (0, 60000]
    assert v.update(60_000, 30.0, 1.0) == pytest.approx((60 + 30) / 4)
    assert v.advance(120_000) is None  # no trade left in the window
    assert v.value is None


def test_session_vwap_resets_at_utc_midnight() -> None:
    day = 86_400_000
    v = SessionVWAP()
    assert v.update(day * 18_830 + 1, 10.0, 1.0) == 10.0
    assert v.update(day * 18_831 - 1, 20.0, 1.0) == 15.0
    assert v.update(day * 18_831, 30.0, 2.0) == 30.0  # new UTC day
    assert v.advance(day * 18_832) is None


def test_funding_rate_passes_through() -> None:
    f = FundingRate()
    assert f.value is None
    assert f.update(0.0001) == 0.0001
    assert f.update(-0.00025) == -0.00025
    assert f.value == -0.00025


@pytest.mark.parametrize(
    ("ts_ms", "sin", "cos"),
    [
        (0, 0.0, 1.0),
        (6 * 3_600_000, 1.0, 0.0),
        (12 * 3_600_000, 0.0, -1.0),
        (86_400_000 * 20_000 + 18 * 3_600_000, -1.0, 0.0),
        (-6 * 3_600_000, -1.0, 0.0),  # 18:00 on 1969-12-31
    ],
)
def test_time_of_day(ts_ms: int, sin: float, cos: float) -> None:
    tod = TimeOfDay()
    s, c = tod.update(ts_ms)
    assert s == pytest.approx(sin, abs=1e-12)
    assert c == pytest.approx(cos, abs=1e-12)
    assert (tod.sin, tod.cos) == (s, c)


def test_time_of_day_of_a_recorded_event() -> None:
    ts_ms = 1_626_992_741_017  # a bookTicker's E in the reference recording
    t = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
    seconds = t.hour * 3600 + t.minute * 60 + t.second + t.microsecond / 1e6
    s, c = TimeOfDay().update(ts_ms)
    angle = 2 * math.pi * seconds / 86_400
    assert s == pytest.approx(math.sin(angle), abs=1e-9)
    assert c == pytest.approx(math.cos(angle), abs=1e-9)
