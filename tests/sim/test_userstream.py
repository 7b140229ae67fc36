"""The user-data stream: listenKey lifecycle, fill events, the drop fault, expiry."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tests.sim.signing import SIM_ARGS, Signed
from tests.sim.wsclient import open_ws, recv_text
from tests.simproc import SimHandle, running_sim


@pytest.fixture(scope="module")
def stream_sim() -> Iterator[SimHandle]:
    with running_sim("--seed", "13", *SIM_ARGS) as handle:
        yield handle


@pytest.fixture
def client(stream_sim: SimHandle) -> Iterator[Signed]:
    stream_sim.set_faults(drop_user_stream=False)
    c = Signed(stream_sim.rest_url)
    yield c
    c.close()
    stream_sim.set_faults(drop_user_stream=False)


async def _read_all(ws: ClientConnection, frames: list[str], within_s: float) -> None:
    async with asyncio.timeout(within_s):
        while True:
            frames.append(str(await ws.recv()))


async def _until_closed(ws: ClientConnection, within_s: float = 5.0) -> list[str]:
    """Every frame until the server closes the connection (which it must, in time)."""
    frames: list[str] = []
    with pytest.raises(ConnectionClosed):
        await _read_all(ws, frames, within_s)
    return frames


def test_listen_key_create_keepalive_delete(client: Signed) -> None:
    key = client.ok("POST", "/fapi/v1/listenKey", signed=False)["listenKey"]
    assert len(key) == 64
    assert key.isalnum()
    # POST with an active key returns it (and extends it); PUT keeps it alive.
    assert client.ok("POST", "/fapi/v1/listenKey", signed=False)["listenKey"] == key
    assert client.ok("PUT", "/fapi/v1/listenKey", signed=False)["listenKey"] == key
    assert client.ok("DELETE", "/fapi/v1/listenKey", signed=False) == {}
    gone = client.call("PUT", "/fapi/v1/listenKey", signed=False)
    assert gone.body == {"code": -1125, "msg": "This listenKey does not exist."}
    fresh = client.ok("POST", "/fapi/v1/listenKey", signed=False)["listenKey"]
    assert fresh != key


async def _events(ws: ClientConnection, done: Any, within_s: float = 5.0) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    async with asyncio.timeout(within_s):
        while not done(out):
            out.append(json.loads(await ws.recv()))
    return out


async def test_fill_events_arrive(stream_sim: SimHandle, client: Signed) -> None:
    key = client.ok("POST", "/fapi/v1/listenKey", signed=False)["listenKey"]
    async with open_ws(f"{stream_sim.ws_url}/ws/{key}") as ws:
        placed = client.ok(
            "POST",
            "/fapi/v1/order",
            {
                "symbol": "BTCUSDT",
                "side": "BUY",
                "type": "MARKET",
                "quantity": "0.010",
                "newClientOrderId": "stream-1",
                "newOrderRespType": "RESULT",
            },
        )

        def filled(events: list[dict[str, Any]]) -> bool:
            kinds = [e["e"] for e in events]
            return (
                any(e["e"] == "ORDER_TRADE_UPDATE" and e["o"]["X"] == "FILLED" for e in events)
                and "ACCOUNT_UPDATE" in kinds
            )

        events = await _events(ws, filled)
    orders = [e["o"] for e in events if e["e"] == "ORDER_TRADE_UPDATE"]
    assert orders[0]["x"] == "NEW"
    assert orders[0]["c"] == "stream-1"
    trades = [o for o in orders if o["x"] == "TRADE"]
    assert trades
    assert all(o["i"] == placed["orderId"] and o["N"] == "USDT" for o in trades)
    assert sum(Decimal(o["l"]) for o in trades) == Decimal("0.010")
    assert trades[-1]["z"] == "0.010"
    assert trades[-1]["X"] == "FILLED"
    fills = [f for f in stream_sim.get("/_sim/fills") if f["orderId"] == placed["orderId"]]
    assert [Decimal(o["n"]) for o in trades] == [Decimal(f["commission"]) for f in fills]
    assert [o["t"] for o in trades] == [f["id"] for f in fills]
    update = next(e for e in events if e["e"] == "ACCOUNT_UPDATE")
    assert update["a"]["m"] == "ORDER"
    assert update["a"]["B"][0]["a"] == "USDT"
    position = update["a"]["P"][0]
    assert (position["s"], position["ps"]) == ("BTCUSDT", "BOTH")
    assert Decimal(position["pa"]) > 0
    client.ok(
        "POST",
        "/fapi/v1/order",
        {"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET", "quantity": "0.010"},
    )


async def test_drop_user_stream_fault(stream_sim: SimHandle, client: Signed) -> None:
    key = client.ok("POST", "/fapi/v1/listenKey", signed=False)["listenKey"]
    async with open_ws(f"{stream_sim.ws_url}/ws/{key}") as ws:
        # An event arriving proves the connection is registered before the fault is set.
        client.ok("POST", "/fapi/v1/leverage", {"symbol": "ETHUSDT", "leverage": 15})
        assert json.loads(await recv_text(ws))["e"] == "ACCOUNT_CONFIG_UPDATE"
        stream_sim.set_faults(drop_user_stream=True)
        await _until_closed(ws)
        assert ws.close_code == 1001
    async with open_ws(f"{stream_sim.ws_url}/ws/{key}") as ws:  # refused while it lasts
        await _until_closed(ws)
    stream_sim.set_faults(drop_user_stream=False)
    async with open_ws(f"{stream_sim.ws_url}/ws/{key}") as ws:
        client.ok("POST", "/fapi/v1/leverage", {"symbol": "ETHUSDT", "leverage": 10})
        event = json.loads(await recv_text(ws))
    assert event["e"] == "ACCOUNT_CONFIG_UPDATE"
    assert event["ac"] == {"s": "ETHUSDT", "l": 10}
    assert stream_sim.stats()["user_streams"]["dropped_by_fault"] >= 2


async def test_listen_key_expires_when_not_kept_alive() -> None:
    with running_sim("--listen-key-validity-s", "1", *SIM_ARGS) as sim:
        client = Signed(sim.rest_url)
        try:
            key = client.ok("POST", "/fapi/v1/listenKey", signed=False)["listenKey"]
            async with open_ws(f"{sim.ws_url}/ws/{key}") as ws:
                frames = await _until_closed(ws, within_s=5)
            expired = [json.loads(f) for f in frames]
            assert expired[-1]["e"] == "listenKeyExpired"
            assert expired[-1]["listenKey"] == key
            assert int(expired[-1]["E"]) > 0
            gone = client.call("PUT", "/fapi/v1/listenKey", signed=False)
            assert gone.code == -1125
            assert sim.stats()["user_streams"]["expired"] == 1
        finally:
            client.close()
