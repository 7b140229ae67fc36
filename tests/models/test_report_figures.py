"""The report's figures on inputs small enough to work out by hand: returns resampled at a stated
interval, Sharpe and Sortino on them, drawdowns, and the calibration table with its AUC and Brier
score."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest

from app.models.backtest import RETURNS_INTERVAL_S, Decision, drawdowns, resample, sharpe, sortino
from app.models.report import calibration

ANNUAL = math.sqrt(365 * 86_400 / 60)  # 60-second returns, annualised: x 724.98


def _alternating() -> list[Decimal]:
    """31 values: +2 %, -1 %, +2 %, ... (15 of each, 30 returns)."""
    values = [Decimal(100)]
    for i in range(30):
        values.append(values[-1] * (Decimal("1.02") if i % 2 == 0 else Decimal("0.99")))
    return values


def test_sharpe_and_sortino_by_hand() -> None:
    assert RETURNS_INTERVAL_S == 60
    values = _alternating()
    # mean 0.005; sample variance 30 * 0.015^2 / 29; downside deviation sqrt(15 * 0.01^2 / 30)
    assert sharpe(values, 60) == pytest.approx(0.005 / math.sqrt(0.00675 / 29) * ANNUAL)
    assert sharpe(values, 60) == pytest.approx(237.60, abs=0.01)
    assert sortino(values, 60) == pytest.approx(0.005 / math.sqrt(0.00005) * ANNUAL)
    assert sortino(values, 60) == pytest.approx(512.64, abs=0.01)
    assert sharpe(values[:30], 60) is None  # 29 returns: below MIN_RETURNS
    assert sortino([Decimal(100 + i) for i in range(40)], 60) is None  # no losing return


def test_drawdowns_and_resampling_by_hand() -> None:
    curve = [Decimal(v) for v in (100, 120, 90, 130, 65)]
    assert drawdowns(curve) == [0.0, 0.0, 0.25, 0.0, 0.5]
    points = [(0, Decimal(1)), (30 * 10**9, Decimal(2)), (150 * 10**9, Decimal(3))]
    # at 0 s, 60 s and 120 s: the last value at or before each
    assert resample(points, 60) == [Decimal(1), Decimal(2), Decimal(2)]


def test_calibration_by_hand() -> None:
    # One symbol, 1-second bars, horizon 2 s: each decision is resolved by the price 2 s later.
    prices = [100.0, 101.0, 102.0, 101.0, 101.0, 103.0]
    probs = [0.9, 0.8, 0.3, 0.6, 0.2, 0.5]
    decisions = [
        Decision(1000 * (i + 1), "BTCUSDT", p, price, "none")
        for i, (p, price) in enumerate(zip(probs, prices, strict=True))
    ]
    cal = calibration(decisions, 2000, 1000, bins=2)
    # t1: 100 -> 102 up (p .9); t2: 101 -> 101 flat; t3: 102 -> 101 down (p .3);
    # t4: 101 -> 103 up (p .6); t5, t6: nothing 2 s later
    assert (cal["resolved"], cal["flat"], cal["unresolved"]) == (3, 1, 2)
    assert cal["base_rate_up"] == pytest.approx(2 / 3, abs=1e-4)
    assert cal["auc"] == 1.0  # both ups above the down
    brier = ((0.9 - 1) ** 2 + (0.3 - 0) ** 2 + (0.6 - 1) ** 2) / 3  # 0.0867
    assert cal["brier"] == pytest.approx(brier, abs=1e-4)
    # two equal-count bins by predicted probability: [0.3, 0.6] then [0.9]
    (low, high) = cal["bins"]
    assert (low["n"], low["mean_p"], low["up_rate"]) == (2, 0.45, 0.5)
    assert (high["n"], high["mean_p"], high["up_rate"]) == (1, 0.9, 1.0)
