"""Decoding Binance's own payloads into typed events, and rejecting everything else."""

from __future__ import annotations

import json

import msgspec
import pytest

from app.engine.decode import (
    decode_depth_snapshot,
    decode_event,
    decode_events,
    decode_frame,
    stream_of,
)
from app.engine.events import (
    AggTrade,
    BookTicker,
    DepthUpdate,
    Frame,
    Kline,
    KlineBar,
    MarkPriceUpdate,
)
from app.errors import MalformedFrameError, TransientError
from tests.engine.reference import STREAMS, recorded_frames


def _read(name: str) -> bytes:
    return (STREAMS / name).read_bytes()


def test_every_reference_payload_is_covered() -> None:
    # A payload added to the reference set must get a decision here.
    covered = {
        *USDM_RAW,
        *USDM_COMBINED,
        "usdm_markPrice_all_arr.REPAIRED.json",
        *SPOT_ACCEPTED,
        *SPOT_REJECTED,
    }
    assert {p.name for p in STREAMS.iterdir()} == covered


USDM_RAW = {
    "usdm_aggTrade.json": AggTrade(
        ts_event_ms=123456789,
        symbol="BTCUSDT",
        agg_trade_id=5933014,
        price="0.001",
        qty="100",
        first_trade_id=100,
        last_trade_id=105,
        ts_trade_ms=123456785,
        buyer_is_maker=True,
    ),
    "usdm_bookTicker.json": BookTicker(
        update_id=400900217,
        ts_event_ms=1568014460893,
        ts_trans_ms=1568014460891,
        symbol="BNBUSDT",
        bid_price="25.35190000",
        bid_qty="31.21000000",
        ask_price="25.36520000",
        ask_qty="40.66000000",
    ),
    "usdm_diff_depth.json": DepthUpdate(
        ts_event_ms=123456789,
        ts_trans_ms=123456788,
        symbol="BTCUSDT",
        first_update_id=157,
        final_update_id=160,
        prev_final_update_id=149,
        bids=[("0.0024", "10")],
        asks=[("0.0026", "100")],
    ),
    "usdm_partial_depth.json": DepthUpdate(
        ts_event_ms=1571889248277,
        ts_trans_ms=1571889248276,
        symbol="BTCUSDT",
        first_update_id=390497796,
        final_update_id=390497878,
        prev_final_update_id=390497794,
        bids=[
            ("7403.89", "0.002"),
            ("7403.90", "3.906"),
            ("7404.00", "1.428"),
            ("7404.85", "5.239"),
            ("7405.43", "2.562"),
        ],
        asks=[
            ("7405.96", "3.340"),
            ("7406.63", "4.525"),
            ("7407.08", "2.475"),
            ("7407.15", "4.800"),
            ("7407.20", "0.175"),
        ],
    ),
    "usdm_kline.json": Kline(
        ts_event_ms=1638747660000,
        symbol="BTCUSDT",
        bar=KlineBar(
            ts_open_ms=1638747660000,
            ts_close_ms=1638747719999,
            symbol="BTCUSDT",
            interval="1m",
            first_trade_id=100,
            last_trade_id=200,
            open="0.0010",
            close="0.0020",
            high="0.0025",
            low="0.0015",
            volume="1000",
            trades=100,
            closed=False,
            quote_volume="1.0000",
            taker_buy_volume="500",
            taker_buy_quote_volume="0.500",
        ),
    ),
    "usdm_markPriceUpdate.json": MarkPriceUpdate(
        ts_event_ms=1562305380000,
        symbol="BTCUSDT",
        mark_price="11794.15000000",
        index_price="11784.62659091",
        est_settle_price="11784.25641265",
        funding_rate="0.00038167",
        ts_next_funding_ms=1562306400000,
    ),
}

