"""The WebSocket feed against a real server on loopback: delivery, reconnects, staleness, pings."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import socket
from collections.abc import Callable

import pytest

from app.clock import SystemClock
from app.config import FeedConfig
from app.engine.feed import Feed, backoff_delay, stream_url
from tests.engine.wsserver import scripted_server, send_then

FAST = FeedConfig(
    symbols=("btcusdt",),
    stale_after_s=10.0,
    backoff_initial_s=0.01,
    backoff_max_s=0.05,
    ping_interval_s=5.0,
    ping_timeout_s=5.0,
    open_timeout_s=2.0,
)


def _frames(n: int, start: int = 0) -> list[bytes]:
    return [b'{"stream":"btcusdt@aggTrade","data":{"n":%d}}' % i for i in range(start, start + n)]


class Recorder:
    """Collects what the feed reports and lets a test await a condition on it."""

    def __init__(self) -> None:
        self.frames: list[tuple[int, bytes]] = []
        self.connects = 0
        self.disconnects: list[str] = []
        self._changed = asyncio.Event()

    def on_frame(self, ts_recv_ns: int, frame: bytes) -> None:
        self.frames.append((ts_recv_ns, frame))
        self._changed.set()

    def on_connect(self) -> None:
        self.connects += 1
        self._changed.set()

    def on_disconnect(self, reason: str) -> None:
        self.disconnects.append(reason)
        self._changed.set()

    async def until(self, condition: Callable[[], bool], within_s: float = 10.0) -> None:
        async with asyncio.timeout(within_s):
            while not condition():
                self._changed.clear()
                await self._changed.wait()


def _feed(url: str, cfg: FeedConfig, rec: Recorder) -> Feed:
    return Feed(
        stream_url(url, cfg.streams()),
        cfg,
        SystemClock(),
        rec.on_frame,
        on_connect=rec.on_connect,
        on_disconnect=rec.on_disconnect,
        rng=random.Random(1),
    )


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_stream_url_and_backoff() -> None:
    assert (
        stream_url("ws://127.0.0.1:9/", ("a@aggTrade", "b@bookTicker"))
        == "ws://127.0.0.1:9/stream?streams=a@aggTrade/b@bookTicker"
    )
    rng = random.Random(7)
    for attempt, nominal in [(0, 0.5), (1, 1.0), (3, 4.0), (10, 30.0), (1000, 30.0)]:
        delays = [backoff_delay(attempt, 0.5, 30.0, rng) for _ in range(200)]
        assert all(nominal / 2 <= d <= nominal for d in delays)
        assert len(set(delays)) > 100  # jittered


async def test_frames_arrive_in_order_as_bytes_with_receive_time() -> None:
    frames = _frames(50)
    rec = Recorder()
    with scripted_server(send_then(frames, "stall")) as server:
        task = asyncio.create_task(_feed(server.url, FAST, rec).run())
        await rec.until(lambda: len(rec.frames) == 50)
        await _stop(task)
    assert [f for _, f in rec.frames] == frames
    assert all(type(f) is bytes for _, f in rec.frames)
    stamps = [ts for ts, _ in rec.frames]
    assert stamps == sorted(stamps)
    assert server.paths == ["/stream?streams=" + "/".join(FAST.streams())]
    assert rec.connects == 1


async def test_reconnects_after_server_closes() -> None:
    rec = Recorder()
    with scripted_server(
        send_then(_frames(3), "close"), send_then(_frames(3, 3), "close"), send_then([], "stall")
    ) as server:
        task = asyncio.create_task(_feed(server.url, FAST, rec).run())
        await rec.until(lambda: rec.connects == 3 and len(rec.frames) == 6)
        await _stop(task)
    assert [f for _, f in rec.frames] == _frames(6)
    assert rec.disconnects[:2] == ["closed", "closed"]


async def test_stale_stream_is_closed_and_reconnected() -> None:
    cfg = dataclasses.replace(FAST, stale_after_s=0.3)
    rec = Recorder()
    with scripted_server(send_then(_frames(2), "stall")) as server:
        task = asyncio.create_task(_feed(server.url, cfg, rec).run())
        await rec.until(lambda: rec.connects >= 2 and len(rec.frames) >= 4)
        await _stop(task)
    assert rec.disconnects[0] == "stale"


async def test_late_pongs_lead_to_reconnect() -> None:
    # The server freezes (answers nothing, not even pings) while the stream would still be
    # considered fresh: only the keepalive can notice.
    cfg = dataclasses.replace(FAST, ping_interval_s=0.1, ping_timeout_s=0.3, stale_after_s=30.0)
    rec = Recorder()
    with scripted_server(
        send_then(_frames(1), "freeze", seconds=1.5), send_then(_frames(1, 1), "stall")
    ) as server:
        task = asyncio.create_task(_feed(server.url, cfg, rec).run())
        await rec.until(lambda: rec.connects >= 2 and len(rec.frames) >= 2)
        await _stop(task)
    assert rec.disconnects[0] == "ping_timeout"


async def test_refused_connection_is_retried_with_backoff() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on that port now.
    rec = Recorder()
    task = asyncio.create_task(_feed(f"ws://127.0.0.1:{port}", FAST, rec).run())
    await rec.until(lambda: len(rec.disconnects) >= 5)
    await _stop(task)
    assert set(rec.disconnects) == {"connect_failed"}
    assert rec.connects == 0


async def test_a_failing_callback_is_a_bug_and_ends_the_feed() -> None:
    def broken(ts_recv_ns: int, frame: bytes) -> None:
        raise ZeroDivisionError

    with scripted_server(send_then(_frames(1), "stall")) as server:
        feed = Feed(stream_url(server.url, FAST.streams()), FAST, SystemClock(), broken)
        with pytest.raises(ZeroDivisionError):
            await asyncio.wait_for(feed.run(), 10)
