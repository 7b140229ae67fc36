"""Clocks, injected so that time-based logic (rotation, backoff, staleness) is testable.

Timestamps are integers: ``ts_*_ns`` nanoseconds or ``ts_*_ms`` milliseconds since the Unix epoch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol


class Clock(Protocol):
    """Wall-clock and monotonic time in integer nanoseconds."""

    def time_ns(self) -> int:
        """Wall-clock time since the Unix epoch, UTC."""
        ...

    def monotonic_ns(self) -> int:
        """Time that never goes backwards, for measuring intervals."""
        ...


class SystemClock:
    """The real clock."""

    def time_ns(self) -> int:
        return time.time_ns()

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()


@dataclass
class ManualClock:
    """A clock that moves only when told to: for tests that must not sleep."""

    now_ns: int = 1_700_000_000_000_000_000

    def time_ns(self) -> int:
        return self.now_ns

    def monotonic_ns(self) -> int:
        return self.now_ns

    def advance(self, seconds: float) -> None:
        self.now_ns += int(seconds * 1_000_000_000)
