"""Faults injected at start (CLI flags) and mid-run (``POST /_sim/faults``)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tests.sim.wsclient import open_ws, recv_text
from tests.simproc import SimHandle, running_sim

STREAM = "btcusdt@depth20@100ms"  # one frame every 100 ms, always
HANG_S = 30.0  # upper bounds on waits: only a hang takes this long, even on 2 busy cores
PONG_DELAY_S = 3.0


async def _until_closed(ws: ClientConnection) -> None:
    async with asyncio.timeout(HANG_S):
        while True:
            await ws.recv()


async def test_drop_after_applies_to_open_connections(sim: SimHandle) -> None:
    async with open_ws(f"{sim.ws_url}/ws/{STREAM}") as ws:
        await recv_text(ws)
        opened = time.monotonic()
        sim.set_faults(drop_after_s=1.0)
        with pytest.raises(ConnectionClosed) as info:
            await _until_closed(ws)
        elapsed = time.monotonic() - opened
        assert info.value.rcvd is not None
        assert info.value.rcvd.code == 1001
        # Not before the deadline; the upper bound only catches a hang (2 shared cores).
        assert 0.5 <= elapsed < HANG_S
    assert sim.stats()["dropped_by_fault"] == 1
    assert sim.set_faults(drop_after_s=None)["drop_after_s"] is None


async def test_drop_after_from_the_command_line() -> None:
    with running_sim("--drop-after-s", "0.5") as sim:
        for _ in range(2):  # every new connection gets its own deadline
            async with open_ws(f"{sim.ws_url}/stream?streams={STREAM}") as ws:
                started = time.monotonic()
                with pytest.raises(ConnectionClosed):
                    await _until_closed(ws)
                assert 0.3 <= time.monotonic() - started < HANG_S


async def test_stall_stops_frames_and_keeps_the_connection(sim: SimHandle) -> None:
    async with open_ws(f"{sim.ws_url}/ws/{STREAM}") as ws:
        await recv_text(ws)
        faults = sim.set_faults(stall=True)
        assert faults["stall"] is True
        # Whatever was already in flight may still arrive; after that, nothing.
        async with asyncio.timeout(2):
            while True:
                try:
                    async with asyncio.timeout(0.5):
                        await ws.recv()
                except TimeoutError:
                    break
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.0):
                await ws.recv()
        await asyncio.wait_for(await ws.ping(), 5)  # still open and answering
        assert sim.stats()["withheld_by_stall"] > 0
        sim.set_faults(stall=False)
        await recv_text(ws, within_s=5)


async def test_stall_for_ends_by_itself(sim: SimHandle) -> None:
    async with open_ws(f"{sim.ws_url}/ws/{STREAM}") as ws:
        await recv_text(ws)
        faults = sim.set_faults(stall_for_s=1.0)
        assert faults["stall"] is True
        assert 0 < faults["stall_for_s"] <= 1.0
        stalled_at = time.monotonic()
        async with asyncio.timeout(5):
            while True:
                await ws.recv()
                if time.monotonic() - stalled_at > 0.9:
                    break
        assert sim.get("/_sim/faults")["stall"] is False


async def test_malformed_every_nth_frame(sim: SimHandle) -> None:
    sim.set_faults(malformed_every=4)
    async with open_ws(f"{sim.ws_url}/ws/{STREAM}") as ws:
        texts = [await recv_text(ws) for _ in range(16)]
    bad = []
    for i, text in enumerate(texts, 1):
        try:
            json.loads(text)
        except ValueError:
            bad.append(i)
    assert bad == [4, 8, 12, 16]
    assert sim.stats()["malformed_sent"] >= 4


async def _ping_rtt(ws: object) -> float:
    started = time.monotonic()
    waiter = await ws.ping()  # type: ignore[attr-defined]
    await asyncio.wait_for(waiter, 10)
    return time.monotonic() - started


async def test_pong_delay(sim: SimHandle) -> None:
    # Room for the ~30 frames that arrive while the pong waits: with a full queue the client
    # stops reading and would never see the pong.
    async with open_ws(f"{sim.ws_url}/ws/{STREAM}", max_queue=256) as ws:
        fast = await _ping_rtt(ws)
        sim.set_faults(pong_delay_s=PONG_DELAY_S)
        slow = await _ping_rtt(ws)
        frames_meanwhile = await recv_text(ws)  # data keeps flowing while the pong waits
        sim.set_faults(pong_delay_s=0)
        again = await _ping_rtt(ws)
    # The delayed pong waits at least the delay; the others are not delayed (a loopback round
    # trip under a busy machine stays far below the 3 s delay).
    assert PONG_DELAY_S <= slow < HANG_S
    assert fast < PONG_DELAY_S
    assert again < PONG_DELAY_S
    assert frames_meanwhile
