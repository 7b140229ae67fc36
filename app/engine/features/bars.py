"""Time bars: trades in, OHLCV bars out, closed on interval boundaries.

Bar-based features (RSI, Bollinger, MACD, ATR, EMA, log-returns) run on the closes of these bars,
so a model declares its bar interval once. Boundaries are integer-millisecond arithmetic on the
trade (exchange) timestamps: a bar covers ``[open_time_ms, open_time_ms + interval_ms)``, so a trade
stamped exactly on a boundary opens the next bar, as Binance's klines do.

An interval without trades still produces a bar (open = high = low = close = previous close,
volume 0), as Binance's klines do: indicators then see wall-clock bars, not trade-count bars.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from app.engine.features.bar import Bar

# Binance USD-M kline interval names by length in seconds (there is no 1s kline on futures).
KLINE_INTERVALS: dict[int, str] = {
    60: "1m",
    180: "3m",
    300: "5m",
    900: "15m",
    1800: "30m",
    3600: "1h",
    7200: "2h",
    14400: "4h",
    21600: "6h",
    28800: "8h",
    43200: "12h",
    86400: "1d",
}

_NO_BARS: tuple[Bar, ...] = ()


def kline_interval(interval_s: int) -> str:
    """The Binance kline ``interval`` parameter for a bar length, for warming bars from REST.

    Raises ``ValueError`` when Binance has no kline of that length (e.g. 5 s bars cannot be warmed
    from klines; they warm from live trades only).
    """
    try:
        return KLINE_INTERVALS[interval_s]
    except KeyError:
        known = ", ".join(f"{s}s={n}" for s, n in KLINE_INTERVALS.items())
        raise ValueError(f"no Binance kline interval of {interval_s}s (known: {known})") from None


class BarBuilder:
    """Turns ``(ts_ms, price, qty)`` trades into OHLCV bars of ``interval_s`` seconds.

    :meth:`update` and :meth:`advance` return the bars that closed (usually none: an empty tuple,
    no allocation). A trade stamped before the current bar's start cannot be placed in a closed
    bar: it is dropped and counted in ``late_trades``.
    """

    __slots__ = (
        "_c",
        "_fresh",
        "_h",
        "_l",
        "_o",
        "_open_ms",
        "_v",
        "interval_ms",
        "late_trades",
    )

    def __init__(self, interval_s: int) -> None:
        if interval_s < 1:
            raise ValueError(f"bar interval must be at least 1 s, got {interval_s}")
        self.interval_ms = interval_s * 1000
        self._open_ms = -1  # -1: no bar yet (nothing seen)
        self._fresh = True  # the current bar has no trade yet
        self._o = self._h = self._l = self._c = self._v = 0.0
        self.late_trades = 0

    @property
    def open_time_ms(self) -> int | None:
        """Start of the bar being built, or None before the first trade or seed."""
        return None if self._open_ms < 0 else self._open_ms

    def seed(self, last: Bar) -> None:
        """Continue after an already-closed bar (e.g. the last kline used for warming)."""
        self._open_ms = last.open_time_ms + self.interval_ms
        self._fresh = True
        self._o = self._h = self._l = self._c = last.close
        self._v = 0.0

    def copy(self) -> BarBuilder:
        """An independent builder in the same state (``copy.deepcopy`` cannot copy the compiled
        class, see :mod:`app.native`)."""
        new = BarBuilder(self.interval_ms // 1000)
        new._open_ms, new._fresh, new.late_trades = self._open_ms, self._fresh, self.late_trades
        new._o, new._h, new._l, new._c, new._v = self._o, self._h, self._l, self._c, self._v
        return new

    def update(self, ts_ms: int, price: float, qty: float) -> tuple[Bar, ...]:
        """Add a trade; returns the bars it closed (those that ended at or before ``ts_ms``)."""
        start = ts_ms - ts_ms % self.interval_ms
        closed = _NO_BARS
        if self._open_ms < 0:
            self._open_ms = start
        elif start > self._open_ms:
            closed = self._roll_to(start)
        elif start < self._open_ms:
            self.late_trades += 1
            return _NO_BARS
        if self._fresh:
            self._fresh = False
            self._o = self._h = self._l = self._c = price
            self._v = qty
        else:
            if price > self._h:
                self._h = price
            elif price < self._l:
                self._l = price
            self._c = price
            self._v += qty
        return closed

    def advance(self, ts_ms: int) -> tuple[Bar, ...]:
        """Close the bars that ended at or before ``ts_ms`` (bars close on time, not on trades)."""
        if self._open_ms < 0:
            return _NO_BARS
        start = ts_ms - ts_ms % self.interval_ms
        if start <= self._open_ms:
            return _NO_BARS
        return self._roll_to(start)

    def _roll_to(self, start: int) -> tuple[Bar, ...]:
        # Emits the current bar, then a flat bar per empty interval up to ``start``.
        bars = []
        iv = self.interval_ms
        while self._open_ms < start:
            bars.append(Bar(self._open_ms, self._o, self._h, self._l, self._c, self._v))
            self._open_ms += iv
            self._o = self._h = self._l = self._c
            self._v = 0.0
            self._fresh = True
        return tuple(bars)


def bars_from_klines(
    rows: Iterable[Sequence[object]], interval_s: int, now_ms: int | None = None
) -> list[Bar]:
    """Closed bars from Binance ``/fapi/v1/klines`` rows ``[open_time, o, h, l, c, v, ...]``.

    Prices and volumes arrive as decimal strings and become floats (features are floats). Rows
    must be on ``interval_s`` boundaries, consecutive and ascending (``ValueError`` otherwise).
    With ``now_ms``, a row whose interval has not ended yet (Binance returns the open kline last)
    is left out.
    """
    iv = interval_s * 1000
    bars: list[Bar] = []
    for row in rows:
        if len(row) < 6:
            raise ValueError(f"kline row needs at least 6 fields, got {len(row)}: {row!r}")
        t = row[0]
        if not isinstance(t, int) or isinstance(t, bool):
            raise ValueError(f"kline open time must be an integer ms timestamp, got {t!r}")
        if t % iv:
            raise ValueError(f"kline open time {t} is not on a {interval_s}s boundary")
        if bars and t != bars[-1].open_time_ms + iv:
            raise ValueError(
                f"kline open time {t} does not follow {bars[-1].open_time_ms} by {interval_s}s"
            )
        if now_ms is not None and t + iv > now_ms:
            break
        bars.append(Bar(t, _num(row[1]), _num(row[2]), _num(row[3]), _num(row[4]), _num(row[5])))
    return bars


def _num(x: object) -> float:
    if isinstance(x, str | int | float) and not isinstance(x, bool):
        return float(x)
    raise ValueError(f"kline field must be a decimal string or number, got {x!r}")
