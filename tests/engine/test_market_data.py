"""MarketData end to end over a real loopback WebSocket: the reference recording replayed through
the feed rebuilds every book; malformed frames are counted and skipped; a gap resyncs."""

from __future__ import annotations

import asyncio
import contextlib
import json

from app.binance.public import DepthSnapshot
from app.clock import SystemClock
from app.config import ExchangeConfig, FeedConfig
from app.engine.events import DepthUpdate, Level
from app.engine.market_data import MarketData
from app.errors import ExchangeApiError
from tests.engine.reference import recorded_frames, recorded_snapshots
from tests.engine.subscriber import Subscriber
from tests.engine.wsserver import ScriptedServer, scripted_server, send_then

SYMBOLS = ("sushiusdt", "akrousdt", "keepusdt", "ctkusdt")


class Snapshots:
    """A snapshot source serving a fixed sequence of snapshots per symbol (the last repeats)."""

    def __init__(self, by_symbol: dict[str, list[DepthSnapshot]], fail_first: int = 0) -> None:
        self._by_symbol = by_symbol
        self._fail = fail_first
        self.calls: list[str] = []

    async def depth(self, symbol: str, limit: int = 1000) -> DepthSnapshot:
        self.calls.append(symbol)
        await asyncio.sleep(0)  # a real fetch yields to the loop: events keep arriving
        if self._fail:
            self._fail -= 1
            raise ExchangeApiError("GET /fapi/v1/depth: HTTP 503", status=503)
        served = self._by_symbol[symbol]
        return served.pop(0) if len(served) > 1 else served[0]


def _market(
    server: ScriptedServer,
    sub: Subscriber,
    snapshots: Snapshots | None,
    depth_mode: str = "diff",
    symbols: tuple[str, ...] = SYMBOLS,
) -> MarketData:
    feed_cfg = FeedConfig(
        symbols=symbols,
        depth_mode=depth_mode,
        backoff_initial_s=0.01,
        backoff_max_s=0.05,
        open_timeout_s=2.0,
    )
    return MarketData(
        feed_cfg, ExchangeConfig(ws_url=server.url), SystemClock(), sub, rest=snapshots
    )


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_reference_recording_through_the_feed_syncs_every_book() -> None:
    frames = [rec.raw for rec in recorded_frames()]
    malformed = [
        b"{not json",
        b'{"stream":"sushiusdt@bookTicker","data":{"e":"bookTicker"}}',
        b'{"stream":"sushiusdt@aggTrade","data":{"e":"trade","E":1}}',
    ]
    # Malformed frames sprinkled through the stream must not disturb anything else.
    stream = frames[:100] + malformed[:1] + frames[100:900] + malformed[1:] + frames[900:]
    snapshots = Snapshots({s: [r.snapshot] for s, r in recorded_snapshots().items()})
    sub = Subscriber()
    with scripted_server(send_then(stream, "stall")) as server:
        market = _market(server, sub, snapshots)
        task = asyncio.create_task(market.run())
        await sub.until(lambda: len(sub.messages) == len(stream))
        health = market.health_snapshot()
        await _stop(task)

    # Every frame reached the subscriber, in order, as sent; malformed ones with event None.
    assert [raw for _, raw, _ in sub.messages] == stream
    assert [raw for _, raw, event in sub.messages if event is None] == malformed
    assert health["malformed"] == 3
    assert health["malformed_unattributed"] == 1
    streams = health["streams"]
    assert isinstance(streams, dict)
    assert streams["sushiusdt@bookTicker"]["malformed"] == 1
    assert streams["sushiusdt@aggTrade"]["malformed"] == 1
    assert streams["sushiusdt@bookTicker"]["messages"] == 305
    assert sum(s["messages"] for s in streams.values()) == len(frames) == market.messages
    assert all(s["gaps"] == 0 and s["resyncs"] == 0 for s in streams.values())
    assert health["connects"] == 1
    assert health["reconnects"] == 0

    # One snapshot per symbol sufficed: the feed buffered while it was fetched.
    assert sorted(snapshots.calls) == sorted(s.upper() for s in SYMBOLS)
    books = health["books"]
    assert isinstance(books, dict)
    for symbol, book in market.books.items():
        assert book.synced, symbol
        assert books[symbol]["synced"]
        assert books[symbol]["buffered"] == 0
    # The last bookTicker of each symbol that shares its u with a depth event matches the book.
    last_depth = {}
    for _, _, event in sub.messages:
        if type(event) is DepthUpdate:
            last_depth[event.symbol] = event.final_update_id
    for symbol, book in market.books.items():
        assert book.last_update_id == last_depth[symbol]
        view = market.book_view(symbol, 5)
        assert view is not None
        assert view[0] == last_depth[symbol]
        assert len(view[1]) == len(view[2]) == 5
    json.dumps(health)  # JSON-able for the control channel


