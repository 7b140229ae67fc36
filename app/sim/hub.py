"""Fan-out of frames to stream connections, with per-connection queues and the stream faults.

The producer (market or replay) calls :meth:`Hub.publish` synchronously; each connection's own
task drains its queue, so one slow client never holds up the market or the other clients.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter, deque

from app.clock import Clock
from app.sim.faults import Faults
from app.sim.frames import Frame

# A client this far behind is cut off, as Binance does with slow consumers.
MAX_BACKLOG = 100_000


class Connection:
    """One WebSocket client: its streams, its queue of frames (or control replies) to send."""

    __slots__ = (
        "cid",
        "closed",
        "combined",
        "opened_ns",
        "overflowed",
        "queue",
        "sent",
        "streams",
        "wake",
    )

    def __init__(self, cid: int, combined: bool, opened_ns: int) -> None:
        self.cid = cid
        self.combined = combined
        self.opened_ns = opened_ns
        self.streams: set[str] = set()
        self.queue: deque[Frame | str] = deque()
        self.wake = asyncio.Event()
        self.closed = False
        self.overflowed = False
        self.sent = 0

    def push(self, item: Frame | str) -> None:
        queue = self.queue
        if len(queue) >= MAX_BACKLOG:
            self.overflowed = True
        else:
            queue.append(item)
        if not self.wake.is_set():
            self.wake.set()


class Hub:
    """Who listens to which stream, and the counters ``/_sim/stats`` reports."""

    def __init__(self, faults: Faults, clock: Clock) -> None:
        self.faults = faults
        self.clock = clock
        self._subs: dict[str, list[Connection]] = {}
        self._conns: dict[int, Connection] = {}
        self._ids = itertools.count(1)
        self.first_subscriber = asyncio.Event()
        self.frames_sent: Counter[str] = Counter()
        self.frames_published = 0
        self.withheld_by_stall = 0
        self.malformed_sent = 0
        self.opened = 0
        self.dropped_by_fault = 0
        faults.on_change(self.wake_all)

    def wants(self, stream: str) -> bool:
        """Whether anyone listens: producers skip rendering frames nobody would get."""
        return stream in self._subs

    def publish(self, frame: Frame) -> None:
        """Queue ``frame`` for every subscriber of its stream (unless a stall withholds it)."""
        subs = self._subs.get(frame.stream)
        if not subs:
            return
        if self.faults.stalled():
            self.withheld_by_stall += 1
            return
        self.frames_published += 1
        for conn in subs:
            conn.push(frame)

    def connect(self, combined: bool) -> Connection:
        conn = Connection(next(self._ids), combined, self.clock.monotonic_ns())
        self._conns[conn.cid] = conn
        self.opened += 1
        return conn

    def disconnect(self, conn: Connection) -> None:
        self.unsubscribe(conn, list(conn.streams))
        self._conns.pop(conn.cid, None)
        conn.closed = True

    def subscribe(self, conn: Connection, streams: list[str]) -> None:
        for stream in streams:
            if stream in conn.streams:
                continue
            conn.streams.add(stream)
            self._subs.setdefault(stream, []).append(conn)
        if conn.streams:
            self.first_subscriber.set()

    def unsubscribe(self, conn: Connection, streams: list[str]) -> None:
        for stream in streams:
            if stream not in conn.streams:
                continue
            conn.streams.discard(stream)
            subs = self._subs[stream]
            subs.remove(conn)
            if not subs:
                del self._subs[stream]

    def wake_all(self) -> None:
        """Make every connection re-read the fault set now."""
        for conn in self._conns.values():
            conn.wake.set()

    def max_backlog(self) -> int:
        return max((len(c.queue) for c in self._conns.values()), default=0)

    def stats(self) -> dict[str, object]:
        return {
            "connections": len(self._conns),
            "connections_opened": self.opened,
            "dropped_by_fault": self.dropped_by_fault,
            "frames_published": self.frames_published,
            "frames_sent": dict(self.frames_sent),
            "frames_sent_total": sum(self.frames_sent.values()),
            "withheld_by_stall": self.withheld_by_stall,
            "malformed_sent": self.malformed_sent,
            "subscriptions": {s: len(c) for s, c in self._subs.items()},
        }