USDM_COMBINED = {
    "REAL_recorded_usdm_combined_aggTrade.json": Frame(
        "ctkusdt@aggTrade",
        AggTrade(
            ts_event_ms=1626992741575,
            symbol="CTKUSDT",
            agg_trade_id=16599292,
            price="1.01100",
            qty="10",
            first_trade_id=23961322,
            last_trade_id=23961322,
            ts_trade_ms=1626992741421,
            buyer_is_maker=False,
        ),
    ),
    "REAL_recorded_usdm_combined_bookTicker.json": Frame(
        "sushiusdt@bookTicker",
        BookTicker(
            update_id=600859600576,
            ts_event_ms=1626992741017,
            ts_trans_ms=1626992741012,
            symbol="SUSHIUSDT",
            bid_price="7.6110",
            bid_qty="2",
            ask_price="7.6120",
            ask_qty="297",
        ),
    ),
    "REAL_recorded_usdm_combined_depth_100ms.json": Frame(
        "sushiusdt@depth@100ms",
        DepthUpdate(
            ts_event_ms=1626992741037,
            ts_trans_ms=1626992741024,
            symbol="SUSHIUSDT",
            first_update_id=600859599090,
            final_update_id=600859600917,
            prev_final_update_id=600859598061,
            bids=[("7.5040", "813"), ("7.6090", "0"), ("7.6110", "2")],
            asks=[("7.6150", "1563"), ("7.6220", "3284")],
        ),
    ),
    "REAL_recorded_usdm_combined_kline_1m.json": Frame(
        "ctkusdt@kline_1m",
        Kline(
            ts_event_ms=1626992741424,
            symbol="CTKUSDT",
            bar=KlineBar(
                ts_open_ms=1626992700000,
                ts_close_ms=1626992759999,
                symbol="CTKUSDT",
                interval="1m",
                first_trade_id=23961275,
                last_trade_id=23961322,
                open="1.01000",
                close="1.01100",
                high="1.01100",
                low="1.01000",
                volume="3917",
                trades=48,
                closed=False,
                quote_volume="3957.89900",
                taker_buy_volume="1729",
                taker_buy_quote_volume="1748.01900",
            ),
        ),
    ),
}

# Spot payloads that happen to carry every USD-M field: they decode (the extra "M" is ignored).
SPOT_ACCEPTED = {
    "spot_aggTrade.json": AggTrade,
    "REAL_recorded_spot_combined_aggTrade.json": AggTrade,
    "REAL_recorded_spot_combined_kline_1m.json": Kline,
}
# Spot-only shapes: the engine is USD-M only, so these are malformed to it.
SPOT_REJECTED = {
    "spot_bookTicker.json": "missing required field `e`",  # spot bookTicker has no e/E/T
    "REAL_recorded_spot_combined_bookTicker.json": "missing required field `e`",
    "spot_diff_depth.json": "missing required field",  # no T, no pu: cannot be sequenced
    "REAL_recorded_spot_combined_depth_100ms.json": "missing required field",
    "spot_partial_depth.json": "missing required field `e`",  # {lastUpdateId, bids, asks}
    "spot_trade.json": "Invalid value 'trade'",  # USD-M has no raw trade stream here
    "spot_combined_serverShutdown.json": "Invalid value 'serverShutdown'",
}


def _decode_any(raw: bytes) -> object:
    return decode_frame(raw) if b'"stream"' in raw else decode_event(raw)


@pytest.mark.parametrize("name", sorted(USDM_RAW))
def test_usdm_raw_payload(name: str) -> None:
    assert decode_event(_read(name)) == USDM_RAW[name]


@pytest.mark.parametrize("name", sorted(USDM_COMBINED))
def test_usdm_recorded_combined_frame(name: str) -> None:
    assert decode_frame(_read(name)) == USDM_COMBINED[name]


def test_usdm_mark_price_array() -> None:
    events = decode_events(_read("usdm_markPrice_all_arr.REPAIRED.json"))
    assert events == [
        MarkPriceUpdate(
            ts_event_ms=1562305380000,
            symbol="BTCUSDT",
            mark_price="11185.87786614",
            index_price="11784.62659091",
            est_settle_price="11784.25641265",
            funding_rate="0.00030000",
            ts_next_funding_ms=1562306400000,
        )
    ]