def _depth_frame(symbol: str, first: int, final: int, prev: int, bid: Level) -> bytes:
    data = {
        "e": "depthUpdate",
        "E": 1_700_000_000_000 + final,
        "T": 1_700_000_000_000 + final,
        "s": symbol,
        "U": first,
        "u": final,
        "pu": prev,
        "b": [list(bid)],
        "a": [["200.0", "1"]],
    }
    return json.dumps({"stream": f"{symbol.lower()}@depth@100ms", "data": data}).encode()


def _snap(last_update_id: int) -> DepthSnapshot:
    return DepthSnapshot(
        last_update_id=last_update_id,
        ts_event_ms=0,
        ts_trans_ms=0,
        bids=[("100.0", "1")],
        asks=[("200.0", "1")],
    )


async def test_a_sequence_gap_resyncs_from_a_new_snapshot() -> None:
    # Events u=1..20 chained by pu, with u=11 missing: a gap the book must notice.
    frames = [
        _depth_frame("BTCUSDT", u, u, u - 1, (f"{100 + u}.0", "1")) for u in range(1, 21) if u != 11
    ]
    snapshots = Snapshots({"BTCUSDT": [_snap(1), _snap(13)]}, fail_first=1)
    sub = Subscriber()
    with scripted_server(send_then(frames, "stall")) as server:
        market = _market(server, sub, snapshots, symbols=("btcusdt",))
        task = asyncio.create_task(market.run())
        book = market.books["BTCUSDT"]
        await sub.until(lambda: len(sub.messages) == len(frames))
        # The resync completes in the snapshot task, after the last frame.
        await sub.until(lambda: book.synced and book.last_update_id == 20)
        health = market.health_snapshot()
        await _stop(task)
    stream = health["streams"]["btcusdt@depth@100ms"]  # type: ignore[index]
    assert stream["gaps"] == 1
    assert stream["resyncs"] >= 1
    assert len(snapshots.calls) >= 3  # one failed (HTTP 503, retried), one initial, one resync
    assert book.best_bid() == ("120.0", "1")


async def test_partial_depth_replaces_books_across_a_reconnect() -> None:
    def partial(u: int) -> bytes:
        data = {
            "e": "depthUpdate",
            "E": 1,
            "T": 1,
            "s": "BTCUSDT",
            "U": u,
            "u": u,
            "pu": u - 1,
            "b": [[f"{100 + u}.5", "2"], ["99.0", "1"]],
            "a": [[f"{200 + u}.5", "3"]],
        }
        return json.dumps({"stream": "btcusdt@depth20@100ms", "data": data}).encode()

    sub = Subscriber()
    with scripted_server(
        send_then([partial(1), partial(2)], "close"), send_then([partial(3)], "stall")
    ) as server:
        market = _market(server, sub, None, depth_mode="partial", symbols=("btcusdt",))
        task = asyncio.create_task(market.run())
        await sub.until(lambda: len(sub.messages) == 3)
        health = market.health_snapshot()
        await _stop(task)
    book = market.books["BTCUSDT"]
    assert book.synced
    assert book.bids(5) == [("103.5", "2"), ("99.0", "1")]
    assert book.asks(5) == [("203.5", "3")]
    assert health["reconnects"] == 1
    assert health["disconnects"] == {"closed": 1}


async def test_a_replay_without_a_feed_syncs_every_book_from_its_snapshot() -> None:
    frames = recorded_frames()
    snapshots = Snapshots({s: [r.snapshot] for s, r in recorded_snapshots().items()})
    feed_cfg = FeedConfig(symbols=SYMBOLS, depth_mode="diff")
    market = MarketData(feed_cfg, ExchangeConfig(), SystemClock(), rest=snapshots)
    async with market.replaying():
        for i, frame in enumerate(frames):
            market.handle_frame(frame.ts_recv_ns, frame.raw)
            if i % 64 == 0:
                await asyncio.sleep(0)  # where the snapshot fetches run
    assert sorted(snapshots.calls) == sorted(s.upper() for s in SYMBOLS)
    assert all(book.synced for book in market.books.values())
    streams = market.health_snapshot()["streams"]
    assert isinstance(streams, dict)
    assert all(s["gaps"] == 0 for s in streams.values())
    # Outside the block nothing fetches: a gap now leaves the book waiting, not a task behind.
    market.handle_frame(0, _depth_frame("SUSHIUSDT", 1, 2, 0, ("1.0", "1")))
    assert not market.books["SUSHIUSDT"].synced
    assert snapshots.calls.count("SUSHIUSDT") == 1
