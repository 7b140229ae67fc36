"""An ``on_message`` subscriber for tests: keeps every message and lets a test await a condition."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from app.engine.events import Event

# Some conditions change without a message (a snapshot applied, a reconnect during a stall), so
# the wait also re-checks at this interval.
RECHECK_S = 0.02


class Subscriber:
    """Collects ``(ts_recv_ns, raw, event)``; :meth:`until` waits for a condition, bounded."""

    def __init__(self) -> None:
        self.messages: list[tuple[int, bytes, Event | None]] = []
        self._changed = asyncio.Event()

    def __call__(self, ts_recv_ns: int, raw: bytes, event: Event | None) -> None:
        self.messages.append((ts_recv_ns, raw, event))
        self._changed.set()

    def events(self) -> list[Event]:
        return [event for _, _, event in self.messages if event is not None]

    async def until(self, condition: Callable[[], bool], within_s: float = 10.0) -> None:
        """Return once ``condition()`` holds; TimeoutError after ``within_s``."""
        async with asyncio.timeout(within_s):
            while not condition():
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), RECHECK_S)
