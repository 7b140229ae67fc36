"""Feed health counters and their JSON snapshot (ManualClock: no waiting)."""

from __future__ import annotations

import json

import pytest

from app.clock import ManualClock
from app.engine.health import FeedHealth


def test_counters_lag_and_snapshot() -> None:
    clock = ManualClock(now_ns=1_700_000_000_000_000_000)
    health = FeedHealth(clock, ("btcusdt@aggTrade",))
    health.on_connect()
    stream = health.stream("btcusdt@aggTrade")
    # Received 25 ms after the exchange's event time, then 35 ms.
    stream.on_message(clock.time_ns(), 1_700_000_000_000 - 25)
    assert stream.lag_ms == pytest.approx(25.0)
    assert stream.lag_ms_ewma == pytest.approx(25.0)
    clock.advance(1.0)
    stream.on_message(clock.time_ns(), 1_700_000_001_000 - 35)
    assert stream.lag_ms == pytest.approx(35.0)
    assert 25.0 < (stream.lag_ms_ewma or 0) < 35.0
    health.on_malformed("btcusdt@aggTrade")
    health.on_malformed(None)
    health.on_disconnect("stale")
    health.on_connect()
    health.on_disconnect("closed")
    clock.advance(2.5)
    snap = health.snapshot()
    assert json.loads(json.dumps(snap)) == snap
    assert snap["connected"] is False
    assert (snap["connects"], snap["reconnects"]) == (2, 1)
    assert snap["disconnects"] == {"stale": 1, "closed": 1}
    assert snap["malformed"] == 2
    per_stream = snap["streams"]["btcusdt@aggTrade"]  # type: ignore[index]
    assert per_stream["messages"] == 2
    assert per_stream["malformed"] == 1
    assert per_stream["age_s"] == pytest.approx(2.5)
    assert per_stream["ts_last_event_ms"] == 1_700_000_001_000 - 35


def test_unknown_stream_is_created_on_first_use() -> None:
    health = FeedHealth(ManualClock())
    health.stream("ethusdt@bookTicker").gaps += 1
    snap = health.snapshot()
    assert snap["streams"]["ethusdt@bookTicker"]["gaps"] == 1  # type: ignore[index]
    assert snap["streams"]["ethusdt@bookTicker"]["age_s"] is None  # type: ignore[index]
