"""Fixtures for the feature tests: the price series each TA-Lib comparison runs on."""

from __future__ import annotations

import pytest

from tests.features.series import OHLC, quote_series, random_walk

SERIES_IDS = ["gbm_5000", "gbm_tick_grid_3000", "real_sushi_bookticker_305"]


@pytest.fixture(scope="session", params=SERIES_IDS)
def series(request: pytest.FixtureRequest) -> OHLC:
    """Each test series in turn (see SERIES_IDS)."""
    name = request.param
    if name == "gbm_5000":
        return random_walk(5000, seed=20210722, start=100.0, sigma=0.002)
    if name == "gbm_tick_grid_3000":
        # A cheap coin on a coarse tick: long flat stretches, zero-variance windows, RSI 0/0.
        return random_walk(3000, seed=7, start=0.0173, sigma=0.0005, tick=0.00001)
    return quote_series("SUSHIUSDT")
