"""The market-data component the engine runs: feed → decode → books → health → subscribers.

:class:`MarketData` owns the WebSocket feed, decodes each frame once, keeps one
:class:`~app.engine.book.OrderBook` per symbol (partial depth replaces it; diff depth syncs it
from REST snapshots, fetched in a separate task so the hot path never waits and no buffered event
is dropped), counts everything in :class:`~app.engine.health.FeedHealth`, and calls
``on_message(ts_recv_ns, raw_frame, event)`` for every frame, ``event`` None for a malformed one.
The recorder and the feature pipeline subscribe through that callback; it runs on the event loop
and must not block.

:meth:`MarketData.run` handles network trouble itself (reconnects, snapshot retries) and lets
everything else (bugs, a bad URL) propagate, to be restarted by the supervisor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from app.binance.public import DepthSnapshot, PublicRest
from app.clock import Clock
from app.config import ExchangeConfig, FeedConfig
from app.engine.book import DiffDepthSync, OrderBook
from app.engine.decode import decode_frame, stream_of
from app.engine.events import DepthUpdate, Event, Level
from app.engine.feed import Feed, backoff_delay, stream_url
from app.engine.health import FeedHealth, StreamHealth
from app.errors import BookGapError, ExchangeApiError, MalformedFrameError, SnapshotError

log = logging.getLogger(__name__)

OnMessage = Callable[[int, bytes, Event | None], None]
"""``on_message(ts_recv_ns, raw_frame, event)``; ``event`` is None for a malformed frame."""

# Binance's largest snapshot: the deeper the snapshot, the longer removals beyond it stay rare.
SNAPSHOT_LIMIT = 1000


class SnapshotSource(Protocol):
    """Where diff-depth snapshots come from (:class:`~app.binance.public.PublicRest` in
    production)."""

    async def depth(self, symbol: str, limit: int = ...) -> DepthSnapshot:
        """``GET /fapi/v1/depth`` for ``symbol``."""
        ...


def _ignore(ts_recv_ns: int, raw: bytes, event: Event | None) -> None:
    return None


class MarketData:
    """Feed, decoding, books and health for the configured symbols.

    ``books`` maps the exchange's upper-case symbol to its book; the book objects stay the same
    for the life of the component (a resync clears and refills them), so consumers may keep them.
    ``rest`` replaces the REST client that fetches diff-depth snapshots (tests); by default one
    is created in :meth:`run` when ``feed_cfg.depth_mode == "diff"``.
    """

    def __init__(
        self,
        feed_cfg: FeedConfig,
        exchange_cfg: ExchangeConfig,
        clock: Clock,
        on_message: OnMessage = _ignore,
        *,
        rest: SnapshotSource | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._feed_cfg = feed_cfg
        self._exchange_cfg = exchange_cfg
        self._clock = clock
        self._on_message = on_message
        self._rest = rest
        self._rng = rng or random.Random()
        self._diff = feed_cfg.depth_mode == "diff"
        self.health = FeedHealth(clock, feed_cfg.streams())
        self.books: dict[str, OrderBook] = {}
        self._syncs: dict[str, DiffDepthSync] = {}
        self._snapshots_applied: dict[str, int] = {}
        self._fetching: set[str] = set()
        self._pending: set[asyncio.Task[None]] = set()
        self._tasks: asyncio.TaskGroup | None = None
        self._own_rest: PublicRest | None = None
        for symbol in feed_cfg.symbols:
            self._book(symbol.upper())
        self.feed = Feed(
            stream_url(exchange_cfg.ws_base, feed_cfg.streams()),
            feed_cfg,
            clock,
            self.handle_frame,
            on_connect=self.health.on_connect,
            on_disconnect=self._on_disconnect,
            rng=self._rng,
        )

    def _book(self, symbol: str) -> OrderBook:
        book = self.books.get(symbol)
        if book is None:
            book = self.books[symbol] = OrderBook(symbol)
            if self._diff:
                self._syncs[symbol] = DiffDepthSync(book)
        return book

    async def run(self) -> None:
        """Run the feed (and the snapshot fetches) until cancelled; may be run again after."""
        self._invalidate_books()  # a previous run's books are stale by now
        if self._diff and self._rest is None:
            self._own_rest = PublicRest(self._exchange_cfg.rest_base, self._clock)
            self._rest = self._own_rest
        try:
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                tasks.create_task(self.feed.run(), name="market-data-feed")
        finally:
            self._tasks = None
            self._fetching.clear()
            await self.close()

    @contextlib.asynccontextmanager
    async def replaying(self) -> AsyncIterator[None]:
        """Accept frames pushed through :meth:`handle_frame` (a recording, no feed), with the
        diff-depth snapshot fetches running as :meth:`run` runs them.

        Without it a replayed diff-depth book never syncs: the fetch needs a running task group.
        Fetches still pending when the block ends are cancelled.
        """
        self._invalidate_books()
        async with asyncio.TaskGroup() as tasks:
            self._tasks = tasks
            try:
                yield
            finally:
                self._tasks = None
                for task in self._pending:
                    task.cancel()
                self._pending.clear()
                self._fetching.clear()

    async def close(self) -> None:
        """Release the REST connection pool :meth:`run` created (idempotent)."""
        own_rest, self._own_rest = self._own_rest, None
        if own_rest is not None:
            if self._rest is own_rest:
                self._rest = None
            await own_rest.aclose()

    # -- the hot path --------------------------------------------------------------------------

    def handle_frame(self, ts_recv_ns: int, raw: bytes) -> None:
        """Process one combined-stream frame (the feed's callback; public for replays)."""
        try:
            frame = decode_frame(raw)
        except MalformedFrameError as exc:
            stream = stream_of(raw)
            self.health.on_malformed(stream)
            log.debug("skipped malformed frame on %s: %s", stream, exc)
            self._on_message(ts_recv_ns, raw, None)
            return
        event = frame.data
        health = self.health.stream(frame.stream)
        health.on_message(ts_recv_ns, event.ts_event_ms)
        if type(event) is DepthUpdate:
            if self._diff:
                self._on_diff(event, health)
            else:
                book = self.books.get(event.symbol) or self._book(event.symbol)
                book.apply_partial(event)
        self._on_message(ts_recv_ns, raw, event)

    def _on_diff(self, event: DepthUpdate, health: StreamHealth) -> None:
        symbol = event.symbol
        sync = self._syncs.get(symbol)
        if sync is None:
            self._book(symbol)
            sync = self._syncs[symbol]
        try:
            sync.on_event(event)
        except BookGapError as exc:
            health.gaps += 1
            log.warning("order book gap, resyncing: %s", exc)
        if sync.needs_snapshot and symbol not in self._fetching:
            self._start_snapshot(symbol, health)

    # -- snapshots (off the hot path) ----------------------------------------------------------

    def _start_snapshot(self, symbol: str, health: StreamHealth) -> None:
        if self._tasks is None:
            return  # not running (a replay without a snapshot source): stay unsynced
        self._fetching.add(symbol)
        task = self._tasks.create_task(
            self._sync_from_snapshot(symbol, health), name=f"snapshot-{symbol}"
        )
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _sync_from_snapshot(self, symbol: str, health: StreamHealth) -> None:
        """Fetch snapshots until the book bridges one; events keep buffering meanwhile."""
        sync = self._syncs[symbol]
        cfg = self._feed_cfg
        attempt = 0
        try:
            while sync.needs_snapshot:
                if attempt:
                    await asyncio.sleep(
                        backoff_delay(
                            attempt - 1, cfg.backoff_initial_s, cfg.backoff_max_s, self._rng
                        )
                    )
                attempt += 1
                assert self._rest is not None  # set before the feed starts in diff mode
                try:
                    snapshot = await self._rest.depth(symbol, SNAPSHOT_LIMIT)
                except ExchangeApiError as exc:
                    log.warning("depth snapshot for %s failed: %s", symbol, exc)
                    continue
                applied = self._snapshots_applied.get(symbol, 0)
                self._snapshots_applied[symbol] = applied + 1
                if applied:
                    health.resyncs += 1
                try:
                    sync.apply_snapshot(snapshot)
                except SnapshotError as exc:
                    log.info("%s", exc)
                except BookGapError as exc:
                    health.gaps += 1
                    log.warning("order book gap in buffered events, resyncing: %s", exc)
        finally:
            self._fetching.discard(symbol)

    # -- connection events ---------------------------------------------------------------------

    def _on_disconnect(self, reason: str) -> None:
        self.health.on_disconnect(reason)
        log.warning("market-data feed disconnected (%s): %s", reason, self.feed.last_error)
        # Whatever happened while disconnected is lost: no book reflects the exchange any more.
        self._invalidate_books()

    def _invalidate_books(self) -> None:
        for sync in self._syncs.values():
            sync.reset()
        for book in self.books.values():
            book.synced = False

    # -- reads ---------------------------------------------------------------------------------

    @property
    def messages(self) -> int:
        """Well-formed messages received so far, all streams."""
        return sum(s.messages for s in self.health.streams.values())

    def book_view(self, symbol: str, levels: int) -> tuple[int, list[Level], list[Level]] | None:
        """``(last update id, top bids, top asks)`` of ``symbol``'s book, None while unsynced."""
        book = self.books.get(symbol)
        if book is None or not book.synced:
            return None
        return book.last_update_id, book.bids(levels), book.asks(levels)

    # -- status --------------------------------------------------------------------------------

    def health_snapshot(self) -> dict[str, object]:
        """Feed, stream and book health, JSON-able (the control channel's ``health`` command)."""
        snapshot = self.health.snapshot()
        snapshot["books"] = {
            symbol: {
                "synced": book.synced,
                "last_update_id": book.last_update_id,
                "ts_event_ms": book.ts_event_ms,
                "levels": list(book.depth()),
                "buffered": self._syncs[symbol].buffered if symbol in self._syncs else 0,
                "snapshots": self._snapshots_applied.get(symbol, 0),
            }
            for symbol, book in sorted(self.books.items())
        }
        return snapshot
