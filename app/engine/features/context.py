"""Context features that are not computed from prices: the funding rate and the time of day."""

from __future__ import annotations

import math

MS_PER_DAY = 86_400_000
_RAD_PER_MS = 2.0 * math.pi / MS_PER_DAY


class FundingRate:
    """The latest funding rate as published (``markPriceUpdate`` field ``r``), passed through.

    None until the first one arrives.
    """

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: float | None = None

    def update(self, rate: float) -> float:
        """Record the latest funding rate; returns it."""
        self.value = rate
        return rate


class TimeOfDay:
    """UTC time of day on the unit circle: ``sin``/``cos`` of ``2π · ms_since_midnight / 86.4e6``.

    Computed from an integer epoch-ms timestamp (the day fraction in integer arithmetic, so no
    precision is lost on large timestamps); midnight is ``(sin, cos) = (0, 1)``, 06:00 ``(1, 0)``.
    """

    __slots__ = ("cos", "sin")

    def __init__(self) -> None:
        self.sin: float | None = None
        self.cos: float | None = None

    def update(self, ts_ms: int) -> tuple[float, float]:
        """Set the time; returns ``(sin, cos)``."""
        angle = (ts_ms % MS_PER_DAY) * _RAD_PER_MS
        s = math.sin(angle)
        c = math.cos(angle)
        self.sin = s
        self.cos = c
        return s, c
