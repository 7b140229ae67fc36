"""Backtests: the engine's own decision loop (:class:`~app.engine.trader.Trader`, risk gate,
paper exchange) over a recording or a simulator series, on a manual clock set to each event's
receive time.

Figures (money as exact decimal strings): PnL, fees, funding, slippage, orders, fills, closed
round trips, hit rate (winning round trips over all), Sharpe and Sortino of the equity curve's
returns over :data:`RETURNS_INTERVAL_S` (annualised; none below :data:`MIN_RETURNS` returns),
maximum drawdown (fraction of the running peak), exposure (share of 1-second checks with a
position open) and turnover (traded notional over the initial equity). The risk ATR warms from the
engine's recorded warm-up klines when the recording has them (:mod:`app.models.warmup`; a simulator
series makes its own), else from the data itself, so the first ~15 minutes make no entries; and
where the engine recorded the moment its model was loaded, the decision loop starts there too.

:class:`BacktestTrace` keeps what the report (:mod:`app.models.report`) needs beyond the figures:
the equity curve, every fill and funding payment, and every decision with the price it was made at.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from app.binance.filters import SymbolFilters
from app.clock import ManualClock
from app.config import PaperConfig, RiskConfig
from app.engine.book import OrderBook
from app.engine.events import AggTrade, DepthUpdate, Event
from app.engine.inference import LoadedModel
from app.engine.portfolio import FundingPayment
from app.models.replay import ReplayBooks, ReplayItem
from app.models.sandbox import FillRecord, Sandbox, make_sandbox
from app.models.warmup import ModelReady, Warmup

_YEAR_S = 365 * 86_400
RETURNS_INTERVAL_S = 60
"""Sharpe and Sortino are computed on returns over this interval (then annualised)."""
MIN_RETURNS = 30
"""Fewer returns give no Sharpe or Sortino: annualised from minutes, they would be noise."""


@dataclass(frozen=True, slots=True)
class Decision:
    """One model decision: the bar close it was made at, ``prob_up``, the last trade price then
    (None before the symbol's first trade) and what the trader did with it."""

    ts_ms: int
    symbol: str
    prob: float
    price: float | None
    action: str


@dataclass
class BacktestTrace:
    """The run's detail, for the report: never printed, never in :meth:`BacktestResult.as_dict`."""

    equity: list[tuple[int, Decimal]] = field(default_factory=list)  # (ts_ns, equity)
    fills: list[FillRecord] = field(default_factory=list)
    funding: list[FundingPayment] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    warmups: int = 0  # recorded warm-up inputs applied


@dataclass(frozen=True)
class BacktestResult:
    """A backtest's figures (see the module docstring)."""

    model_version: str
    symbols: tuple[str, ...]
    events: int
    decisions: int
    signals: int
    orders: int
    fills: int
    trades: int
    hit_rate: float | None
    initial_equity: Decimal
    final_equity: Decimal
    pnl: Decimal
    fees: Decimal
    funding: Decimal
    slippage: Decimal
    traded_notional: Decimal
    turnover: float
    sharpe: float | None
    sortino: float | None
    max_drawdown: float
    exposure: float
    span_s: float
    wall_s: float
    skipped: Mapping[str, int]
    trace: BacktestTrace = field(default_factory=BacktestTrace, repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in self.__dict__.items():
            if k == "trace":
                continue
            if isinstance(v, Decimal):
                out[k] = str(v.quantize(Decimal("0.0001")))
            elif isinstance(v, float):
                out[k] = round(v, 4)
            elif isinstance(v, tuple):
                out[k] = list(v)
            elif isinstance(v, Mapping):
                out[k] = dict(v)
            else:
                out[k] = v
        return out


def resample(curve: list[tuple[int, Decimal]], interval_s: float) -> list[Decimal]:
    """The curve's value at every ``interval_s`` from its first point (the last value at or
    before each step): returns of irregular samples would weigh quiet spells less."""
    if not curve:
        return []
    step = int(interval_s * 1e9)
    out: list[Decimal] = []
    t, k = curve[0][0], 0
    while t <= curve[-1][0]:
        while k + 1 < len(curve) and curve[k + 1][0] <= t:
            k += 1
        out.append(curve[k][1])
        t += step
    return out


def _returns(values: list[Decimal]) -> list[float]:
    return [float(b / a - 1) for a, b in zip(values, values[1:], strict=False) if a > 0]


def sharpe(values: list[Decimal], interval_s: float) -> float | None:
    """Annualised Sharpe ratio (no risk-free rate) of ``values`` sampled every ``interval_s``."""
    rets = _returns(values)
    if len(rets) < MIN_RETURNS:
        return None
    mean = sum(rets) / len(rets)
    var = sum((r - mean) ** 2 for r in rets) / (len(rets) - 1)
    if var <= 0:
        return None
    return mean / math.sqrt(var) * math.sqrt(_YEAR_S / interval_s)


def sortino(values: list[Decimal], interval_s: float) -> float | None:
    """Annualised Sortino ratio: the mean return over the downside deviation (target 0)."""
    rets = _returns(values)
    if len(rets) < MIN_RETURNS:
        return None
    downside = math.sqrt(sum(min(r, 0.0) ** 2 for r in rets) / len(rets))
    if downside <= 0:
        return None
    return sum(rets) / len(rets) / downside * math.sqrt(_YEAR_S / interval_s)


def drawdowns(values: Iterable[Decimal]) -> list[float]:
    """Each point's fall below the running peak, as a fraction of the peak."""
    peak, out = Decimal(0), []
    for e in values:
        peak = max(peak, e)
        out.append(float((peak - e) / peak) if peak > 0 else 0.0)
    return out


def _mid(books: Mapping[str, OrderBook]) -> Callable[[str], Decimal | None]:
    def mid(symbol: str) -> Decimal | None:
        book = books.get(symbol)
        bid, ask = (book.best_bid(), book.best_ask()) if book is not None else (None, None)
        if bid is None or ask is None:
            return None
        return (Decimal(bid[0]) + Decimal(ask[0])) / 2

    return mid


def slippage_of(fills: Iterable[FillRecord]) -> Decimal:
    """What the fills cost against the mid when their orders were made (positive: a cost)."""
    return sum(
        ((f.price - f.reference) * f.qty * f.side.sign for f in fills if f.reference is not None),
        Decimal(0),
    )


class _Run:
    """One backtest's loop state: the sandbox, the counters and the trace."""

    def __init__(
        self,
        model: LoadedModel,
        symbols: tuple[str, ...],
        filters: Mapping[str, SymbolFilters],
        books: ReplayBooks,
        paper: PaperConfig,
        risk: RiskConfig | None,
    ) -> None:
        self.model, self.symbols, self.filters = model, symbols, filters
        self.books, self.paper, self.risk = books, paper, risk
        self.clock = ManualClock(0)
        self.box = self._sandbox()
        self.trace = BacktestTrace()
        self.wanted = {s.upper() for s in symbols}
        self.last_price: dict[str, str] = {}
        self.n = self.checks = self.exposed = 0
        self.first_ns = self.last_ns = self.next_check = 0
        self.engine_start = False

    def _sandbox(self) -> Sandbox:
        box = make_sandbox(
            self.model, self.symbols, self.clock, self.filters, self.books.books, self.paper,
            self.risk,
        )  # fmt: skip
        box.tally.keep = True
        box.tally.mid = _mid(self.books.books)
        return box

    def feed(self, ts_ns: int, stream: str, ev: Event | Warmup | ModelReady) -> None:
        self.clock.now_ns = ts_ns
        trader, trace = self.box.trader, self.trace
        if isinstance(ev, ModelReady):
            # The engine's trader began here, after its first frames (see app.models.warmup):
            # so does this one. Later starts (restarts in the same recording) change nothing.
            if not self.engine_start and not self.box.tally.orders:
                self.box = self._sandbox()
                trace.decisions.clear()
            self.engine_start = True
            return
        if ev.symbol not in self.wanted:
            return
        if isinstance(ev, Warmup):
            trader.warm_risk(ev.symbol, ev.rows, ev.now_ms)
            trace.warmups += 1
            return
        if not self.n:
            self.first_ns = self.next_check = ts_ns
            trace.equity.append((ts_ns, self.paper.initial_balance))
        self.n += 1
        self.last_ns = ts_ns
        if type(ev) is DepthUpdate:
            self.books.on_event(stream, ev)
        elif type(ev) is AggTrade:
            self.last_price[ev.symbol] = ev.price
        stats = trader.stats
        before = stats.decisions
        trader.on_event(ts_ns, ev)
        if stats.decisions != before:
            sig = trader.last_signal(ev.symbol)
            if sig is not None:
                price = self.last_price.get(ev.symbol)
                trace.decisions.append(
                    Decision(sig.ts_ms, ev.symbol, sig.prob,
                             None if price is None else float(price), sig.action)
                )  # fmt: skip
        if ts_ns >= self.next_check:
            self.checks += 1
            self.next_check = ts_ns + 1_000_000_000
            if any(p.qty for p in self.box.exchange.portfolio.positions()):
                self.exposed += 1

    def result(self, wall_s: float) -> BacktestResult:
        box, trace, paper = self.box, self.trace, self.paper
        snap = box.exchange.snapshot(self.last_ns)
        tally, stats = box.tally, box.trader.stats
        trace.equity += [(p.ts_ns, p.equity) for p in tally.equity]
        trace.equity.append((self.last_ns, snap.equity))
        trace.equity.sort(key=lambda p: p[0])
        trace.fills, trace.funding = tally.fill_records, tally.payments
        returns = resample(trace.equity, RETURNS_INTERVAL_S)
        notional = sum((f.price * f.qty for f in trace.fills), Decimal(0))
        initial = paper.initial_balance
        return BacktestResult(
            model_version=self.model.contract.model_version,
            symbols=tuple(sorted(self.wanted)),
            events=self.n,
            decisions=stats.decisions,
            signals=stats.long_signals + stats.short_signals,
            orders=tally.orders,
            fills=tally.fills,
            trades=tally.trades,
            hit_rate=tally.wins / tally.trades if tally.trades else None,
            initial_equity=initial,
            final_equity=snap.equity,
            pnl=snap.equity - initial,
            fees=snap.fees,
            funding=snap.funding,
            slippage=slippage_of(trace.fills),
            traded_notional=notional,
            turnover=float(notional / initial) if initial else 0.0,
            sharpe=sharpe(returns, RETURNS_INTERVAL_S),
            sortino=sortino(returns, RETURNS_INTERVAL_S),
            max_drawdown=max(drawdowns(e for _, e in trace.equity), default=0.0),
            exposure=self.exposed / self.checks if self.checks else 0.0,
            span_s=(self.last_ns - self.first_ns) / 1e9,
            wall_s=wall_s,
            skipped=dict(stats.skipped),
            trace=trace,
        )


def run_backtest(
    model: LoadedModel,
    events: Iterable[ReplayItem],
    filters: Mapping[str, SymbolFilters],
    symbols: tuple[str, ...],
    books: ReplayBooks | None = None,
    paper: PaperConfig | None = None,
    risk: RiskConfig | None = None,
) -> BacktestResult:
    """Run ``model`` through the decision loop over ``events`` with paper execution."""
    started = time.perf_counter()
    run = _Run(model, symbols, filters, books or ReplayBooks(), paper or PaperConfig(), risk)
    for ts_ns, stream, ev in events:
        run.feed(ts_ns, stream, ev)
    return run.result(time.perf_counter() - started)


def format_result(r: BacktestResult) -> str:
    """The human-readable summary ``appliance backtest`` prints."""
    d = r.as_dict()
    return "\n".join(f"{k:15s} {v}" for k, v in d.items())
