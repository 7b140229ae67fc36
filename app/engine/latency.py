"""Per-message engine latency (frame received → decision made), kept cheaply for ``status``."""

from __future__ import annotations

from array import array

_SIZE = 4096


class LatencyRing:
    """The last 4,096 latencies in nanoseconds; percentiles computed only when asked."""

    __slots__ = ("_count", "_values")

    def __init__(self) -> None:
        self._values = array("q", bytes(8 * _SIZE))
        self._count = 0

    def add(self, ns: int) -> None:
        self._values[self._count % _SIZE] = ns
        self._count += 1

    def percentiles(self) -> dict[str, float]:
        n = min(self._count, _SIZE)
        if not n:
            return {}
        ordered = sorted(self._values[:n])

        def pick(q: float) -> float:
            return round(ordered[min(n - 1, int(q * n))] / 1000, 1)

        return {"p50": pick(0.5), "p99": pick(0.99), "max": round(ordered[-1] / 1000, 1), "n": n}
