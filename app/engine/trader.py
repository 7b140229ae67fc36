"""The decision loop: features → window → inference → signal → risk gate → execution.

One :class:`Trader` serves every configured symbol with the active model (see
``models/README.md``). Per symbol it keeps the model's :class:`BarSampler` and window, plus a
1-minute ATR for the risk gate's stops (a stop sized on 1-second bars would sit inside the spread).
A model swap rebuilds the per-symbol features and windows from the new contract; the windows
refill from live bars, so a swapped model decides again once its features have warmed up.

Policy (deliberately simple, the model decides direction only): a long signal opens a long when
flat and closes a short first; a short signal mirrors it; a signal in the held direction holds.
Exits are the gate's ATR stop and take-profit, carried by the execution venue. Entries pass the
risk gate or do not happen; the gate records every rejection.

The hot path is :meth:`Trader.on_event`; it allocates only when a bar closes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from decimal import Decimal
from typing import Protocol

from app.binance.filters import SymbolFilters
from app.binance.margin import MarginSettings
from app.clock import Clock
from app.engine.book import OrderBook
from app.engine.events import AggTrade, DepthUpdate, Event, MarkPriceUpdate
from app.engine.features import ATR, Bar, BarBuilder, bars_from_klines
from app.engine.inference import InferenceSlot, LoadedModel
from app.engine.model_contract import Direction
from app.engine.orders import Order, OrderUpdate, Side
from app.engine.portfolio import AccountSnapshot
from app.engine.risk import Approved, Intent, RiskContext, RiskGate
from app.engine.sampling import BarSampler

log = logging.getLogger(__name__)

RISK_BAR_S = 60
RISK_ATR_PERIOD = 14


class Venue(Protocol):
    """Where approved orders go: the paper exchange now, the live exchange client later."""

    def submit(self, order: Order) -> OrderUpdate: ...
    def snapshot(self, ts_ns: int | None = None) -> AccountSnapshot: ...
    def position_qty(self, symbol: str) -> Decimal: ...
    def pending_qty(self) -> dict[str, Decimal]: ...
    def on_book(self, book: OrderBook, ts_ns: int) -> None: ...
    def on_trade(self, trade: AggTrade, ts_ns: int) -> None: ...
    def on_mark(self, event: MarkPriceUpdate, ts_ns: int) -> None: ...


@dataclass
class Signal:
    """The latest decision for a symbol, for ``status`` and the panel."""

    ts_ms: int
    prob: float
    direction: str
    confidence: float
    action: str


@dataclass
class TraderStats:
    decisions: int = 0
    long_signals: int = 0
    short_signals: int = 0
    orders: int = 0
    rejected: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


class _Symbol:
    __slots__ = ("atr", "atr_value", "last", "predict", "risk_bars", "sampler", "window")

    def __init__(self, model: LoadedModel) -> None:
        c = model.contract
        self.sampler = BarSampler(c.features, c.bar_interval_s)
        self.window = model.new_window()
        self.predict = model.bind(self.window)  # the model reads the window in place
        self.risk_bars = BarBuilder(RISK_BAR_S)
        self.atr = ATR(RISK_ATR_PERIOD)
        self.atr_value: float | None = None
        self.last = Signal(0, 0.0, "", 0.0, "")

    def on_risk_bar(self, bar: Bar) -> None:
        self.atr_value = self.atr.update(bar.high, bar.low, bar.close)


class Trader:
    """Runs the active model over market events and sends what the gate approves to ``venue``."""

    def __init__(
        self,
        symbols: tuple[str, ...],
        clock: Clock,
        slot: InferenceSlot,
        gate: RiskGate,
        venue: Venue,
        filters: Mapping[str, SymbolFilters],
        books: Mapping[str, OrderBook],
        blocked: Callable[[str], str],
        *,
        decide_every_event: bool = False,
        margin: MarginSettings | None = None,
    ) -> None:
        self.symbols = tuple(s.upper() for s in symbols)
        # The contract decides at bar closes; deciding on every event (the window as of the
        # last close, updated event features aside) is the benchmark's worst case.
        self._every_event = decide_every_event
        self._clock = clock
        self._slot = slot
        self._gate = gate
        self._venue = venue
        self._filters = filters
        self._books = books
        # Symbol -> "" when entries may go, else the blocking condition's code (app.engine.halts).
        self._blocked = blocked
        # Leverage, margin type and brackets: the gate's liquidation check (None: none).
        self._margin = margin
        self._generation = -1
        self._state: dict[str, _Symbol] = {}
        self.stats = TraderStats()

    # -- set-up --------------------------------------------------------------------------------

    def attach(self, gate: RiskGate, venue: Venue, books: Mapping[str, OrderBook]) -> None:
        """Trade through a new gate, venue and books, keeping the features (the benchmark resets
        execution on each pass over a recording while the features run on)."""
        self._gate, self._venue, self._books = gate, venue, books

    def _rebuild(self, model: LoadedModel) -> None:
        """Fresh features and windows for the model now in the slot (risk ATR carries over)."""
        old = self._state
        self._state = {}
        for symbol in self.symbols:
            if not model.contract.serves(symbol):
                continue
            fresh = _Symbol(model)
            if symbol in old:
                prev = old[symbol]
                fresh.risk_bars, fresh.atr, fresh.atr_value = (
                    prev.risk_bars,
                    prev.atr,
                    prev.atr_value,
                )
            self._state[symbol] = fresh
        self._generation = self._slot.generation
        log.info("trader: model %s for %s", model.contract.model_version, ",".join(self._state))

    def adopt_risk(self, source: Trader) -> None:
        """Start this trader's 1-minute ATRs from ``source``'s (a shadow sandbox borrows the live
        trader's, so it can size its first entry at once instead of after 15 minutes of bars)."""
        model = self._slot.model
        if model is None:
            return
        self._rebuild(model)
        for symbol, state in self._state.items():
            src = source._state.get(symbol)
            if src is not None and src.atr_value is not None:
                state.risk_bars = src.risk_bars.copy()
                state.atr = src.atr.copy()
                state.atr_value = src.atr_value

    def warm_risk(self, symbol: str, klines: Sequence[Sequence[object]], now_ms: int) -> int:
        """Warm a symbol's 1-minute ATR from ``/fapi/v1/klines?interval=1m`` rows."""
        model = self._slot.model
        if model is not None and self._generation != self._slot.generation:
            self._rebuild(model)
        state = self._state.get(symbol.upper())
        if state is None:
            return 0
        bars = bars_from_klines(klines, RISK_BAR_S, now_ms)
        for bar in bars:
            state.on_risk_bar(bar)
        if bars:
            state.risk_bars.seed(bars[-1])
        return len(bars)

    # -- hot path ------------------------------------------------------------------------------

    # Long on purpose: the hot path: one function, no calls the decision does not need.
    def on_event(self, ts_recv_ns: int, ev: Event) -> None:  # noqa: PLR0912
        kind = type(ev)
        symbol: str = ev.symbol
        venue = self._venue
        if kind is DepthUpdate:
            book = self._books.get(symbol)
            if book is not None:
                venue.on_book(book, ts_recv_ns)
        elif kind is AggTrade:
            venue.on_trade(ev, ts_recv_ns)  # type: ignore[arg-type]
        elif kind is MarkPriceUpdate:
            venue.on_mark(ev, ts_recv_ns)  # type: ignore[arg-type]
        model = self._slot.model
        if model is None:
            return
        if self._generation != self._slot.generation:
            self._rebuild(model)
        state = self._state.get(symbol)
        if state is None:
            return
        if kind is AggTrade:
            t: AggTrade = ev  # type: ignore[assignment]
            for bar in state.risk_bars.update(t.ts_trade_ms, float(t.price), float(t.qty)):
                state.on_risk_bar(bar)
        closed = state.sampler.on_event(ev, self._books.get(symbol))
        if closed:
            window = state.window
            for _, row in closed:
                window.push(row)
            # One decision, on the latest bar: when an event closes several bars at once (a
            # quiet spell), acting on the older ones would act on a market already gone.
            if window.ready:
                bar = closed[-1][0]
                self._decide(symbol, state, model, bar.open_time_ms + state.sampler.interval_ms)
        elif self._every_event and state.window.ready:
            self._decide(symbol, state, model, ts_recv_ns // 1_000_000)

    def _decide(self, symbol: str, state: _Symbol, model: LoadedModel, ts_ms: int) -> None:
        prob = state.predict()
        direction, confidence = model.signal(prob)
        stats = self.stats
        stats.decisions += 1
        action = "none"
        if direction is not None:
            if direction is Direction.LONG:
                stats.long_signals += 1
            else:
                stats.short_signals += 1
            action = self._act(symbol, state, model, direction, confidence)
        # Updated in place: a decision allocates nothing that outlives it.
        last = state.last
        last.ts_ms, last.prob, last.direction = ts_ms, prob, direction or ""
        last.confidence, last.action = confidence, action

    def _act(
        self,
        symbol: str,
        state: _Symbol,
        model: LoadedModel,
        direction: Direction,
        confidence: float,
    ) -> str:
        block = self._blocked(symbol)
        if block == "paused":  # the operator's pause stops every decision, closes included
            self.stats.skip(block)
            return block
        if state.atr_value is None or state.atr_value <= 0:
            self.stats.skip("atr warming")
            return "atr warming"
        book = self._books.get(symbol)
        best_bid, best_ask = (
            (book.best_bid(), book.best_ask()) if book is not None else (None, None)
        )
        if best_bid is None or best_ask is None:
            self.stats.skip("no book")
            return "no book"
        venue = self._venue
        held = venue.position_qty(symbol)
        side = Side.BUY if direction is Direction.LONG else Side.SELL
        if (held > 0 and side is Side.BUY) or (held < 0 and side is Side.SELL):
            return "hold"  # the common case, decided before any account arithmetic
        now = self._clock.time_ns()
        if held:
            exit_order = self._gate.exit_order(symbol, held, "reverse", now)
            if exit_order is not None:
                venue.submit(exit_order)
                self.stats.orders += 1
            return "close"
        if block:  # a halt stops entries; the close above (reduce-only) stays allowed
            self.stats.skip(block)
            return block
        price = Decimal(best_ask[0] if side is Side.BUY else best_bid[0])
        intent = Intent(
            symbol=symbol,
            side=side,
            confidence=confidence,
            reference_price=price,
            atr=Decimal(repr(state.atr_value)),
            model_version=model.contract.model_version,
            ts_ns=now,
        )
        context = RiskContext(
            venue.snapshot(now), self._filters.get(symbol), venue.pending_qty(), self._margin
        )
        decision = self._gate.check(intent, context)
        if isinstance(decision, Approved):
            venue.submit(decision.order)
            self.stats.orders += 1
            return "order"
        self.stats.rejected += 1
        return f"rejected: {decision.code}"

    def last_signal(self, symbol: str) -> Signal | None:
        """A copy of the latest decision for ``symbol`` (None before the first)."""
        state = self._state.get(symbol)
        if state is None or not state.last.ts_ms:
            return None
        return replace(state.last)

    def warmup(self) -> dict[str, str]:
        """Per symbol, "" when the model can decide for it, else what it still waits for."""
        model = self._slot.model
        out: dict[str, str] = {}
        for symbol in self.symbols:
            if model is None:
                out[symbol] = "no model loaded"
                continue
            if self._generation != self._slot.generation:
                out[symbol] = "switching models"
                continue
            state = self._state.get(symbol)
            if state is None:
                out[symbol] = f"{model.contract.model_version} does not trade {symbol}"
            elif not state.window.ready:
                window = state.window
                out[symbol] = f"window {window.filled}/{window.needed} bars"
            elif state.atr_value is None:
                out[symbol] = "1-minute ATR warming"
            else:
                out[symbol] = ""
        return out

    def status(self) -> dict[str, object]:
        s = self.stats
        model = self._slot.model
        return {
            "model": None
            if model is None
            else {"sha256": model.sha256, "model_version": model.contract.model_version},
            "decisions": s.decisions,
            "long_signals": s.long_signals,
            "short_signals": s.short_signals,
            "orders": s.orders,
            "rejected": s.rejected,
            "skipped": dict(s.skipped),
            "last": {k: asdict(st.last) for k, st in self._state.items() if st.last.ts_ms},
            "atr_1m": {k: v.atr_value for k, v in self._state.items()},
        }
