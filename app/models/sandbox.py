"""A paper-only copy of the decision loop: the engine's own :class:`Trader`, risk gate and paper
exchange, with an in-memory account that nothing outside can see or trade.

Backtests run one over a recording; shadow mode runs two beside the live trader (the candidate and
a mirror of the active model), so both are judged by the same code and from the same start.
Nothing here writes to the trading database: its orders exist only inside its own
:class:`PaperExchange`, and the :class:`Tally` keeps the figures.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from app.binance.filters import SymbolFilters
from app.clock import Clock
from app.config import PaperConfig, RiskConfig
from app.engine.book import OrderBook
from app.engine.events import Event
from app.engine.inference import InferenceSlot, LoadedModel
from app.engine.loop import paper_loop
from app.engine.orders import Side
from app.engine.paper import ExecutionReport, PaperExchange
from app.engine.portfolio import EquityPoint, FundingPayment, Portfolio
from app.engine.risk import RiskGate
from app.engine.trader import Signal, Trader

ZERO = Decimal(0)
# Client order ids of a sandbox start with this boot number, so they can never collide with (or
# be mistaken for) the live engine's, whose boots count up from 1.
SANDBOX_BOOT = 999_999


@dataclass(frozen=True, slots=True)
class FillRecord:
    """One fill as a backtest report needs it: why its order was sent (``purpose``), the PnL it
    realised, and the mid price when the order was created (``reference``: slippage is measured
    from it; None when the book had no two sides)."""

    ts_ns: int
    symbol: str
    side: Side
    price: Decimal
    qty: Decimal
    fee: Decimal
    realized: Decimal
    purpose: str
    model_version: str
    reference: Decimal | None


@dataclass
class Tally:
    """What a sandbox's paper exchange reported: orders, fills, fees, funding, closed trades and
    the equity curve. Also feeds the sandbox's gate, as the engine's journal feeds the real one.

    With ``keep`` (backtests) every fill and funding payment is kept too, for the report; shadow
    runs leave it off, as they run for weeks. ``mid`` gives the mid price a new order is measured
    against."""

    gate: RiskGate | None = None
    keep: bool = False
    mid: Callable[[str], Decimal | None] = lambda symbol: None
    orders: int = 0
    fills: int = 0
    fees: Decimal = ZERO
    funding: Decimal = ZERO
    trades: int = 0
    wins: int = 0
    trade_pnl: list[Decimal] = field(default_factory=list)
    equity: list[EquityPoint] = field(default_factory=list)
    model_versions: set[str] = field(default_factory=set)
    order_ids: set[str] = field(default_factory=set)
    fill_records: list[FillRecord] = field(default_factory=list)
    payments: list[FundingPayment] = field(default_factory=list)
    _references: dict[str, Decimal | None] = field(default_factory=dict)

    def on_report(self, report: ExecutionReport) -> None:
        order = report.update.order
        if order.client_id not in self.order_ids:
            self.order_ids.add(order.client_id)
            self.orders += 1
            self.model_versions.add(order.model_version)
            if self.keep:  # the first report of an order comes at its creation
                self._references[order.client_id] = self.mid(order.symbol)
        for f, result in zip(report.fills, report.results, strict=True):
            self.fills += 1
            self.fees += f.fee
            if self.keep:
                self.fill_records.append(
                    FillRecord(f.ts_ns, f.symbol, f.side, f.price, f.qty, f.fee, result.realized,
                               order.purpose, order.model_version,
                               self._references.get(order.client_id))
                )  # fmt: skip
        for r in report.results:
            if r.closed is not None:
                self.trades += 1
                self.trade_pnl.append(r.closed.pnl)
                if r.closed.pnl > 0:
                    self.wins += 1
                if self.gate is not None:
                    self.gate.on_trade_closed(r.closed)

    def on_funding(self, payment: FundingPayment) -> None:
        self.funding += payment.amount
        if self.keep:
            self.payments.append(payment)

    def on_equity(self, point: EquityPoint) -> None:
        self.equity.append(point)
        if self.gate is not None:
            self.gate.on_equity(point.ts_ns, point.equity)


@dataclass
class Sandbox:
    """One model's private decision loop and paper account."""

    trader: Trader
    exchange: PaperExchange
    gate: RiskGate
    slot: InferenceSlot
    tally: Tally
    model: LoadedModel

    def on_event(self, ts_recv_ns: int, ev: Event) -> Signal | None:
        """Feed one event; the decision it led to, if a bar closed and the model decided."""
        stats = self.trader.stats
        before = stats.decisions
        self.trader.on_event(ts_recv_ns, ev)
        if stats.decisions == before:
            return None
        return self.trader.last_signal(ev.symbol)


def make_sandbox(
    model: LoadedModel,
    symbols: tuple[str, ...],
    clock: Clock,
    filters: Mapping[str, SymbolFilters],
    books: Mapping[str, OrderBook],
    paper: PaperConfig | None = None,
    risk: RiskConfig | None = None,
    blocked: Callable[[str], str] = lambda symbol: "",
) -> Sandbox:
    """A fresh sandbox for ``model`` on ``symbols`` (books are read, never changed)."""
    tallies: list[Tally] = []

    def count(_: Portfolio, gate: RiskGate) -> Tally:
        tallies.append(Tally(gate))
        return tallies[0]

    built = paper_loop(
        risk or RiskConfig(), paper or PaperConfig(), clock, SANDBOX_BOOT, filters, listener=count
    )
    gate, exchange, tally = built.gate, built.venue, tallies[0]
    slot = InferenceSlot(model, symbols=symbols)
    trader = Trader(symbols, clock, slot, gate, exchange, filters, books, blocked)
    return Sandbox(trader, exchange, gate, slot, tally, model)


def adopt_risk(target: Trader, source: Trader) -> None:
    """Start ``target``'s 1-minute ATR from ``source``'s (see :meth:`Trader.adopt_risk`)."""
    target.adopt_risk(source)
