"""Feature names: parsing, canonical form, errors, and what build() makes."""

from __future__ import annotations

import pytest

from app.engine.features import (
    ATR,
    EMA,
    MACD,
    RSI,
    Bollinger,
    BookImbalance,
    Cadence,
    FundingRate,
    LogReturn,
    OrderFlowImbalance,
    OrderFlowImbalanceWindow,
    RollingVWAP,
    SessionVWAP,
    Source,
    Spread,
    TimeOfDay,
    UnknownFeatureError,
    build,
    parse_feature,
)

B, E = Cadence.BAR, Cadence.EVENT


@pytest.mark.parametrize(
    ("name", "cls", "params", "output", "cadence", "source"),
    [
        ("logret_1", LogReturn, (1,), "value", B, Source.CLOSE),
        ("ema_12", EMA, (12,), "value", B, Source.CLOSE),
        ("rsi_14", RSI, (14,), "value", B, Source.CLOSE),
        ("bb_20_2.upper", Bollinger, (20, 2.0), "upper", B, Source.CLOSE),
        ("bb_20_2.5.pctb", Bollinger, (20, 2.5), "pctb", B, Source.CLOSE),
        ("macd_12_26_9.hist", MACD, (12, 26, 9), "hist", B, Source.CLOSE),
        ("atr_14", ATR, (14,), "value", B, Source.BAR),
        ("obi_5", BookImbalance, (5,), "value", E, Source.DEPTH),
        ("ofi", OrderFlowImbalance, (), "value", E, Source.QUOTE),
        ("ofi_10", OrderFlowImbalanceWindow, (10,), "value", E, Source.QUOTE),
        ("vwap_60", RollingVWAP, (60,), "value", E, Source.TRADE),
        ("vwap_day", SessionVWAP, (), "value", E, Source.TRADE),
        ("spread", Spread, (), "spread", E, Source.QUOTE),
        ("spread_bps", Spread, (), "bps", E, Source.QUOTE),
        ("funding_rate", FundingRate, (), "value", E, Source.FUNDING),
        ("tod_sin", TimeOfDay, (), "sin", E, Source.TIME),
        ("tod_cos", TimeOfDay, (), "cos", E, Source.TIME),
    ],
)
def test_known_names(
    name: str, cls: type, params: tuple[float, ...], output: str, cadence: Cadence, source: Source
) -> None:
    spec = parse_feature(name)
    assert spec.name == name
    assert spec.params == params
    assert spec.output == output
    assert spec.cadence is cadence
    assert spec.source is source
    ind = build(spec)
    assert isinstance(ind, cls)
    assert spec.read(ind) is None  # nothing fed yet


def test_canonical_form_and_shared_keys() -> None:
    assert parse_feature("bb_20_2.0.lower").name == "bb_20_2.lower"
    assert parse_feature("ema_012").name == "ema_12"
    assert parse_feature("bb_20_2.upper").key == parse_feature("bb_20_2.lower").key == "bb_20_2"
    assert parse_feature("spread").key == parse_feature("spread_bps").key
    assert parse_feature("tod_sin").key == parse_feature("tod_cos").key
    assert parse_feature("ofi").key != parse_feature("ofi_10").key
    assert isinstance(parse_feature("bb_20_2.upper").params[1], float)


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("foo_3", "unknown kind 'foo'"),
        ("ema", r"'ema' takes 1 parameter\(s\), got 0"),
        ("ofi_1_2", r"'ofi' takes 0 or 1 parameter\(s\), got 2"),
        ("ema_1", r"period must be in \[2, 100000\]"),
        ("rsi_100001", r"period must be in \[2, 100000\]"),
        ("ema_12.5", "period must be an integer"),
        ("bb_20_0.upper", "k must be greater than 0"),
        ("bb_20_2", r"needs an output .\{middle,upper,lower,pctb,width\}, got none"),
        ("bb_20_2.top", "got .top"),
        ("macd_12_26_9", "needs an output"),
        ("rsi_14.value", "has no output .value"),
        ("EMA_12", "not of the form"),
        ("", "not of the form"),
        ("ema_-3", "not of the form"),
        ("ema 12", "not of the form"),
    ],
)
def test_bad_names(name: str, why: str) -> None:
    with pytest.raises(UnknownFeatureError, match=why) as info:
        parse_feature(name)
    assert isinstance(info.value, ValueError)
    assert "known features: logret_<bars>, sma_<period>, ema_<period>" in str(info.value)
    assert "tod_cos" in str(info.value)
