"""The market driver: steps every symbol's synthetic market on a fixed simulated cadence, paced by
the clock (the other driver, :mod:`app.sim.replay`, plays a recording instead)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from app.clock import Clock
from app.sim.market import Sink, SymbolMarket
from app.sim.symbols import spec_for

log = logging.getLogger(__name__)

# Further behind than this (a suspended machine), the simulated time jumps instead of bursting.
_MAX_LAG_STEPS = 50


def make_markets(
    symbols: tuple[str, ...], seed: int, start_ms: int, step_ms: int, funding_interval_ms: int
) -> dict[str, SymbolMarket]:
    """One market per symbol (upper-case keys), all starting at ``start_ms``."""
    markets: dict[str, SymbolMarket] = {}
    for symbol in symbols:
        spec = spec_for(symbol)
        markets[spec.symbol] = SymbolMarket(spec, seed, start_ms, step_ms, funding_interval_ms)
    return markets


async def drive_markets(
    markets: dict[str, SymbolMarket],
    sink: Sink,
    clock: Clock,
    start_ms: int,
    step_ms: int,
    after_step: Callable[[SymbolMarket, int], None] | None = None,
) -> None:
    """Step forever: step ``i`` covers ``start_ms + i*step_ms`` and runs at that monotonic time.

    ``after_step(market, t_end_ms)`` runs after each symbol's step (the signed side's matching).
    """
    step_ns = step_ms * 1_000_000
    mono0 = clock.monotonic_ns()
    t0 = start_ms
    i = 0
    ordered = list(markets.values())
    while True:
        lag_ns = clock.monotonic_ns() - (mono0 + i * step_ns)
        if lag_ns < 0:
            await asyncio.sleep(-lag_ns / 1e9)
        elif lag_ns > _MAX_LAG_STEPS * step_ns:
            skipped = lag_ns // step_ns
            log.warning("sim market %d steps behind: skipping ahead", skipped)
            t0 += skipped * step_ms
            mono0 += skipped * step_ns
        else:
            # Behind by a little: catch up, but let the senders run between steps.
            await asyncio.sleep(0)
        t_start = t0 + i * step_ms
        for market in ordered:
            market.step(t_start, sink)
            if after_step is not None:
                after_step(market, t_start + step_ms)
        i += 1
