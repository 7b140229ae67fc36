"""A seeded synthetic market for one symbol: book, trades, top of book, mark price and funding.

Everything that reaches a client is a pure function of (seed, symbol) and the step number; the
wall clock only sets the base of the timestamps and paces the steps. The random draws never depend
on who is subscribed: rendering is skipped for streams nobody listens to, the draws are not.

Per step (``step_ms`` of simulated time) the fair price random-walks, the book re-anchors on it
(crossing levels are cancelled, new levels appear at the touch), a few taker orders sweep the top
levels (one ``aggTrade`` per price level), makers replenish, and the step closes with one diff
depth event (``U``/``u``/``pu`` chained), the partial depths, and once a second the mark price.
"""

from __future__ import annotations

import random
from collections import deque
from typing import Protocol

from app.sim.frames import Frame
from app.sim.klines import KlineSeries
from app.sim.randomness import LOGN_MILLI, Z_MILLI, scaled_normal
from app.sim.symbols import SymbolSpec, fmt_fixed

PARTIAL_LEVELS = (5, 10, 20)
MIN_LEVELS = 25
MAX_LEVELS = 60
_TAKERS_PER_STEP = (0, 0, 0, 1, 1, 1, 2, 3)
_E8 = 10**8
# The live aggTrades kept for ``GET /fapi/v1/aggTrades`` (a few hours at the simulated rate).
RECENT_TRADES = 100_000

# (agg id, time ms, price ticks, qty steps, first trade id, last trade id, buyer is taker)
LiveTrade = tuple[int, int, int, int, int, int, bool]


class Sink(Protocol):
    """Where frames go: the hub, or a list in unit tests."""

    def wants(self, stream: str) -> bool: ...

    def publish(self, frame: Frame) -> None: ...


