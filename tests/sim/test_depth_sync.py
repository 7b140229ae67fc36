"""Binance's documented diff-depth sync against the simulator: zero gaps, and a REST snapshot
taken later matches the book rebuilt from the stream exactly."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal
from typing import Any

import httpx

from tests.sim.wsclient import open_ws, recv_text
from tests.simproc import SimHandle

Book = dict[str, dict[Decimal, Decimal]]


def _apply(book: Book, event: dict[str, Any]) -> None:
    for side, key in (("bids", "b"), ("asks", "a")):
        levels = book[side]
        for price, qty in event[key]:
            if Decimal(qty) == 0:
                levels.pop(Decimal(price), None)
            else:
                levels[Decimal(price)] = Decimal(qty)


def _from_snapshot(snapshot: dict[str, Any]) -> Book:
    return {side: {Decimal(p): Decimal(q) for p, q in snapshot[side]} for side in ("bids", "asks")}


async def test_diff_depth_syncs_with_no_gap(shared_sim: SimHandle) -> None:
    url = f"{shared_sim.ws_url}/ws/btcusdt@depth@100ms"
    async with open_ws(url) as ws, httpx.AsyncClient(base_url=shared_sim.rest_url) as http:
        buffered = [json.loads(await recv_text(ws))]  # buffer before fetching the snapshot
        snapshot = (
            await http.get("/fapi/v1/depth", params={"symbol": "BTCUSDT", "limit": 1000})
        ).json()
        last_id = snapshot["lastUpdateId"]
        book = _from_snapshot(snapshot)
        prev_u: int | None = None
        applied = 0
        deadline = time.monotonic() + 3.0
        check: dict[str, Any] | None = None
        async with asyncio.timeout(15):
            while time.monotonic() < deadline or check is None or prev_u < check["lastUpdateId"]:
                event = buffered.pop(0) if buffered else json.loads(await recv_text(ws))
                if event["u"] < last_id:
                    continue  # older than the snapshot: drop
                if prev_u is None:
                    assert event["U"] <= last_id <= event["u"], "first event must bridge"
                else:
                    assert event["pu"] == prev_u, "gap in the diff-depth sequence"
                _apply(book, event)
                prev_u = event["u"]
                applied += 1
                if check is None and time.monotonic() >= deadline:
                    check = (
                        await http.get(
                            "/fapi/v1/depth", params={"symbol": "BTCUSDT", "limit": 1000}
                        )
                    ).json()
                if check is not None and prev_u == check["lastUpdateId"]:
                    assert book == _from_snapshot(check)
                    break
        assert applied >= 20
        assert check is not None
        assert prev_u == check["lastUpdateId"]
        best_bid, best_ask = max(book["bids"]), min(book["asks"])
        assert best_bid < best_ask
        assert len(book["bids"]) >= 20
        assert len(book["asks"]) >= 20
