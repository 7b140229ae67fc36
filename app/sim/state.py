"""Everything the handlers share, built once from the config and handed to them as the app's
lifespan state (:func:`sim_of`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.requests import HTTPConnection

from app.clock import Clock
from app.sim.account import Account
from app.sim.auth import Credentials
from app.sim.config import SimConfig
from app.sim.driver import make_markets
from app.sim.faults import Faults
from app.sim.history import SymbolHistory
from app.sim.hub import Hub
from app.sim.market import SymbolMarket
from app.sim.orders import Exchange
from app.sim.ratelimit import RateLimiter
from app.sim.recordings import load_exchange_info, load_snapshots, scan_symbols
from app.sim.replay import ReplayStatus
from app.sim.symbols import SymbolSpec, spec_for
from app.sim.userstream import UserStreams


@dataclass
class SimState:
    """The simulator's parts. ``markets`` is empty in replay mode, ``replay`` None in synthetic
    mode (markets generated from the seed).

    The signed side (``exchange``, ``user_streams``, ``limiter``) trades only in synthetic mode: in
    replay mode there is no book to match against and orders are refused as invalid symbols.
    """

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
    credentials: Credentials
    exchange: Exchange
    user_streams: UserStreams
    limiter: RateLimiter
    # The historical endpoints' view of each market, made on first use (app.sim.history_rest).
    histories: dict[str, SymbolHistory] = field(default_factory=dict)

    def now_ms(self) -> int:
        return self.clock.time_ns() // 1_000_000

    def server_time_ms(self) -> int:
        """The time the server admits to (``/fapi/v1/time``, recvWindow): shifted by the fault."""
        return self.now_ms() + self.faults.clock_offset_ms

    def after_step(self, market: SymbolMarket, t_end_ms: int) -> None:
        """Run by the market driver after each market step: matching, stops, funding, expiry."""
        self.exchange.on_step(market, t_end_ms)
        self.user_streams.check_expiry()


def build_state(config: SimConfig, clock: Clock) -> SimState:
    """Create markets (synthetic mode) or read the recording's side files (replay)."""
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
            config.synthetic_symbols,
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
    trading = config.trading
    streams = UserStreams(trading.listen_key_validity_s, clock, faults, config.seed)
    account = Account(specs, trading, config.seed)
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
        credentials=Credentials(*config.credentials),
        exchange=Exchange(markets, account, streams.publish, config.seed),
        user_streams=streams,
        limiter=RateLimiter(trading, clock),
    )


def sim_of(conn: HTTPConnection) -> SimState:
    """The simulator's state, for a request or a WebSocket (the lifespan's ``{"sim": ...}``)."""
    state: SimState = conn.state.sim
    return state
