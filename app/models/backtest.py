"""Backtests: the engine's own decision loop (:class:`~app.engine.trader.Trader`, risk gate,
paper exchange) over a recording or a simulator series, on a manual clock set to each event's
receive time.

Figures (money as exact decimal strings): PnL, fees, funding, orders, fills, closed round trips,
hit rate (winning round trips over all), Sharpe of the equity samples' returns (annualised from
the sampling interval), maximum drawdown (fraction of the running peak) and exposure (share of
1-second checks with a position open). The risk ATR warms from the data itself, so the first
~15 minutes make no entries: a 30-second recording is a smoke test only.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from app.clock import ManualClock
from app.config import PaperConfig, RiskConfig
from app.engine.events import DepthUpdate
from app.engine.inference import LoadedModel
from app.engine.rest import SymbolFilters
from app.models.replay import ReplayBooks, Replayed
from app.models.sandbox import make_sandbox

_YEAR_S = 365 * 86_400


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
    sharpe: float | None
    max_drawdown: float
    exposure: float
    span_s: float
    wall_s: float
    skipped: Mapping[str, int]

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in self.__dict__.items():
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


def _sharpe(equity: list[Decimal], interval_s: float) -> float | None:
    if len(equity) < 3:
        return None
    rets = [float(b / a - 1) for a, b in zip(equity, equity[1:], strict=False) if a > 0]
    mean = sum(rets) / len(rets)
    var = sum((r - mean) ** 2 for r in rets) / (len(rets) - 1)
    if var <= 0:
        return None
    return mean / math.sqrt(var) * math.sqrt(_YEAR_S / interval_s)


def _max_drawdown(equity: list[Decimal]) -> float:
    peak, worst = Decimal(0), 0.0
    for e in equity:
        peak = max(peak, e)
        if peak > 0:
            worst = max(worst, float((peak - e) / peak))
    return worst


def run_backtest(
    model: LoadedModel,
    events: Iterable[Replayed],
    filters: Mapping[str, SymbolFilters],
    symbols: tuple[str, ...],
    books: ReplayBooks | None = None,
    paper: PaperConfig | None = None,
    risk: RiskConfig | None = None,
) -> BacktestResult:
    """Run ``model`` through the decision loop over ``events`` with paper execution."""
    started = time.perf_counter()
    paper = paper or PaperConfig()
    clock = ManualClock(0)
    books = books or ReplayBooks()
    box = make_sandbox(model, symbols, clock, filters, books.books, paper, risk)
    wanted = {s.upper() for s in symbols}
    n = checks = exposed = 0
    first_ns = last_ns = next_check = 0
    for ts_ns, stream, ev in events:
        if ev.symbol not in wanted:
            continue
        if not n:
            first_ns = next_check = ts_ns
        n += 1
        clock.now_ns = last_ns = ts_ns
        if type(ev) is DepthUpdate:
            books.on_event(stream, ev)
        box.trader.on_event(ts_ns, ev)
        if ts_ns >= next_check:
            checks += 1
            next_check = ts_ns + 1_000_000_000
            if any(p.qty for p in box.exchange.portfolio.positions()):
                exposed += 1
    snap = box.exchange.snapshot(last_ns)
    tally = box.tally
    curve = [p.equity for p in tally.equity] + [snap.equity]
    stats = box.trader.stats
    return BacktestResult(
        model_version=model.contract.model_version,
        symbols=tuple(sorted(wanted)),
        events=n,
        decisions=stats.decisions,
        signals=stats.long_signals + stats.short_signals,
        orders=tally.orders,
        fills=tally.fills,
        trades=tally.trades,
        hit_rate=tally.wins / tally.trades if tally.trades else None,
        initial_equity=paper.initial_balance,
        final_equity=snap.equity,
        pnl=snap.equity - paper.initial_balance,
        fees=snap.fees,
        funding=snap.funding,
        sharpe=_sharpe(curve, paper.equity_interval_s),
        max_drawdown=_max_drawdown([paper.initial_balance, *curve]),
        exposure=exposed / checks if checks else 0.0,
        span_s=(last_ns - first_ns) / 1e9,
        wall_s=time.perf_counter() - started,
        skipped=dict(stats.skipped),
    )


def format_result(r: BacktestResult) -> str:
    """The human-readable summary ``appliance backtest`` prints."""
    d = r.as_dict()
    return "\n".join(f"{k:15s} {v}" for k, v in d.items())
