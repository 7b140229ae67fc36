"""Order books: exact keys, partial replacement, the documented diff-depth sync, and the replay
oracle of the reference recording (all four books synced, top of book == bookTicker)."""

from __future__ import annotations

import pytest

from app.binance.public import DepthSnapshot
from app.engine.book import DiffDepthSync, OrderBook, from_scaled, to_scaled
from app.engine.decode import decode_frame
from app.engine.events import BookTicker, DepthUpdate, Level
from app.errors import BookGapError, SnapshotError
from tests.engine.reference import recorded_frames, recorded_snapshots


@pytest.mark.parametrize(
    ("text", "scale", "value"),
    [
        ("7.6110", 8, 761_100_000),
        ("0.01737", 8, 1_737_000),
        ("7404", 8, 740_400_000_000),
        ("0", 8, 0),
        ("0.00000001", 8, 1),
        ("11794.15000000", 2, 1_179_415),  # trailing zeros beyond the scale are fine
        ("123456789012.12345678", 8, 12_345_678_901_212_345_678),
    ],
)
def test_to_scaled_is_exact(text: str, scale: int, value: int) -> None:
    assert to_scaled(text, scale) == value


def test_to_scaled_rejects_lost_digits_and_garbage() -> None:
    with pytest.raises(ValueError, match="more than 2 decimals"):
        to_scaled("1.005", 2)
    with pytest.raises(ValueError):
        to_scaled("1.2.3")
    with pytest.raises(ValueError):
        to_scaled("abc")


def test_from_scaled_round_trips() -> None:
    for text in ("7.611", "0.01737", "7404", "0", "0.00000001"):
        assert from_scaled(to_scaled(text)) == text


def _depth(
    u_first: int,
    u_final: int,
    pu: int,
    bids: list[Level] | None = None,
    asks: list[Level] | None = None,
    symbol: str = "BTCUSDT",
) -> DepthUpdate:
    return DepthUpdate(
        ts_event_ms=u_final,
        ts_trans_ms=u_final,
        symbol=symbol,
        first_update_id=u_first,
        final_update_id=u_final,
        prev_final_update_id=pu,
        bids=bids or [],
        asks=asks or [],
    )


def _snapshot(last_update_id: int, bids: list[Level], asks: list[Level]) -> DepthSnapshot:
    return DepthSnapshot(
        last_update_id=last_update_id, ts_event_ms=1, ts_trans_ms=1, bids=bids, asks=asks
    )


def test_partial_depth_replaces_both_sides_and_sorts_best_first() -> None:
    book = OrderBook("BTCUSDT")
    assert not book.synced
    assert book.best_bid() is None
    # Binance's doc example lists bids worst first: the book must not trust the order.
    book.apply_partial(
        _depth(1, 10, 0, [("100.0", "1"), ("101.5", "2")], [("103", "3"), ("102.25", "4")])
    )
    assert book.synced
    assert book.best_bid() == ("101.5", "2")
    assert book.best_ask() == ("102.25", "4")
    assert book.bids(5) == [("101.5", "2"), ("100.0", "1")]
    assert book.asks(1) == [("102.25", "4")]
    assert book.best_bid_scaled() == 10_150_000_000
    assert book.best_ask_scaled() == 10_225_000_000
    assert book.last_update_id == 10
    book.apply_partial(_depth(11, 12, 10, [("99", "5")], [("104", "6")]))
    assert book.bids(5) == [("99", "5")]
    assert book.asks(5) == [("104", "6")]
    assert book.depth() == (1, 1)


