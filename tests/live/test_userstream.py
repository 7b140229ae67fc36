"""The user-data stream: keep-alive outlives the listenKey's validity; a dropped stream comes back
and no fill is lost (checked against the simulator's own fill list)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from app.binance.signed import SignedRest
from app.binance.signing import Credentials
from app.clock import SystemClock
from app.engine.risk import RiskGate
from app.live.ledger import OrderLedger
from app.live.userstream import UserStream
from app.live.venue import LiveVenue
from tests.live.conftest import (
    FAST,
    KEY,
    KEY_ARGS,
    SECRET,
    SYMBOL,
    entry,
    eventually,
    filters_of,
    mark_price,
    sim_fills,
)
from tests.simproc import SimHandle, running_sim


@pytest.fixture
def short_key_sim() -> SimHandle:  # type: ignore[misc]
    # listenKeys expire after 1 s here: only keep-alives keep the stream up.
    with running_sim("--seed", "5", *KEY_ARGS, "--listen-key-validity-s", "1") as handle:
        yield handle


@contextlib.asynccontextmanager
async def _running(stream: UserStream) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(stream.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_keepalive_keeps_the_listen_key_alive(
    short_key_sim: SimHandle, clock: SystemClock
) -> None:
    client = SignedRest(short_key_sim.rest_url, Credentials(KEY, SECRET), FAST, clock)
    events: list[dict[str, object]] = []

    async def on_event(doc: dict[str, object]) -> None:
        events.append(doc)

    async def nothing() -> None:
        return None

    stream = UserStream(client, short_key_sim.ws_url, FAST, on_event, nothing)
    try:
        async with _running(stream):
            await asyncio.wait_for(stream.connected.wait(), 10)

            async def kept() -> bool:
                return stream.keepalives >= 8  # 8 × 0.3 s = 2.4 s, over twice the validity

            await eventually(kept, 10, "keep-alives")
            assert stream.connects == 1  # never expired, never reconnected
            assert short_key_sim.stats()["user_streams"]["expired"] == 0
    finally:
        await client.aclose()


async def test_dropped_stream_is_reestablished_with_no_lost_fill(
    live_sim: SimHandle,
    client: SignedRest,
    ledger: OrderLedger,
    gate: RiskGate,
    clock: SystemClock,
) -> None:
    filters = await filters_of(client)
    cfg = replace(FAST, keepalive_s=60.0)
    venue = LiveVenue(client, ledger, gate, clock, filters, cfg, (SYMBOL,))
    venue.release()

    async def connected() -> None:
        await venue.resync_open()
        await venue.recover_fills()

    stream = UserStream(client, live_sim.ws_url, cfg, venue.on_user_event, connected)
    async with _running(stream):
        await asyncio.wait_for(stream.connected.wait(), 10)
        first = entry(gate, filters, await mark_price(client), "0.010")
        await venue.place(first)
        live_sim.set_faults(drop_user_stream=True)

        async def dropped() -> bool:
            return not stream.connected.is_set()

        await eventually(dropped, 10, "stream dropped")
        # Filled while no stream is up: its ORDER_TRADE_UPDATE reaches nobody.
        exit_order = gate.exit_order(SYMBOL, first.qty, "exit:stop", clock.time_ns())
        assert exit_order is not None
        await venue.place(exit_order)
        missed = {f["id"] for f in sim_fills(live_sim, exit_order.client_id)}
        assert missed
        recorded = {int(f["trade_id"]) for f in await ledger.fills()}
        assert not missed & recorded
        connects = stream.connects
        live_sim.set_faults(drop_user_stream=False)

        async def back() -> bool:
            return stream.connects > connects and stream.connected.is_set()

        await eventually(back, 15, "stream re-established")
        sim_ids = {int(f["id"]) for f in sim_fills(live_sim)}
        rows = await ledger.fills()
        assert {int(f["trade_id"]) for f in rows} == sim_ids
        recovered = [f for f in rows if int(f["trade_id"]) in missed]
        assert {f["source"] for f in recovered} == {"userTrades"}
        assert all(f["client_id"] == exit_order.client_id for f in recovered)
        assert venue.portfolio.position(SYMBOL).qty == 0
