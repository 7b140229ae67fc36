"""Live-side fixtures: a simulator with alphanumeric keys (as Binance issues them), a client, a
ledger in tmp_path, a gate, and helpers that wait for the simulator's state (bounded)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from app.binance.filters import SymbolFilters, parse_symbol_filters
from app.binance.signed import SignedRest
from app.binance.signing import Credentials
from app.clock import SystemClock
from app.config import LiveConfig, RiskConfig
from app.engine.orders import ClientOrderIds, Order, Side, round_price
from app.engine.portfolio import Portfolio
from app.engine.risk import Approved, Intent, RiskContext, RiskGate
from app.live.ledger import OrderLedger
from tests.simproc import SimHandle, running_sim

KEY = "livetestkey0123456789"
SECRET = "livetestsecret9876543210"
KEY_ARGS = ("--api-key", KEY, "--api-secret", SECRET)
SYMBOL = "BTCUSDT"
FAST = LiveConfig(
    order_timeout_s=2.0,
    keepalive_s=0.3,
    stream_backoff_initial_s=0.05,
    stream_backoff_max_s=0.3,
    reconcile_interval_s=3600.0,
    max_budget_wait_s=0.0,
)
# Wide limits: the tests check the exchange's rules, not the gate's.
RISK = RiskConfig(
    max_position_notional=Decimal("100000"),
    max_leverage=Decimal("50"),
    max_intent_age_ms=0,
)


@pytest.fixture
def live_sim() -> Iterator[SimHandle]:
    with running_sim("--seed", "11", *KEY_ARGS) as handle:
        yield handle


@pytest.fixture
def clock() -> SystemClock:
    return SystemClock()


@pytest.fixture
async def client(live_sim: SimHandle, clock: SystemClock) -> AsyncIterator[SignedRest]:
    c = SignedRest(live_sim.rest_url, Credentials(KEY, SECRET), FAST, clock)
    await c.sync_time()
    yield c
    await c.aclose()


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[OrderLedger]:
    j = OrderLedger(tmp_path / "orders.db")
    yield j
    j.close()


@pytest.fixture
def gate(clock: SystemClock) -> RiskGate:
    return RiskGate(RISK, clock, ClientOrderIds(1))


async def filters_of(client: SignedRest) -> dict[str, SymbolFilters]:
    return parse_symbol_filters(await client.exchange_info())


async def mark_price(client: SignedRest, symbol: str = SYMBOL) -> Decimal:
    for row in await client.position_risk():
        if row["symbol"] == symbol:
            return Decimal(str(row["markPrice"]))
    raise AssertionError(f"no mark for {symbol}")


def entry(
    gate: RiskGate,
    filters: dict[str, SymbolFilters],
    price: Decimal,
    qty: str,
    *,
    side: Side = Side.BUY,
    atr: str = "50",
    equity: Decimal = Decimal("10000"),
) -> Order:
    """A gate-sealed market entry of ``qty`` judged at ``price`` (on the tick grid)."""
    f = filters[SYMBOL]
    at = round_price(price, f.tick_size, side)
    intent = Intent(SYMBOL, side, 0.9, at, Decimal(atr), "test", 0, qty=Decimal(qty))
    account = Portfolio(equity).snapshot(0)
    decision = gate.check(intent, RiskContext(account, f))
    assert isinstance(decision, Approved), decision
    return decision.order


def sim_fills(sim: SimHandle, client_id: str | None = None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = sim.get("/_sim/fills")
    return [r for r in rows if client_id is None or r["clientOrderId"] == client_id]


async def eventually(
    condition: Callable[[], Awaitable[bool]], timeout_s: float = 15.0, what: str = ""
) -> None:
    """Poll ``condition`` (the simulator's state is in another process) until true, bounded."""
    deadline = time.monotonic() + timeout_s
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        await asyncio.sleep(0.05)
