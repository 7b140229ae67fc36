"""The replay driver: plays a recording to the hub at ``speed`` times real time (0 = at once).

Replay starts when the first client subscribes to a stream, so a client that connects after the
process is up still gets the recording from its first frame. Delivery is lossless: when a client
falls far behind, the replay waits for it rather than outrun it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path

from app.clock import Clock
from app.sim.frames import Frame
from app.sim.hub import Hub
from app.sim.recordings import iter_recording

log = logging.getLogger(__name__)

_BACKLOG_PAUSE = 20_000
_YIELD_EVERY = 256
_MIN_SLEEP_NS = 1_000_000


@dataclass
class ReplayStatus:
    """Progress, for ``/_sim/stats``."""

    started: bool = False
    done: bool = False
    passes: int = 0
    frames: int = 0
    streams: set[str] = field(default_factory=set)

    def as_dict(self) -> dict[str, object]:
        return {
            "started": self.started,
            "done": self.done,
            "passes": self.passes,
            "frames": self.frames,
        }


async def run_replay(
    path: Path, speed: float, *, loop: bool, hub: Hub, clock: Clock, status: ReplayStatus
) -> None:
    """Play ``path`` (once, or forever with ``loop``)."""
    await hub.first_subscriber.wait()
    status.started = True
    while True:
        await _one_pass(path, speed, hub, clock, status)
        status.passes += 1
        if not loop:
            break
    status.done = True
    log.info("replay of %s done: %d frames", path, status.frames)


async def _one_pass(path: Path, speed: float, hub: Hub, clock: Clock, status: ReplayStatus) -> None:
    first_ts: int | None = None
    mono0 = clock.monotonic_ns()
    for n, rec in enumerate(iter_recording(path)):
        if first_ts is None:
            first_ts = rec.ts_ns
        if speed > 0:
            due = mono0 + int((rec.ts_ns - first_ts) / speed)
            wait_ns = due - clock.monotonic_ns()
            if wait_ns > _MIN_SLEEP_NS:
                await asyncio.sleep(wait_ns / 1e9)
        if n % _YIELD_EVERY == 0:
            await asyncio.sleep(0)
        while hub.max_backlog() > _BACKLOG_PAUSE:  # noqa: ASYNC110 - senders drain it; rare
            await asyncio.sleep(0.005)
        combined = rec.combined.decode() if rec.combined is not None else None
        hub.publish(Frame(rec.stream, rec.data.decode(), combined))
        status.frames += 1
