"""The decision loop's execution side, built one way: risk gate → paper venue (with its portfolio).

The engine process (``app.node.engine``), the benchmark (``app.node.bench``) and every shadow or
backtest sandbox (``app.models.sandbox``) build their gate and paper venue here, so a change to
how the two are wired (a new check, a new listener) reaches all of them at once. The live venue is
built by ``app.live`` around the same gate; the :class:`~app.engine.trader.Trader` is built by
the caller, which knows where its blocking conditions come from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from app.binance.filters import SymbolFilters
from app.binance.margin import MarginSettings
from app.clock import Clock
from app.config import PaperConfig, RiskConfig
from app.engine.orders import ClientOrderIds
from app.engine.paper import PaperExchange, PaperListener
from app.engine.portfolio import Portfolio, Position
from app.engine.risk import BreakerState, RiskEvent, RiskGate


@dataclass(frozen=True)
class PaperLoop:
    """A gate and the paper venue that trades through it."""

    gate: RiskGate
    portfolio: Portfolio
    venue: PaperExchange


def _ignore(_: object) -> None:
    return None


def paper_loop(
    risk: RiskConfig,
    paper: PaperConfig,
    clock: Clock,
    boot: int,
    filters: Mapping[str, SymbolFilters],
    *,
    breakers: BreakerState | None = None,
    positions: Iterable[Position] = (),
    on_event: Callable[[RiskEvent], None] = _ignore,
    on_state: Callable[[BreakerState], None] = _ignore,
    listener: Callable[[Portfolio, RiskGate], PaperListener] | None = None,
    margin: MarginSettings | None = None,
) -> PaperLoop:
    """The gate (client order ids ``app-<boot>-<seq>``, breakers restored from ``breakers``) and
    a paper venue whose account starts at ``paper.initial_balance`` with ``positions``.

    ``listener`` builds the venue's listener from the portfolio and gate (the engine's makes
    paper trading durable; a sandbox's counts its orders). ``margin``: the account's leverage,
    margin type and brackets, for margin checks and liquidation at the mark (None: neither).
    """
    gate = RiskGate(
        risk, clock, ClientOrderIds(boot), state=breakers, on_event=on_event, on_state=on_state
    )
    book = Portfolio(paper.initial_balance, positions)
    venue = PaperExchange(
        paper,
        clock,
        gate,
        book,
        filters,
        listener(book, gate) if listener is not None else None,
        margin=margin,
    )
    return PaperLoop(gate, book, venue)
