"""Tests that kill the mutants of app/engine/book.py the other tests let survive: numbers without a
leading digit and negative keys, a book of another scale, the state of a fresh and of a cleared
book, event times, the status snapshot, a one-sided book against the ticker, the bounded price
cache and event buffer, and ``synced`` while a diff book waits."""

from __future__ import annotations

import json

import pytest

from app.binance.public import DepthSnapshot
from app.engine.book import PRICE_CACHE_MAX, DiffDepthSync, OrderBook, from_scaled, to_scaled
from app.engine.events import BookTicker, DepthUpdate, Level
from app.errors import SnapshotError


def _depth(
    u_first: int,
    u_final: int,
    pu: int,
    bids: list[Level] | None = None,
    asks: list[Level] | None = None,
    ts_ms: int = 0,
) -> DepthUpdate:
    return DepthUpdate(
        ts_event_ms=ts_ms,
        ts_trans_ms=ts_ms,
        symbol="BTCUSDT",
        first_update_id=u_first,
        final_update_id=u_final,
        prev_final_update_id=pu,
        bids=bids or [],
        asks=asks or [],
    )


def _snapshot(last_update_id: int, ts_ms: int = 1) -> DepthSnapshot:
    return DepthSnapshot(
        last_update_id=last_update_id,
        ts_event_ms=ts_ms,
        ts_trans_ms=ts_ms,
        bids=[("1", "5")],
        asks=[("9", "5")],
    )


def test_to_scaled_reads_a_number_without_a_leading_digit() -> None:
    assert to_scaled(".5") == 50_000_000
    assert to_scaled(".00000001") == 1
    assert to_scaled(".25", 2) == 25


def test_from_scaled_writes_negative_values_with_one_minus() -> None:
    assert from_scaled(-761_100_000) == "-7.611"
    assert from_scaled(-740_400_000_000) == "-7404"
    assert from_scaled(-1) == "-0.00000001"
    assert from_scaled(-25, 2) == "-0.25"


def test_a_book_of_another_scale_keys_its_prices_in_that_scale() -> None:
    book = OrderBook("BTCUSDT", scale=2)
    book.replace([("100.5", "1"), ("100.25", "2")], [("100.75", "3")], 1, 0)
    assert book.best_bid_scaled() == 10_050
    assert book.best_ask_scaled() == 10_075
    book.apply_diff(_depth(2, 2, 1, [("100.55", "4")], [("100.7", "5")]))
    assert book.best_bid_scaled() == 10_055
    assert book.best_ask_scaled() == 10_070
    assert book.bids(3) == [("100.55", "4"), ("100.5", "1"), ("100.25", "2")]


def test_a_fresh_book_and_a_cleared_one_report_no_update_and_no_sync() -> None:
    book = OrderBook("BTCUSDT")
    empty = {
        "symbol": "BTCUSDT",
        "synced": False,
        "last_update_id": -1,
        "ts_event_ms": 0,
        "bids": [],
        "asks": [],
    }
    assert json.dumps(book.snapshot(5)) == json.dumps(empty)  # False, not null or true
    book.apply_partial(_depth(1, 10, 0, [("100", "1")], [("101", "2")], ts_ms=1_700))
    assert book.synced is True
    book.clear()
    assert json.dumps(book.snapshot(5)) == json.dumps(empty)
    assert book.depth() == (0, 0)
    assert (book.best_bid(), book.best_ask()) == (None, None)


def test_snapshot_is_the_json_view_of_the_top_levels() -> None:
    book = OrderBook("ETHUSDT")
    book.apply_partial(
        _depth(
            5,
            9,
            4,
            [("2000.1", "1.5"), ("1999.9", "2"), ("2000", "3")],
            [("2000.3", "4"), ("2000.2", "0.5"), ("2000.4", "1")],
            ts_ms=1_627_000_000_123,
        )
    )
    assert book.snapshot(2) == {
        "symbol": "ETHUSDT",
        "synced": True,
        "last_update_id": 9,
        "ts_event_ms": 1_627_000_000_123,
        "bids": [["2000.1", "1.5"], ["2000", "3"]],
        "asks": [["2000.2", "0.5"], ["2000.3", "4"]],
    }
    assert json.loads(json.dumps(book.snapshot(1))) == {
        "symbol": "ETHUSDT",
        "synced": True,
        "last_update_id": 9,
        "ts_event_ms": 1_627_000_000_123,
        "bids": [["2000.1", "1.5"]],
        "asks": [["2000.2", "0.5"]],
    }


