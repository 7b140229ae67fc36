"""BarSampler's book features: read from the rebuilt book while it is in sync, only as deep as the
features need, and left alone while it is not."""

from __future__ import annotations

import json

from app.engine.book import OrderBook
from app.engine.decode import decode_event
from app.engine.events import DepthUpdate
from app.engine.sampling import BarSampler


def _depth(bids: list[list[str]], asks: list[list[str]], ts_ms: int = 1_000) -> DepthUpdate:
    ev = decode_event(json.dumps({
        "e": "depthUpdate", "E": ts_ms, "T": ts_ms, "s": "BTCUSDT", "U": 1, "u": 2, "pu": 0,
        "b": bids, "a": asks,
    }))  # fmt: skip
    assert isinstance(ev, DepthUpdate)
    return ev


def _obi(sampler: BarSampler) -> float | None:
    return sampler.features.values(0)[0]


def test_book_features_read_only_the_levels_they_need() -> None:
    sampler = BarSampler(["obi_2", "obi_3"], 1)
    assert sampler.features.depth_levels == 3
    assert BarSampler(["rsi_14"], 1).features.depth_levels == 0
    book = OrderBook("BTCUSDT")
    ev = _depth([["10", "1"], ["9", "1"], ["8", "1"], ["7", "100"]], [["11", "1"], ["12", "3"]])
    book.apply_partial(ev)
    assert book.bid_qtys(3) == [1.0, 1.0, 1.0]
    assert book.ask_qtys(3) == [1.0, 3.0]
    sampler.on_event(ev, book)
    # The fourth bid level (100) is beyond every feature's depth and does not count.
    assert _obi(sampler) == (2.0 - 4.0) / 6.0
    assert sampler.features.values(0)[1] == (3.0 - 4.0) / 7.0


def test_an_unsynced_book_leaves_book_features_as_they_were() -> None:
    sampler = BarSampler(["obi_5"], 1)
    book = OrderBook("BTCUSDT")
    synced = _depth([["10", "3"]], [["11", "1"]])
    book.apply_partial(synced)
    sampler.on_event(synced, book)
    assert _obi(sampler) == 0.5
    book.synced = False  # waiting for a snapshot: the levels are stale
    sampler.on_event(_depth([["10", "1"]], [["11", "3"]], 2_000), book)
    assert _obi(sampler) == 0.5
    # Without a book (a dataset from partial-depth events) the event's levels are read.
    sampler.on_event(_depth([["10", "1"]], [["11", "3"]], 3_000))
    assert _obi(sampler) == -0.5