class SymbolMarket:
    """One symbol's order book and the events it produces."""

    def __init__(
        self, spec: SymbolSpec, seed: int, start_ms: int, step_ms: int, funding_interval_ms: int
    ) -> None:
        self.spec = spec
        self.step_ms = step_ms
        self.funding_interval_ms = funding_interval_ms
        self.rng = rng = random.Random(f"sim:{seed}:{spec.symbol}")
        start = spec.start_ticks * (1000 + rng.randrange(-30, 31)) // 1000
        self.fair = start
        self.min_fair = max(10, spec.start_ticks // 20)
        # The walk's step: ~2e-5 of the price per 100 ms, at least a tick's worth of noise.
        self.sigma_milli = max(700, start * 20 // 1000)
        price_real_e8 = spec.start_price * _E8 // 10**spec.price_precision
        step_real_e8 = spec.step * _E8 // 10**spec.qty_precision
        self.level_median: int = max(1, 20_000 * _E8 * _E8 // max(1, price_real_e8 * step_real_e8))
        self.trade_median: int = max(1, 3_000 * _E8 * _E8 // max(1, price_real_e8 * step_real_e8))
        self.update_id = rng.randrange(10**11, 10**12)
        self.last_u = self.update_id
        self.agg_id = rng.randrange(10**8, 10**9)
        self.trade_id = rng.randrange(10**9, 10**10)
        # The history before the start (app/sim/history.py) ends just before these ids.
        self.first_agg_id = self.agg_id + 1
        self.first_trade_id = self.trade_id + 1
        self.recent_trades: deque[LiveTrade] = deque(maxlen=RECENT_TRADES)
        self.premium_ppm = rng.randrange(-100, 101)
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self._bid_changes: dict[int, int] = {}
        self._ask_changes: dict[int, int] = {}
        self._first_change: int | None = None
        self.top: tuple[int, int, int, int] = (0, 0, 0, 0)
        # This step's trades as (time ms, price ticks, qty steps, buyer is taker), for the
        # signed side's matching; cleared when the next step starts.
        self.step_trades: list[tuple[int, int, int, bool]] = []
        self.steps = 0
        self.last_event_ms = start_ms
        self.last_tx_ms = start_ms
        self.mark_e8 = self.index_e8 = 0
        # A mark price pinned from outside (``POST /_sim/mark``), in 1e-8; None: it floats.
        self.mark_pin_e8: int | None = None
        self.funding_e8 = 10_000
        self.klines = KlineSeries(
            spec,
            seed,
            start_ms,
            start,
            sigma_milli=self.sigma_milli,
            step_ms=step_ms,
            median_trade_steps=self.trade_median,
        )
        low = self.sym = spec.stream_prefix
        self.s_trade = f"{low}@aggTrade"
        self.s_book = f"{low}@bookTicker"
        self.s_diff = f"{low}@depth@100ms"
        self.s_partial = tuple((n, f"{low}@depth{n}@100ms") for n in PARTIAL_LEVELS)
        self.s_mark1 = f"{low}@markPrice@1s"
        self.s_mark3 = f"{low}@markPrice"
        self.streams = frozenset(
            {self.s_trade, self.s_book, self.s_diff, self.s_mark1, self.s_mark3}
            | {s for _, s in self.s_partial}
        )
        self._build_book()
        self._update_mark(start_ms)
        self._bid_changes.clear()
        self._ask_changes.clear()
        self._first_change = None
        self.last_u = self.update_id
        # U/u/pu of the last diff event: partial depths carry them too.
        self._last_ids = (self.last_u, self.last_u)
        self.top = self._current_top()

    # -- book primitives ----------------------------------------------------------------------

    def _qty(self) -> int:
        multiplier: int = self.rng.choice(LOGN_MILLI)
        return max(1, self.level_median * multiplier // 1000)

    def _set(self, is_bid: bool, price: int, qty: int) -> None:
        book, changes = (self.bids, self._bid_changes) if is_bid else (self.asks, self._ask_changes)
        if qty > 0:
            book[price] = qty
        elif book.pop(price, None) is None:
            return
        changes[price] = qty
        self.update_id += 1
        if self._first_change is None:
            self._first_change = self.update_id

    def _build_book(self) -> None:
        rng = self.rng
        price = self.fair
        for _ in range(40):
            self._set(True, price, self._qty())
            price -= 1 + (rng.random() < 0.3)
        price = self.fair + 1
        for _ in range(40):
            self._set(False, price, self._qty())
            price += 1 + (rng.random() < 0.3)

    def _current_top(self) -> tuple[int, int, int, int]:
        bb = max(self.bids)
        ba = min(self.asks)
        return (bb, self.bids[bb], ba, self.asks[ba])

    # -- one step ------------------------------------------------------------------------------

    def step(self, t_start: int, out: Sink) -> None:
        """Advance one step starting at simulated time ``t_start`` (ms), publishing to ``out``."""
        rng = self.rng
        step = self.step_ms
        self.step_trades.clear()
        t_last = t_start + step - 2
        t = t_start + 1 + rng.randrange(max(1, step // 4))
        move = scaled_normal(rng.choice(Z_MILLI), self.sigma_milli)
        self.fair = max(self.min_fair, self.fair + move)
        self._reanchor()
        self._emit_top(min(t, t_last), out)
        for _ in range(rng.choice(_TAKERS_PER_STEP)):
            t += 1 + rng.randrange(max(1, step // 8))
            self._taker(min(t, t_last), out)
            self._emit_top(min(t, t_last), out)
        for _ in range(2 + rng.randrange(5)):
            t += 1 + rng.randrange(max(1, step // 16))
            self._replenish()
            self._emit_top(min(t, t_last), out)
        self._keep_depth()
        self._emit_top(t_last, out)
        t_end = t_start + step
        self._emit_depth(t_end, out)
        self.steps += 1
        if self.steps % max(1, 1000 // step) == 0:
            self._update_mark(t_end)
            self._emit_mark(t_end, out, self.s_mark1)
            if self.steps % max(1, 3000 // step) == 0:
                self._emit_mark(t_end, out, self.s_mark3)
        self.last_event_ms = t_end

    def _reanchor(self) -> None:
        """Cancel levels the fair price crossed; open new ones between the old touch and it."""
        rng = self.rng
        bid_target = self.fair
        ask_target = self.fair + 1
        for p in [p for p in self.bids if p > bid_target]:
            self._set(True, p, 0)
        for p in [p for p in self.asks if p < ask_target]:
            self._set(False, p, 0)
        best_bid = max(self.bids, default=bid_target - 1)
        for p in range(max(best_bid + 1, bid_target - 20), bid_target + 1):
            if p == bid_target or rng.random() < 0.5:
                self._set(True, p, self._qty())
        best_ask = min(self.asks, default=ask_target + 1)
        for p in range(ask_target, min(best_ask, ask_target + 21)):
            if p == ask_target or rng.random() < 0.5:
                self._set(False, p, self._qty())

    def _taker(self, t: int, out: Sink) -> None:
        """One taker order sweeping up to five levels: one aggTrade per level it takes from."""
        rng = self.rng
        buy = rng.random() < 0.5
        remaining = max(1, self.trade_median * rng.choice(LOGN_MILLI) // 1000)
        book = self.asks if buy else self.bids
        levels = sorted(book) if buy else sorted(book, reverse=True)
        emit = out.wants(self.s_trade)
        for price in levels[:5]:
            if remaining <= 0:
                break
            available = book[price]
            fill = min(available, remaining)
            remaining -= fill
            self._set(not buy, price, available - fill)
            fills = 1 + rng.randrange(3)
            first = self.trade_id + 1
            self.trade_id += fills
            self.agg_id += 1
            self.last_tx_ms = t
            self.klines.record(t, price, fill, buy)
            self.step_trades.append((t, price, fill, buy))
            self.recent_trades.append((self.agg_id, t, price, fill, first, self.trade_id, buy))
            if emit:
                s = self.spec
                out.publish(
                    Frame(
                        self.s_trade,
                        (
                            f'{{"e":"aggTrade","E":{t + 2},"a":{self.agg_id},"s":"{s.symbol}",'
                            f'"p":"{s.price_str(price)}","q":"{s.qty_str(fill)}","f":{first},'
                            f'"l":{self.trade_id},"T":{t},"m":{"false" if buy else "true"}}}'
                        ),
                    )
                )
        if len(book) < 6:
            self._keep_depth()

    def _replenish(self) -> None:
        """One maker action: resize a level, cancel one, or open one near the touch."""
        rng = self.rng
        is_bid = rng.random() < 0.5
        book = self.bids if is_bid else self.asks
        ordered = sorted(book, reverse=is_bid)
        action = rng.random()
        near = rng.random() < 0.6
        index = rng.randrange(min(len(ordered), 10)) if near else rng.randrange(len(ordered))
        if action < 0.5:
            self._set(is_bid, ordered[index], self._qty())
        elif action < 0.7:
            if index > 0:
                self._set(is_bid, ordered[index], 0)
        else:
            offset = 1 + rng.randrange(30)
            best = ordered[0]
            price = best - offset if is_bid else best + offset
            if price > 0 and price not in book:
                self._set(is_bid, price, self._qty())

    def _keep_depth(self) -> None:
        """Keep between MIN_LEVELS and MAX_LEVELS levels a side, the book never one-sided."""
        rng = self.rng
        for is_bid in (True, False):
            book = self.bids if is_bid else self.asks
            if not book:
                self._set(is_bid, self.fair if is_bid else self.fair + 1, self._qty())
            while len(book) < MIN_LEVELS:
                worst = min(book) if is_bid else max(book)
                gap = 1 + (rng.random() < 0.3)
                price = worst - gap if is_bid else worst + gap
                if price <= 0:
                    break
                self._set(is_bid, price, self._qty())
            if len(book) > MAX_LEVELS:
                ordered = sorted(book, reverse=is_bid)
                for price in ordered[MAX_LEVELS:]:
                    self._set(is_bid, price, 0)

    # -- rendering -----------------------------------------------------------------------------

    def _emit_top(self, t: int, out: Sink) -> None:
        top = self._current_top()
        if top == self.top:
            return
        self.top = top
        if not out.wants(self.s_book):
            return
        s = self.spec
        bb, bq, ba, aq = top
        out.publish(
            Frame(
                self.s_book,
                (
                    f'{{"e":"bookTicker","u":{self.update_id},"s":"{s.symbol}",'
                    f'"b":"{s.price_str(bb)}","B":"{s.qty_str(bq)}","a":"{s.price_str(ba)}",'
                    f'"A":"{s.qty_str(aq)}","T":{t},"E":{t + 1}}}'
                ),
            )
        )

    def _levels(self, items: list[tuple[int, int]]) -> str:
        ps = self.spec.price_str
        qs = self.spec.qty_str
        return "[" + ",".join([f'["{ps(p)}","{qs(q)}"]' for p, q in items]) + "]"

    def _emit_depth(self, t_end: int, out: Sink) -> None:
        """Close the step's diff-depth event (U..u, pu chained) and render the partial depths."""
        tx = t_end - 1
        head = f'{{"e":"depthUpdate","E":{t_end},"T":{tx},"s":"{self.spec.symbol}",'
        if self._first_change is not None:
            first, pu = self._first_change, self.last_u
            self.last_u = self.update_id
            self._first_change = None
            if out.wants(self.s_diff):
                bids = self._levels(sorted(self._bid_changes.items()))
                asks = self._levels(sorted(self._ask_changes.items()))
                out.publish(
                    Frame(
                        self.s_diff,
                        (f'{head}"U":{first},"u":{self.last_u},"pu":{pu},"b":{bids},"a":{asks}}}'),
                    )
                )
            self._bid_changes.clear()
            self._ask_changes.clear()
            self._last_ids = (first, pu)
        first, pu = self._last_ids
        wanted = [(n, s) for n, s in self.s_partial if out.wants(s)]
        if not wanted:
            return
        bids_sorted = sorted(self.bids.items(), reverse=True)[:20]
        asks_sorted = sorted(self.asks.items())[:20]
        ids = f'"U":{first},"u":{self.last_u},"pu":{pu},'
        for n, stream in wanted:
            out.publish(
                Frame(
                    stream,
                    (
                        f'{head}{ids}"b":{self._levels(bids_sorted[:n])},'
                        f'"a":{self._levels(asks_sorted[:n])}}}'
                    ),
                )
            )

    def _update_mark(self, t: int) -> None:
        rng = self.rng
        spec = self.spec
        bb, _, ba, _ = self._current_top()
        mid_e8 = (bb + ba) * spec.tick * 10 ** (8 - spec.price_precision) // 2
        self.index_e8 = mid_e8 + mid_e8 * rng.choice(Z_MILLI) // 20_000_000
        self.premium_ppm = max(-500, min(500, self.premium_ppm + rng.randrange(-10, 11)))
        self.mark_e8 = self.index_e8 + self.index_e8 * self.premium_ppm // 1_000_000
        if self.mark_pin_e8 is not None:
            # After the draws above, so pinning never shifts the seeded market's randomness.
            self.mark_e8 = self.mark_pin_e8
        self.funding_e8 = max(-300_000, min(300_000, 10_000 + self.premium_ppm * 10))

    def next_funding_ms(self, t: int) -> int:
        interval = self.funding_interval_ms
        return (t // interval + 1) * interval

    def _emit_mark(self, t: int, out: Sink, stream: str) -> None:
        if not out.wants(stream):
            return
        out.publish(
            Frame(
                stream,
                (
                    f'{{"e":"markPriceUpdate","E":{t},"s":"{self.spec.symbol}",'
                    f'"p":"{fmt_fixed(self.mark_e8, 8)}","i":"{fmt_fixed(self.index_e8, 8)}",'
                    f'"P":"{fmt_fixed(self.index_e8, 8)}","r":"{fmt_fixed(self.funding_e8, 8)}",'
                    f'"T":{self.next_funding_ms(t)}}}'
                ),
            )
        )

    # -- REST views ----------------------------------------------------------------------------

    def depth(self, limit: int) -> dict[str, object]:
        """``GET /fapi/v1/depth``, consistent with the last diff event (lastUpdateId = its u)."""
        ps = self.spec.price_str
        qs = self.spec.qty_str
        return {
            "lastUpdateId": self.last_u,
            "E": self.last_event_ms,
            "T": self.last_event_ms - 1,
            "bids": [[ps(p), qs(q)] for p, q in sorted(self.bids.items(), reverse=True)[:limit]],
            "asks": [[ps(p), qs(q)] for p, q in sorted(self.asks.items())[:limit]],
        }
