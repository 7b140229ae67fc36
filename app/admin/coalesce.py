"""One fetch shared by every client that asks within a short interval.

Fifty browsers polling the dashboard should cost the engine one ``status`` call per interval, not
fifty: concurrent callers await the same in-flight fetch, and a result younger than ``ttl_s`` is
served as it is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from app.clock import Clock

T = TypeVar("T")


class Coalesced(Generic[T]):
    """A value fetched at most once per ``ttl_s``, with concurrent callers sharing the fetch."""

    def __init__(
        self,
        fetch: Callable[[], Awaitable[T]],
        ttl_s: float,
        clock: Clock,
        version: Callable[[], int] = lambda: 0,
    ) -> None:
        self._fetch = fetch
        self._ttl_ns = int(ttl_s * 1e9)
        self._clock = clock
        # A value fetched before ``version()`` moved (a command changed the engine) is not served.
        self._version = version
        self._value: T | None = None
        self._value_version = 0
        self._at_ns = 0
        self._inflight: asyncio.Future[T] | None = None

    async def get(self) -> T:
        now = self._clock.monotonic_ns()
        fresh = now - self._at_ns < self._ttl_ns and self._value_version == self._version()
        if self._value is not None and fresh:
            return self._value
        if self._inflight is None:
            self._inflight = asyncio.ensure_future(self._refresh())
        return await asyncio.shield(self._inflight)

    async def _refresh(self) -> T:
        try:
            version = self._version()
            value = await self._fetch()
            self._value, self._at_ns = value, self._clock.monotonic_ns()
            self._value_version = version
            return value
        finally:
            self._inflight = None