@pytest.mark.parametrize("name", sorted(SPOT_ACCEPTED))
def test_spot_payloads_with_usdm_fields_decode(name: str) -> None:
    decoded = _decode_any(_read(name))
    event = decoded.data if isinstance(decoded, Frame) else decoded
    assert type(event) is SPOT_ACCEPTED[name]


@pytest.mark.parametrize("name", sorted(SPOT_REJECTED))
def test_spot_only_shapes_are_malformed(name: str) -> None:
    with pytest.raises(MalformedFrameError, match=SPOT_REJECTED[name]):
        _decode_any(_read(name))


def test_whole_recording_decodes_with_matching_stream_and_type() -> None:
    suffix_type = {
        "aggTrade": AggTrade,
        "bookTicker": BookTicker,
        "depth@100ms": DepthUpdate,
        "kline_1m": Kline,
    }
    frames = recorded_frames()
    assert len(frames) == 1535
    for rec in frames:
        frame = decode_frame(rec.raw)
        symbol, suffix = frame.stream.split("@", 1)
        assert type(frame.data) is suffix_type[suffix]
        assert frame.data.symbol == symbol.upper()
        # The typed event carries exactly the exchange's values.
        data = json.loads(rec.raw)["data"]
        assert frame.data.ts_event_ms == data["E"]
        assert msgspec.json.decode(msgspec.json.encode(frame.data)) == {
            k: v for k, v in data.items() if k != "k"
        } | ({"k": {k: v for k, v in data["k"].items() if k != "B"}} if "k" in data else {})


GOOD = _read("REAL_recorded_usdm_combined_aggTrade.json")


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"", "empty"),
        (b"not json", "invalid JSON"),
        (GOOD[:-5], "truncated"),
        (b"[]", "not an object"),
        (b'{"stream":"x@aggTrade"}', "no data"),
        (GOOD.replace(b'"p":"1.01100"', b'"p":1.011'), "price as a number"),
        (GOOD.replace(b'"a":16599292', b'"a":"16599292"'), "id as a string"),
        (GOOD.replace(b'"a":16599292,', b""), "missing id"),
        (GOOD.replace(b'"aggTrade","E"', b'"aggTrades","E"'), "unknown event"),
        (GOOD.replace(b'"m":false', b'"m":null'), "null flag"),
        (
            _read("REAL_recorded_usdm_combined_depth_100ms.json").replace(
                b'["7.5040","813"]', b'["7.5040"]'
            ),
            "level without quantity",
        ),
        ('{"stream": "\udcff"}'.encode("utf-8", "surrogatepass"), "invalid UTF-8"),
    ],
)
def test_malformed_frames_raise_one_error_type(raw: bytes, why: str) -> None:
    with pytest.raises(MalformedFrameError):
        decode_frame(raw)


def test_malformed_frame_error_is_transient() -> None:
    # The caller's policy for it is "count and skip", never "operator must act".
    assert issubclass(MalformedFrameError, TransientError)


def test_stream_of_attributes_bad_data_but_not_bad_json() -> None:
    bad_data = GOOD.replace(b'"p":"1.01100"', b'"p":1.011')
    assert stream_of(bad_data) == "ctkusdt@aggTrade"
    assert stream_of(b"{nope") is None


def test_depth_snapshot_body() -> None:
    snap = decode_depth_snapshot(
        b'{"lastUpdateId":1027024,"E":1589436922972,"T":1589436922959,'
        b'"bids":[["4.00000000","431.00000000"]],"asks":[["4.00000200","12.00000000"]]}'
    )
    assert snap.last_update_id == 1027024
    assert snap.bids == [("4.00000000", "431.00000000")]
    assert snap.asks == [("4.00000200", "12.00000000")]
    with pytest.raises(MalformedFrameError):
        decode_depth_snapshot(b'{"code":-1121,"msg":"Invalid symbol."}')


def test_events_are_immutable() -> None:
    event = decode_event(_read("usdm_aggTrade.json"))
    with pytest.raises(AttributeError):
        event.price = "1"  # type: ignore[misc,union-attr]