def test_every_update_records_its_event_time() -> None:
    book = OrderBook("BTCUSDT")
    book.replace([("100", "1")], [("101", "1")], 3, 1_111)
    assert (book.last_update_id, book.ts_event_ms) == (3, 1_111)
    book.apply_diff(_depth(4, 6, 3, [("100", "2")], ts_ms=2_222))
    assert (book.last_update_id, book.ts_event_ms) == (6, 2_222)
    book.apply_partial(_depth(7, 9, 6, [("99", "1")], [("102", "1")], ts_ms=3_333))
    assert (book.last_update_id, book.ts_event_ms) == (9, 3_333)


def test_a_book_with_one_side_empty_never_matches_the_ticker() -> None:
    ticker = BookTicker(1, 0, 0, "BTCUSDT", "100", "1", "101", "1")
    book = OrderBook("BTCUSDT")
    assert not book.matches_ticker(ticker)
    book.replace([("100", "1")], [], 1, 0)
    assert not book.matches_ticker(ticker)
    book.replace([], [("101", "1")], 1, 0)
    assert not book.matches_ticker(ticker)
    book.replace([("100", "1")], [("101", "1")], 1, 0)
    assert book.matches_ticker(ticker)


def test_the_price_cache_is_bounded() -> None:
    book = OrderBook("BTCUSDT")
    levels = [(str(i), "1") for i in range(1, PRICE_CACHE_MAX + 2)]
    book.replace(levels, [], 1, 0)
    assert book.depth() == (PRICE_CACHE_MAX + 1, 0)
    assert book.best_bid() == (str(PRICE_CACHE_MAX + 1), "1")
    caches = book._bids.prices  # the one unbounded thing a long-running book could grow
    assert len(caches) <= PRICE_CACHE_MAX
    # Prices parsed again after the clear keep their keys.
    book.apply_diff(_depth(2, 2, 1, [("1", "0"), (str(PRICE_CACHE_MAX + 1), "0")]))
    assert book.depth() == (PRICE_CACHE_MAX - 1, 0)
    assert book.best_bid() == (str(PRICE_CACHE_MAX), "1")


def test_the_event_buffer_keeps_the_newest_ten_thousand_by_default() -> None:
    sync = DiffDepthSync(OrderBook("BTCUSDT"))
    for u in range(1, 10_003):
        sync.on_event(_depth(u, u, u - 1, [("1", str(u))]))
    assert sync.buffered == 10_000
    # The two oldest went; the snapshot bridges the oldest one kept.
    assert sync.apply_snapshot(_snapshot(3))
    assert sync.book.last_update_id == 10_002
    assert sync.book.best_bid() == ("1", "10002")


def test_a_smaller_buffer_drops_the_oldest_events() -> None:
    sync = DiffDepthSync(OrderBook("BTCUSDT"), max_buffer=2)
    for u in range(1, 6):
        sync.on_event(_depth(u, u, u - 1))
    assert sync.buffered == 2
    # Events 1 to 3 were dropped: 4 does not bridge a snapshot at 2.
    with pytest.raises(SnapshotError, match="first U=4"):
        sync.apply_snapshot(_snapshot(2))
    assert sync.needs_snapshot
    assert sync.apply_snapshot(_snapshot(4))


def test_the_book_stays_unsynced_while_a_snapshot_waits_or_is_too_old() -> None:
    sync = DiffDepthSync(OrderBook("BTCUSDT"))
    sync.on_event(_depth(90, 95, 89))
    assert not sync.apply_snapshot(_snapshot(100, ts_ms=4_444))
    book = sync.book
    assert book.synced is False
    assert book.ts_event_ms == 4_444  # the snapshot's time until an event is applied
    assert book.last_update_id == 100
    # The next event is already past the snapshot: it cannot bridge, a new snapshot is needed.
    assert not sync.on_event(_depth(102, 110, 101))
    assert sync.needs_snapshot
    assert book.synced is False
    assert sync.buffered == 1
