"""Per-stream and per-connection health of the market-data feed.

Counters are plain attributes bumped on the hot path (one dict lookup and a few stores per
message); :meth:`FeedHealth.snapshot` turns them into JSON for the control channel's ``health``
command. Receive lag is ``receive time - exchange event time`` in milliseconds: it includes the
network, the exchange's own batching and any clock offset between us and the exchange, so it is
judged by its trend (the EWMA) more than by its value.
"""

from __future__ import annotations

from app.clock import Clock

# Weight of the newest lag sample: about the last 20 messages dominate the average.
LAG_EWMA_ALPHA = 0.05


class StreamHealth:
    """Counters of one stream (``btcusdt@aggTrade`` ...)."""

    __slots__ = (
        "gaps",
        "lag_ms",
        "lag_ms_ewma",
        "malformed",
        "messages",
        "resyncs",
        "ts_last_event_ms",
        "ts_last_recv_ns",
    )

    def __init__(self) -> None:
        self.messages = 0
        self.malformed = 0
        self.gaps = 0
        self.resyncs = 0
        self.ts_last_event_ms = 0
        self.ts_last_recv_ns = 0
        self.lag_ms = 0.0
        self.lag_ms_ewma: float | None = None

    def on_message(self, ts_recv_ns: int, ts_event_ms: int) -> None:
        """Count one well-formed message."""
        self.messages += 1
        self.ts_last_recv_ns = ts_recv_ns
        self.ts_last_event_ms = ts_event_ms
        lag = ts_recv_ns / 1e6 - ts_event_ms
        self.lag_ms = lag
        ewma = self.lag_ms_ewma
        self.lag_ms_ewma = lag if ewma is None else ewma + LAG_EWMA_ALPHA * (lag - ewma)

    def snapshot(self, now_ns: int) -> dict[str, object]:
        """JSON-able counters; ``age_s`` is the time since the last message (None if none yet)."""
        return {
            "messages": self.messages,
            "malformed": self.malformed,
            "gaps": self.gaps,
            "resyncs": self.resyncs,
            "ts_last_event_ms": self.ts_last_event_ms,
            "ts_last_recv_ns": self.ts_last_recv_ns,
            "age_s": (now_ns - self.ts_last_recv_ns) / 1e9 if self.ts_last_recv_ns else None,
            "lag_ms": round(self.lag_ms, 3),
            "lag_ms_ewma": None if self.lag_ms_ewma is None else round(self.lag_ms_ewma, 3),
        }


class FeedHealth:
    """Health of one feed connection and its streams."""

    def __init__(self, clock: Clock, streams: tuple[str, ...] = ()) -> None:
        self._clock = clock
        self.streams: dict[str, StreamHealth] = {s: StreamHealth() for s in streams}
        self.connected = False
        self.connects = 0
        self.reconnects = 0
        self.disconnects_by_reason: dict[str, int] = {}
        self.last_disconnect_reason = ""
        self.ts_connected_ns = 0
        # Malformed frames whose stream could not be told (invalid JSON, no "stream").
        self.malformed_unattributed = 0

    def stream(self, name: str) -> StreamHealth:
        """The counters of ``name``, created on first use (a stream the config did not list)."""
        health = self.streams.get(name)
        if health is None:
            health = self.streams[name] = StreamHealth()
        return health

    def on_malformed(self, stream: str | None) -> None:
        """Count a frame that was skipped because it did not decode."""
        if stream is None:
            self.malformed_unattributed += 1
        else:
            self.stream(stream).malformed += 1

    def on_connect(self) -> None:
        """The feed (re)connected; every connect after the first counts as a reconnect."""
        if self.connects:
            self.reconnects += 1
        self.connects += 1
        self.connected = True
        self.ts_connected_ns = self._clock.time_ns()

    def on_disconnect(self, reason: str) -> None:
        """The feed lost its connection (``reason`` is a short word: stale, closed, error ...)."""
        self.connected = False
        self.last_disconnect_reason = reason
        self.disconnects_by_reason[reason] = self.disconnects_by_reason.get(reason, 0) + 1

    @property
    def malformed(self) -> int:
        """Every malformed frame, attributed to a stream or not."""
        return self.malformed_unattributed + sum(s.malformed for s in self.streams.values())

    def snapshot(self) -> dict[str, object]:
        """Everything, JSON-able, for the control channel's ``health`` command."""
        now_ns = self._clock.time_ns()
        return {
            "connected": self.connected,
            "connects": self.connects,
            "reconnects": self.reconnects,
            "disconnects": dict(self.disconnects_by_reason),
            "last_disconnect_reason": self.last_disconnect_reason,
            "ts_connected_ns": self.ts_connected_ns,
            "malformed": self.malformed,
            "malformed_unattributed": self.malformed_unattributed,
            "streams": {name: s.snapshot(now_ns) for name, s in sorted(self.streams.items())},
        }
