"""Per-event order-book and trade features: imbalance, order-flow imbalance, spread, VWAP.

These run on every book or trade event, not on bars. Quantities and prices arrive as floats:
features are model inputs, never amounts that reach an order (those stay exact elsewhere).
Windowed features keep their window in exchange-timestamp milliseconds (``ts_ms``) and expire old
entries on each update or on :meth:`advance`, so they can be read between events.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

_MS_PER_DAY = 86_400_000


def _check_positive_int(name: str, v: int) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")


class BookImbalance:
    """Order-book imbalance over the top ``levels`` levels, in [-1, 1].

    ``(Σ bid qty - Σ ask qty) / (Σ bid qty + Σ ask qty)`` over the best ``levels`` levels of each
    side (fewer if the book has fewer). None when both sides are empty.
    """

    __slots__ = ("levels", "value")

    def __init__(self, levels: int) -> None:
        _check_positive_int("book-imbalance levels", levels)
        self.levels = levels
        self.value: float | None = None

    def update(self, bid_qtys: Sequence[float], ask_qtys: Sequence[float]) -> float | None:
        """Quantities best level first; returns the imbalance, or None for an empty book."""
        n = self.levels
        b = sum(bid_qtys) if len(bid_qtys) <= n else sum(bid_qtys[:n])
        a = sum(ask_qtys) if len(ask_qtys) <= n else sum(ask_qtys[:n])
        total = b + a
        v = (b - a) / total if total > 0.0 else None
        self.value = v
        return v


class OrderFlowImbalance:
    """Order-flow imbalance of the latest best-quote change (Cont, Kukanov & Stoikov, 2014).

    From successive best bid/ask (price, size) ``n-1 → n``::

        e_n = 1[Pb_n >= Pb_{n-1}]·qb_n - 1[Pb_n <= Pb_{n-1}]·qb_{n-1}
            - 1[Pa_n <= Pa_{n-1}]·qa_n + 1[Pa_n >= Pa_{n-1}]·qa_{n-1}

    Positive means buying pressure (bid grew or moved up, ask shrank or moved up). The value is
    ``e_n`` of the latest update, None for the first one; see :class:`OrderFlowImbalanceWindow`
    for the sum over a time window, which is what the paper regresses price changes on.
    """

    __slots__ = ("_ap", "_aq", "_bp", "_bq", "_primed", "value")

    def __init__(self) -> None:
        self.value: float | None = None
        self._primed = False
        self._bp = self._bq = self._ap = self._aq = 0.0

    def update(self, bid_px: float, bid_qty: float, ask_px: float, ask_qty: float) -> float | None:
        """Add a best-quote observation; returns ``e_n``, or None for the first one."""
        if self._primed:
            e = 0.0
            if bid_px >= self._bp:
                e += bid_qty
            if bid_px <= self._bp:
                e -= self._bq
            if ask_px <= self._ap:
                e -= ask_qty
            if ask_px >= self._ap:
                e += self._aq
            self.value = e
        else:
            self._primed = True
        self._bp = bid_px
        self._bq = bid_qty
        self._ap = ask_px
        self._aq = ask_qty
        return self.value


class OrderFlowImbalanceWindow:
    """Sum of OFI increments ``e_n`` (see :class:`OrderFlowImbalance`) over the last ``window_s``.

    The window is ``(ts - window_s, ts]`` of the latest update or :meth:`advance` time; 0.0 when
    no quote change fell in it, None before the second quote. The sum is recomputed exactly
    (``math.fsum``) whenever as many entries have been added as the window holds: amortised O(1).
    """

    __slots__ = ("_entries", "_ofi", "_since_resync", "_sum", "value", "window_ms")

    def __init__(self, window_s: int) -> None:
        _check_positive_int("OFI window (s)", window_s)
        self.window_ms = window_s * 1000
        self.value: float | None = None
        self._ofi = OrderFlowImbalance()
        self._entries: deque[tuple[int, float]] = deque()
        self._sum = 0.0
        self._since_resync = 0

    def update(
        self, ts_ms: int, bid_px: float, bid_qty: float, ask_px: float, ask_qty: float
    ) -> float | None:
        """Add a best-quote observation at ``ts_ms``; returns the windowed OFI, or None."""
        e = self._ofi.update(bid_px, bid_qty, ask_px, ask_qty)
        if e is None:
            return None
        self._entries.append((ts_ms, e))
        self._sum += e
        self._since_resync += 1
        return self.advance(ts_ms)

    def advance(self, ts_ms: int) -> float | None:
        """Expire entries older than the window at ``ts_ms``; returns the windowed OFI."""
        if self._ofi.value is None:
            return None
        entries = self._entries
        cutoff = ts_ms - self.window_ms
        while entries and entries[0][0] <= cutoff:
            self._sum -= entries.popleft()[1]
        if not entries:
            self._sum = 0.0
            self._since_resync = 0
        elif self._since_resync >= len(entries):
            self._sum = math.fsum(e for _, e in entries)
            self._since_resync = 0
        self.value = self._sum
        return self._sum


class Spread:
    """Best-quote spread: ``spread = ask - bid`` (price units) and ``bps = spread / mid · 10⁴``.

    ``bps`` is None when the mid price is not positive (no usable quote).
    """

    __slots__ = ("bps", "spread")

    def __init__(self) -> None:
        self.spread: float | None = None
        self.bps: float | None = None

    def update(self, bid_px: float, ask_px: float) -> float | None:
        """Add a best quote; returns the spread in basis points of the mid (or None)."""
        s = ask_px - bid_px
        mid = 0.5 * (ask_px + bid_px)
        self.spread = s
        self.bps = s / mid * 10_000.0 if mid > 0.0 else None
        return self.bps


class RollingVWAP:
    """Volume-weighted average trade price over a trailing time window of ``window_s`` seconds.

    ``Σ price·qty / Σ qty`` over the trades with ``ts`` in ``(now - window_s, now]``, ``now`` being
    the latest trade's or :meth:`advance`'s time; None when the window holds no volume. Sums are
    recomputed exactly whenever as many trades have been added as the window holds (amortised O(1)).
    """

    __slots__ = ("_entries", "_pq", "_q", "_since_resync", "value", "window_ms")

    def __init__(self, window_s: int) -> None:
        _check_positive_int("VWAP window (s)", window_s)
        self.window_ms = window_s * 1000
        self.value: float | None = None
        self._entries: deque[tuple[int, float, float]] = deque()
        self._pq = 0.0
        self._q = 0.0
        self._since_resync = 0

    def update(self, ts_ms: int, price: float, qty: float) -> float | None:
        """Add a trade; returns the VWAP of the window, or None."""
        pq = price * qty
        self._entries.append((ts_ms, pq, qty))
        self._pq += pq
        self._q += qty
        self._since_resync += 1
        return self.advance(ts_ms)

    def advance(self, ts_ms: int) -> float | None:
        """Expire trades that left the window at ``ts_ms``; returns the VWAP, or None."""
        entries = self._entries
        cutoff = ts_ms - self.window_ms
        while entries and entries[0][0] <= cutoff:
            _, pq, q = entries.popleft()
            self._pq -= pq
            self._q -= q
        if not entries:
            self._pq = self._q = 0.0
            self._since_resync = 0
        elif self._since_resync >= len(entries):
            self._pq = math.fsum(e[1] for e in entries)
            self._q = math.fsum(e[2] for e in entries)
            self._since_resync = 0
        v = self._pq / self._q if self._q > 0.0 else None
        self.value = v
        return v


class SessionVWAP:
    """VWAP of all trades since 00:00 UTC of the latest trade's day (resets at each UTC midnight).

    None before the day's first trade (after :meth:`advance` crosses midnight, too).
    """

    __slots__ = ("_day", "_pq", "_q", "value")

    def __init__(self) -> None:
        self.value: float | None = None
        self._day = -1
        self._pq = 0.0
        self._q = 0.0

    def update(self, ts_ms: int, price: float, qty: float) -> float | None:
        """Add a trade; returns the session VWAP, or None."""
        self.advance(ts_ms)
        self._pq += price * qty
        self._q += qty
        v = self._pq / self._q if self._q > 0.0 else None
        self.value = v
        return v

    def advance(self, ts_ms: int) -> float | None:
        """Start a new session if ``ts_ms`` is on a later UTC day; returns the VWAP."""
        day = ts_ms // _MS_PER_DAY
        if day != self._day:
            self._day = day
            self._pq = self._q = 0.0
            self.value = None
        return self.value
