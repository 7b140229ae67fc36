"""Everything the handlers share, built once from the config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.clock import Clock
from app.sim.config import SimConfig
from app.sim.faults import Faults
from app.sim.hub import Hub
from app.sim.live import make_markets
from app.sim.market import SymbolMarket
from app.sim.recordings import load_exchange_info, load_snapshots, scan_symbols
from app.sim.replay import ReplayStatus
from app.sim.symbols import SymbolSpec, spec_for


@dataclass
class SimState:
    """The simulator's parts. ``markets`` is empty in replay mode, ``replay`` None in live mode."""

    config: SimConfig
    clock: Clock
    faults: Faults
    hub: Hub
    specs: dict[str, SymbolSpec]
    markets: dict[str, SymbolMarket]
    start_ms: int
    snapshots: dict[str, dict[str, Any]]
    exchange_info_body: dict[str, Any] | None
    replay: ReplayStatus | None

    def now_ms(self) -> int:
        return self.clock.time_ns() // 1_000_000


def build_state(config: SimConfig, clock: Clock) -> SimState:
    """Create markets (live) or read the recording's side files (replay)."""
    faults = Faults(config.faults, clock)
    hub = Hub(faults, clock)
    now_ms = clock.time_ns() // 1_000_000
    start_ms = now_ms - now_ms % config.step_ms
    markets: dict[str, SymbolMarket] = {}
    specs: dict[str, SymbolSpec] = {}
    snapshots: dict[str, dict[str, Any]] = {}
    info: dict[str, Any] | None = None
    replay: ReplayStatus | None = None
    if config.replay is None:
        markets = make_markets(
            config.live_symbols,
            config.seed,
            start_ms,
            config.step_ms,
            config.funding_interval_s * 1000,
        )
        specs = {symbol: m.spec for symbol, m in markets.items()}
    else:
        replay = ReplayStatus()
        for seen in scan_symbols(config.replay).values():
            specs[seen.symbol] = SymbolSpec(
                seen.symbol,
                seen.price_precision,
                seen.qty_precision,
                1,
                1,
                max(1, seen.price_units),
            )
        for symbol in config.symbols:
            spec = spec_for(symbol)
            specs.setdefault(spec.symbol, spec)
        if config.snapshots is not None:
            snapshots = load_snapshots(config.snapshots)
        if config.exchange_info is not None:
            info = load_exchange_info(config.exchange_info)
    return SimState(
        config=config,
        clock=clock,
        faults=faults,
        hub=hub,
        specs=specs,
        markets=markets,
        start_ms=start_ms,
        snapshots=snapshots,
        exchange_info_body=info,
        replay=replay,
    )
