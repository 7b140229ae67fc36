"""The past of the simulated market, served by Binance's historical endpoints.

Before the start the market has no simulated steps, only the generated 1-minute kline history of
:class:`~app.sim.klines.KlineSeries` (1,500 bars, 25 hours). This module thins that history into
aggregated trades that agree with it: for every minute, 40 to 80 aggTrades (about one a second,
where the live market makes ~20: a 6-hour download is tens of requests, not thousands) whose first
price is the bar's open, last its close, whose extremes are its high and low, whose quantities sum
to its volume and whose underlying trade ids (``f``..``l``) count its trades. Aggregate and trade
ids are consecutive and end just before the live market's first ones, so a download that crosses
the start sees one unbroken id sequence. Only the taker side is drawn from the bar's taker-buy
share rather than matching its taker-buy volume exactly.

Funding history is one settlement per funding interval before the start, with a rate drawn per
settlement time; mark and index price klines are the trade klines shifted by a small premium drawn
per bar, so every page of every query is a pure function of (seed, symbol, time).

After the start, ``SymbolMarket.recent_trades`` (the last 100,000 live aggTrades) continues the
sequence.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Iterator
from decimal import Decimal

from app.sim.klines import INTERVALS_MS, MINUTE_MS, KlineQuery, bucket
from app.sim.market import LiveTrade, SymbolMarket

AGG_PER_MINUTE = (40, 80)  # aggTrades per historical minute: uniform in this range
FUNDING_HISTORY = 1000  # settlements kept before the start
_CACHE_MINUTES = 2048
_E8 = Decimal("0.00000001")

# (agg id, time ms, price ticks, qty steps, first trade id, last trade id, buyer is maker)
Trade = tuple[int, int, int, int, int, int, bool]


class SymbolHistory:
    """Historical aggTrades, funding and mark/index klines of one symbol."""

    def __init__(self, market: SymbolMarket, seed: int) -> None:
        self.market = market
        self.seed = seed
        spec = market.spec
        self.symbol = spec.symbol
        self.bars = market.klines.history(MINUTE_MS)
        self.first_ms = self.bars[0][0]
        self.end_ms = self.bars[-1][0] + MINUTE_MS  # the first live minute
        rng = random.Random(f"aggcount:{seed}:{spec.symbol}")
        lo, hi = AGG_PER_MINUTE
        counts = [min(rng.randint(lo, hi), bar[7], bar[5]) for bar in self.bars]
        self._counts = counts
        self._first_agg: list[int] = []
        self._first_tid: list[int] = []
        agg = market.first_agg_id - sum(counts)
        tid = market.first_trade_id - sum(bar[7] for bar in self.bars)
        for count, bar in zip(counts, self.bars, strict=True):
            self._first_agg.append(agg)
            self._first_tid.append(tid)
            agg += count
            tid += bar[7]
        self._cache: dict[int, list[Trade]] = {}

    # -- aggTrades -----------------------------------------------------------------------------

    def _minute(self, i: int) -> list[Trade]:
        cached = self._cache.get(i)
        if cached is not None:
            return cached
        bar = self.bars[i]
        open_ms, o, h, low, c, volume, _q, trades, buy_volume = bar[:9]
        n = self._counts[i]
        rng = random.Random(f"aggtrades:{self.seed}:{self.symbol}:{open_ms}")
        times = sorted(rng.sample(range(1, MINUTE_MS), n))
        prices = [rng.randint(low, h) for _ in range(n)]
        if n >= 4:
            hi_at, lo_at = rng.sample(range(1, n - 1), 2)
            prices[hi_at], prices[lo_at] = h, low
        prices[0], prices[-1] = o, c
        qtys = _split(rng, volume, n)
        counts = _split(rng, trades, n)
        buy_share = buy_volume / volume if volume else 0.5
        out: list[Trade] = []
        agg, tid = self._first_agg[i], self._first_tid[i]
        for k in range(n):
            out.append(
                (agg + k, open_ms + times[k], prices[k], qtys[k], tid, tid + counts[k] - 1,
                 rng.random() >= buy_share)
            )  # fmt: skip
            tid += counts[k]
        if len(self._cache) >= _CACHE_MINUTES:
            self._cache.clear()
        self._cache[i] = out
        return out

    def _iter_from_minute(self, i: int) -> Iterator[Trade]:
        for j in range(max(0, i), len(self.bars)):
            yield from self._minute(j)
        for t in self.market.recent_trades:
            yield _live(t)

    def agg_trades(
        self, from_id: int | None, start_ms: int | None, end_ms: int | None, limit: int
    ) -> list[Trade]:
        """Trades selected as Binance selects them: from an id, in a time window, or the last."""
        out: list[Trade] = []
        if from_id is not None:
            i = max(0, bisect.bisect_right(self._first_agg, from_id) - 1)
            for t in self._iter_from_minute(i):
                if t[0] < from_id or (start_ms is not None and t[1] < start_ms):
                    continue
                if end_ms is not None and t[1] > end_ms:
                    break
                out.append(t)
                if len(out) >= limit:
                    break
            return out
        if start_ms is not None or end_ms is not None:
            lo = start_ms if start_ms is not None else 0
            hi = end_ms if end_ms is not None else lo + 3_600_000
            i = (lo - self.first_ms) // MINUTE_MS
            for t in self._iter_from_minute(i):
                if t[1] < lo:
                    continue
                if t[1] > hi:
                    break
                out.append(t)
                if len(out) >= limit:
                    break
            return out
        recent = [_live(t) for t in list(self.market.recent_trades)[-limit:]]
        i = len(self.bars) - 1
        while len(recent) < limit and i >= 0:
            recent[:0] = self._minute(i)
            i -= 1
        return recent[-limit:]

    def render_trade(self, t: Trade) -> dict[str, object]:
        spec = self.market.spec
        return {
            "a": t[0],
            "p": spec.price_str(t[2]),
            "q": spec.qty_str(t[3]),
            "f": t[4],
            "l": t[5],
            "T": t[1],
            "m": t[6],
        }

    # -- funding -------------------------------------------------------------------------------

    def funding(
        self, start_ms: int | None, end_ms: int | None, limit: int, interval_ms: int
    ) -> list[dict[str, object]]:
        """Settlements before the start, oldest first (the most recent ``limit`` by default)."""
        last = bucket(self.market.klines.start_ms - 1, interval_ms)
        first = last - (FUNDING_HISTORY - 1) * interval_ms
        lo = first if start_ms is None else max(first, bucket(start_ms + interval_ms - 1,
                                                              interval_ms))  # fmt: skip
        hi = last if end_ms is None else min(last, bucket(end_ms, interval_ms))
        if hi < lo:
            return []
        times = list(range(lo, hi + 1, interval_ms))
        times = times[:limit] if start_ms is not None else times[-limit:]
        return [self._settlement(t) for t in times]

    def _settlement(self, t: int) -> dict[str, object]:
        rng = random.Random(f"funding:{self.seed}:{self.symbol}:{t}")
        rate_e8 = 10_000 + rng.randrange(-100, 101) * 100
        i = (t - MINUTE_MS - self.first_ms) // MINUTE_MS
        mark = ""
        if 0 <= i < len(self.bars):
            close = Decimal(self.market.spec.price_str(self.bars[i][4]))
            mark = str((close * (1 + self._premium("mark", t, MINUTE_MS))).quantize(_E8))
        return {
            "symbol": self.symbol,
            "fundingRate": str((Decimal(rate_e8) * _E8).quantize(_E8)),
            "fundingTime": t,
            "markPrice": mark,
        }

    # -- mark and index price klines ----------------------------------------------------------

    def _premium(self, kind: str, open_ms: int, interval_ms: int) -> Decimal:
        rng = random.Random(f"{kind}:{self.seed}:{self.symbol}:{interval_ms}:{open_ms}")
        spread = 300 if kind == "mark" else 50
        return Decimal(rng.randrange(-spread, spread + 1)) / 1_000_000

    def price_klines(self, kind: str, query: KlineQuery, now_ms: int) -> list[list[object]]:
        """``markPriceKlines`` / ``indexPriceKlines``: the trade klines shifted by a premium."""
        rows = self.market.klines.query(query, now_ms)
        out: list[list[object]] = []
        points = max(1, query.interval_ms // 1000)
        for row in rows:
            open_ms = row[0]
            assert isinstance(open_ms, int)
            factor = 1 + self._premium(kind, open_ms, query.interval_ms)
            prices = [str((Decimal(str(v)) * factor).quantize(_E8)) for v in row[1:5]]
            out.append([open_ms, *prices, "0", row[6], "0", points, "0", "0", "0"])
        return out


def _split(rng: random.Random, total: int, parts: int) -> list[int]:
    """``total`` as ``parts`` positive integers (``parts <= total``), cut at random points."""
    if parts <= 1:
        return [total]
    cuts = sorted(rng.sample(range(1, total), parts - 1))
    return [b - a for a, b in zip([0, *cuts], [*cuts, total], strict=True)]


def _live(t: LiveTrade) -> Trade:
    agg, ts, price, qty, first, last, buy = t
    return (agg, ts, price, qty, first, last, not buy)


def interval_ms(name: str) -> int | None:
    return INTERVALS_MS.get(name)