def test_diff_levels_set_replace_and_remove() -> None:
    book = OrderBook("BTCUSDT")
    book.replace([("10.0", "1"), ("9.5", "2")], [("10.5", "3")], 5, 0)
    book.apply_diff(
        _depth(6, 7, 5, [("10.0", "0.000"), ("9.75", "4"), ("9.5", "2.5")], [("10.25", "1")])
    )
    assert book.bids(10) == [("9.75", "4"), ("9.5", "2.5")]
    assert book.asks(10) == [("10.25", "1"), ("10.5", "3")]
    # Removing a level that is not in the book is normal (it was beyond the snapshot).
    book.apply_diff(_depth(8, 8, 7, [("1.0", "0")], [("10.25", "0")]))
    assert book.asks(10) == [("10.5", "3")]
    assert book.last_update_id == 8


def test_matches_ticker_compares_values_not_spelling() -> None:
    book = OrderBook("BTCUSDT")
    book.replace([("7.6110", "2")], [("7.6120", "297")], 1, 0)
    ticker = BookTicker(
        update_id=1,
        ts_event_ms=0,
        ts_trans_ms=0,
        symbol="BTCUSDT",
        bid_price="7.611",
        bid_qty="2.000",
        ask_price="7.61200",
        ask_qty="297",
    )
    assert book.matches_ticker(ticker)
    assert not book.matches_ticker(BookTicker(1, 0, 0, "BTCUSDT", "7.611", "3", "7.612", "297"))


def test_diff_sync_buffers_until_snapshot_then_bridges() -> None:
    sync = DiffDepthSync(OrderBook("BTCUSDT"))
    assert sync.needs_snapshot
    assert not sync.on_event(_depth(90, 95, 89, [("1", "1")]))  # older than the snapshot
    assert not sync.on_event(_depth(96, 105, 95, [("2", "1")]))  # bridges lastUpdateId=100
    assert not sync.on_event(_depth(106, 110, 105, [("3", "1")]))
    assert sync.buffered == 3
    assert sync.apply_snapshot(_snapshot(100, [("1", "5")], [("9", "5")]))
    book = sync.book
    assert book.synced
    assert book.last_update_id == 110
    assert book.bids(5) == [("3", "1"), ("2", "1"), ("1", "5")]
    assert sync.on_event(_depth(111, 111, 110, [("3", "0")]))
    assert book.bids(1) == [("2", "1")]


def test_diff_sync_snapshot_newer_than_buffer_waits_for_live_event() -> None:
    sync = DiffDepthSync(OrderBook("BTCUSDT"))
    sync.on_event(_depth(90, 95, 89))
    assert not sync.apply_snapshot(_snapshot(100, [("1", "5")], [("9", "5")]))
    assert not sync.needs_snapshot
    assert not sync.book.synced
    assert not sync.on_event(_depth(96, 99, 95))  # u < lastUpdateId: dropped
    assert sync.on_event(_depth(100, 104, 99, asks=[("8", "1")]))  # U <= 100 <= u
    assert sync.book.synced
    assert sync.book.best_ask() == ("8", "1")


def test_diff_sync_rejects_snapshot_older_than_the_stream() -> None:
    sync = DiffDepthSync(OrderBook("BTCUSDT"))
    sync.on_event(_depth(120, 130, 119))
    with pytest.raises(SnapshotError, match="older than the buffered events"):
        sync.apply_snapshot(_snapshot(100, [("1", "5")], [("9", "5")]))
    assert sync.needs_snapshot
    assert sync.buffered == 1  # kept for the next snapshot
    assert sync.apply_snapshot(_snapshot(125, [("1", "5")], [("9", "5")]))
    assert sync.book.last_update_id == 130


def test_diff_sync_gap_raises_resets_and_resyncs() -> None:
    sync = DiffDepthSync(OrderBook("BTCUSDT"))
    sync.on_event(_depth(96, 105, 95, [("2", "1")]))
    assert sync.apply_snapshot(_snapshot(100, [("1", "5")], [("9", "5")]))
    assert sync.on_event(_depth(106, 110, 105))
    # An event went missing: pu=115 does not continue u=110.
    with pytest.raises(BookGapError, match="pu=115 does not continue u=110"):
        sync.on_event(_depth(116, 120, 115, [("4", "1")]))
    assert sync.needs_snapshot
    assert not sync.book.synced
    assert sync.book.depth() == (0, 0)
    assert sync.buffered == 1  # the event that revealed the gap waits for the new snapshot
    assert not sync.on_event(_depth(121, 125, 120, [("5", "1")]))
    assert sync.apply_snapshot(_snapshot(118, [("4", "1")], [("9", "5")]))
    assert sync.book.synced
    assert sync.book.last_update_id == 125
    assert sync.book.bids(5) == [("5", "1"), ("4", "1")]


