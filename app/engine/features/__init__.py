"""Streaming feature indicators for the decision loop: O(1) per update, float math, no numpy.

Bar indicators (:mod:`.averages`, :mod:`.momentum`) reproduce TA-Lib's functions; event features
(:mod:`.microstructure`, :mod:`.context`) run on book, trade and funding events. Features are
asked for by name (:mod:`.catalogue`) and gathered into a model's vector by :class:`FeatureSet`.
"""

from __future__ import annotations

from app.engine.features.averages import EMA, MACD, SMA, Bollinger
from app.engine.features.bar import Bar
from app.engine.features.bars import BarBuilder, bars_from_klines, kline_interval
from app.engine.features.catalogue import (
    KNOWN_FEATURES,
    Cadence,
    FeatureSpec,
    Indicator,
    Source,
    UnknownFeatureError,
    build,
    parse_feature,
)
from app.engine.features.context import FundingRate, TimeOfDay
from app.engine.features.featureset import FeatureSet
from app.engine.features.microstructure import (
    BookImbalance,
    OrderFlowImbalance,
    OrderFlowImbalanceWindow,
    RollingVWAP,
    SessionVWAP,
    Spread,
)
from app.engine.features.momentum import ATR, RSI, LogReturn

__all__ = [
    "ATR",
    "EMA",
    "KNOWN_FEATURES",
    "MACD",
    "RSI",
    "SMA",
    "Bar",
    "BarBuilder",
    "Bollinger",
    "BookImbalance",
    "Cadence",
    "FeatureSet",
    "FeatureSpec",
    "FundingRate",
    "Indicator",
    "LogReturn",
    "OrderFlowImbalance",
    "OrderFlowImbalanceWindow",
    "RollingVWAP",
    "SessionVWAP",
    "Source",
    "Spread",
    "TimeOfDay",
    "UnknownFeatureError",
    "bars_from_klines",
    "build",
    "kline_interval",
    "parse_feature",
]
