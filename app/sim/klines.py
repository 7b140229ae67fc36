"""Klines (candlesticks): a deterministic history before the start, then bars from live trades.

History is generated per interval, backwards from the starting price, from its own seeded
generator, so an engine can warm indicators on any interval; from the start on, 1-minute bars are
built from the simulated trades and longer intervals are aggregated from them.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from app.sim.randomness import LOGN_MILLI, Z_MILLI, scaled_normal
from app.sim.symbols import SymbolSpec, fmt_fixed

MINUTE_MS = 60_000
INTERVALS_MS: dict[str, int] = {
    "1m": MINUTE_MS,
    "3m": 3 * MINUTE_MS,
    "5m": 5 * MINUTE_MS,
    "15m": 15 * MINUTE_MS,
    "30m": 30 * MINUTE_MS,
    "1h": 60 * MINUTE_MS,
    "2h": 120 * MINUTE_MS,
    "4h": 240 * MINUTE_MS,
    "6h": 360 * MINUTE_MS,
    "8h": 480 * MINUTE_MS,
    "12h": 720 * MINUTE_MS,
    "1d": 1440 * MINUTE_MS,
    "3d": 3 * 1440 * MINUTE_MS,
    "1w": 7 * 1440 * MINUTE_MS,
}
HISTORY_BARS = 1500  # Binance's largest kline page
_WEEK_OFFSET_MS = 4 * 1440 * MINUTE_MS  # the epoch was a Thursday; weekly bars open on Monday

# [open_ms, open, high, low, close, volume, quote_volume, trades, taker_buy_vol, taker_buy_quote]
# prices in ticks, volumes in steps, quote volumes in ticks*steps.
Bar = list[int]


def bucket(ts_ms: int, interval_ms: int) -> int:
    """Open time of the bar of ``interval_ms`` that contains ``ts_ms``."""
    offset = _WEEK_OFFSET_MS if interval_ms == INTERVALS_MS["1w"] else 0
    return (ts_ms - offset) // interval_ms * interval_ms + offset


@dataclass(frozen=True)
class KlineQuery:
    interval_ms: int
    start_ms: int | None
    end_ms: int | None
    limit: int


class KlineSeries:
    """One symbol's bars."""

    def __init__(
        self,
        spec: SymbolSpec,
        seed: int,
        start_ms: int,
        start_ticks: int,
        *,
        sigma_milli: int,
        step_ms: int,
        median_trade_steps: int,
    ) -> None:
        self.spec = spec
        self.seed = seed
        self.start_ms = start_ms
        self.start_ticks = start_ticks
        self.sigma_milli = sigma_milli
        self.step_ms = step_ms
        self.median_trade_steps = median_trade_steps
        self.minutes: dict[int, Bar] = {}
        self._history: dict[int, list[Bar]] = {}

    def record(self, ts_ms: int, price: int, qty: int, taker_buy: bool) -> None:
        """Add one trade (price in ticks, quantity in steps) to its 1-minute bar."""
        start = ts_ms - ts_ms % MINUTE_MS
        bar = self.minutes.get(start)
        quote = price * qty
        if bar is None:
            self.minutes[start] = [
                start,
                price,
                price,
                price,
                price,
                qty,
                quote,
                1,
                qty if taker_buy else 0,
                quote if taker_buy else 0,
            ]
            return
        if price > bar[2]:
            bar[2] = price
        elif price < bar[3]:
            bar[3] = price
        bar[4] = price
        bar[5] += qty
        bar[6] += quote
        bar[7] += 1
        if taker_buy:
            bar[8] += qty
            bar[9] += quote

    def history(self, interval_ms: int) -> list[Bar]:
        """The generated bars before the start's bar, oldest first (cached per interval)."""
        bars = self._history.get(interval_ms)
        if bars is not None:
            return bars
        rng = random.Random(f"klines:{self.seed}:{self.spec.symbol}:{interval_ms}")
        sigma = self.sigma_milli * math.isqrt(max(1, interval_ms // self.step_ms))
        # Roughly three trades a second of median size.
        vol_median = max(1, self.median_trade_steps * 3 * interval_ms // 1000)
        first = bucket(self.start_ms, interval_ms)
        close = self.start_ticks
        out: list[Bar] = []
        floor = max(1, self.start_ticks // 20)
        for k in range(1, HISTORY_BARS + 1):
            opened = max(floor, close - scaled_normal(rng.choice(Z_MILLI), sigma))
            wick_up = abs(scaled_normal(rng.choice(Z_MILLI), sigma)) // 2
            wick_down = abs(scaled_normal(rng.choice(Z_MILLI), sigma)) // 2
            high = max(opened, close) + wick_up
            low = max(1, min(opened, close) - wick_down)
            volume = max(1, vol_median * rng.choice(LOGN_MILLI) // 1000)
            mean_price = (opened + close) // 2
            buy_share = 350 + rng.randrange(301)  # 35 % .. 65 % taker buys
            buy = volume * buy_share // 1000
            trade_size = max(1, self.median_trade_steps * rng.choice(LOGN_MILLI))
            trades = max(1, volume * 1000 // trade_size)
            out.append(
                [
                    first - k * interval_ms,
                    opened,
                    high,
                    low,
                    close,
                    volume,
                    volume * mean_price,
                    trades,
                    buy,
                    buy * mean_price,
                ]
            )
            close = opened
        out.reverse()
        self._history[interval_ms] = out
        return out

    def _live(self, open_ms: int, interval_ms: int, now_ms: int, prev_close: int) -> Bar:
        """Aggregate the live 1-minute bars of [open_ms, open_ms + interval)."""
        bar: Bar = [open_ms, prev_close, prev_close, prev_close, prev_close, 0, 0, 0, 0, 0]
        seen = False
        minute = max(open_ms, self.start_ms - self.start_ms % MINUTE_MS)
        end = min(open_ms + interval_ms, now_ms + 1)
        while minute < end:
            m = self.minutes.get(minute)
            minute += MINUTE_MS
            if m is None:
                continue
            if not seen:
                bar[1] = bar[2] = bar[3] = m[1]
                seen = True
            bar[2] = max(bar[2], m[2])
            bar[3] = min(bar[3], m[3])
            bar[4] = m[4]
            for i in range(5, 10):
                bar[i] += m[i]
        return bar

    def query(self, q: KlineQuery, now_ms: int) -> list[list[object]]:
        """Bars selected as Binance selects them, rendered as its array-of-arrays rows."""
        interval = q.interval_ms
        history = self.history(interval)
        first_live = bucket(self.start_ms, interval)
        earliest = history[0][0]
        latest = bucket(now_ms, interval)
        lo = earliest
        if q.start_ms is not None:
            # The first bar opening at or after startTime.
            lo = max(earliest, bucket(q.start_ms + interval - 1, interval))
        hi = latest if q.end_ms is None else min(latest, bucket(q.end_ms, interval))
        if hi < lo:
            return []
        count = (hi - lo) // interval + 1
        if count > q.limit:
            if q.start_ms is not None:
                hi = lo + (q.limit - 1) * interval
            else:
                lo = hi - (q.limit - 1) * interval
        rows: list[list[object]] = []
        prev_close = self.start_ticks
        before = [m for m in self.minutes if m < lo]
        if before:
            # A quiet bar opens (and stays) at the last trade before it.
            prev_close = self.minutes[max(before)][4]
        t = lo
        while t <= hi:
            if t < first_live:
                bar = history[(t - earliest) // interval]
            else:
                bar = self._live(t, interval, now_ms, prev_close)
            prev_close = bar[4]
            rows.append(self._render(bar, interval))
            t += interval
        return rows

    def _render(self, bar: Bar, interval_ms: int) -> list[object]:
        spec = self.spec
        ps = spec.price_str
        qs = spec.qty_str
        quote_precision = spec.price_precision + spec.qty_precision
        unit = spec.tick * spec.step
        return [
            bar[0],
            ps(bar[1]),
            ps(bar[2]),
            ps(bar[3]),
            ps(bar[4]),
            qs(bar[5]),
            bar[0] + interval_ms - 1,
            fmt_fixed(bar[6] * unit, quote_precision),
            bar[7],
            qs(bar[8]),
            fmt_fixed(bar[9] * unit, quote_precision),
            "0",
        ]