def test_diff_sync_gap_inside_buffer_keeps_later_events() -> None:
    sync = DiffDepthSync(OrderBook("BTCUSDT"))
    for event in (
        _depth(96, 105, 95),
        _depth(106, 110, 105),
        _depth(120, 125, 119, [("3", "1")]),  # pu=119 does not continue u=110: the gap
        _depth(126, 130, 125, [("4", "2")]),  # later events, continuous after the gap
        _depth(131, 135, 130, [("5", "3")], [("9", "1")]),
    ):
        sync.on_event(event)
    assert sync.buffered == 5
    with pytest.raises(BookGapError):
        sync.apply_snapshot(_snapshot(100, [], []))
    assert sync.needs_snapshot
    assert sync.buffered == 3  # the event that revealed the gap and the two after it
    assert sync.apply_snapshot(_snapshot(122, [("1", "1")], [("9", "5")]))
    assert sync.book.last_update_id == 135
    assert sync.book.bids(5) == [("5", "3"), ("4", "2"), ("3", "1"), ("1", "1")]
    assert sync.book.asks(5) == [("9", "1")]


def test_reference_recording_rebuilds_all_books_and_matches_book_ticker() -> None:
    """The replay oracle: Binance's own data, synced by the documented procedure."""
    snapshots = recorded_snapshots()
    assert set(snapshots) == {"SUSHIUSDT", "AKROUSDT", "KEEPUSDT", "CTKUSDT"}
    syncs = {symbol: DiffDepthSync(OrderBook(symbol)) for symbol in snapshots}
    pending = dict(snapshots)
    tops: dict[tuple[str, int], tuple[Level | None, Level | None]] = {}
    tickers: list[BookTicker] = []
    applied = 0
    for rec in recorded_frames():
        # Each snapshot is applied when it arrived, between the frames received around it.
        for symbol, snap in list(pending.items()):
            if rec.ts_recv_ns >= snap.ts_recv_ns:
                syncs[symbol].apply_snapshot(snap.snapshot)  # no SnapshotError: it bridges
                del pending[symbol]
        event = decode_frame(rec.raw).data
        if type(event) is DepthUpdate:
            sync = syncs[event.symbol]
            if sync.on_event(event):  # a BookGapError would fail the test
                applied += 1
                tops[(event.symbol, event.final_update_id)] = (
                    sync.book.best_bid(),
                    sync.book.best_ask(),
                )
        elif type(event) is BookTicker:
            tickers.append(event)
    assert not pending
    assert all(sync.book.synced for sync in syncs.values())
    assert applied > 700  # 764 depth events, a few predate their snapshot
    matched = 0
    for ticker in tickers:
        top = tops.get((ticker.symbol, ticker.update_id))
        if top is not None:
            assert top == ((ticker.bid_price, ticker.bid_qty), (ticker.ask_price, ticker.ask_qty))
            matched += 1
    assert matched >= 50
    assert {t.symbol for t in tickers if (t.symbol, t.update_id) in tops} == set(snapshots)
    # Sanity of the rebuilt books: not crossed, and deep (the snapshots had 1000 levels).
    for sync in syncs.values():
        bid, ask = sync.book.best_bid_scaled(), sync.book.best_ask_scaled()
        assert bid is not None
        assert ask is not None
        assert bid < ask
        assert min(sync.book.depth()) > 300
