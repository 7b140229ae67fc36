"""Every stream type on both URL forms, against the reference payloads' keys and value types."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import pytest

from tests.paths import REFERENCE
from tests.sim.wsclient import collect, open_ws, recv_text
from tests.simproc import SimHandle

STREAMS_DIR = REFERENCE / "binance" / "streams"


def _load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((STREAMS_DIR / name).read_text())
    return doc.get("data", doc)


# kind -> (documented payload, the same event recorded live, if we have one: its key order counts)
REFERENCES: dict[str, tuple[str, str | None]] = {
    "aggTrade": ("usdm_aggTrade.json", "REAL_recorded_usdm_combined_aggTrade.json"),
    "bookTicker": ("usdm_bookTicker.json", "REAL_recorded_usdm_combined_bookTicker.json"),
    "depth@100ms": ("usdm_diff_depth.json", "REAL_recorded_usdm_combined_depth_100ms.json"),
    "depth5@100ms": ("usdm_partial_depth.json", None),
    "depth10@100ms": ("usdm_partial_depth.json", None),
    "depth20@100ms": ("usdm_partial_depth.json", None),
    "markPrice@1s": ("usdm_markPriceUpdate.json", None),
    "markPrice": ("usdm_markPriceUpdate.json", None),
}


def _check_payload(kind: str, data: dict[str, Any]) -> None:
    doc_name, real_name = REFERENCES[kind]
    doc = _load(doc_name)
    assert set(data) == set(doc), kind
    assert {k: type(v) for k, v in data.items()} == {k: type(v) for k, v in doc.items()}, kind
    expected_order = list(_load(real_name)) if real_name else list(doc)
    assert list(data) == expected_order, kind
    if kind.startswith("depth"):
        for level in data["b"] + data["a"]:
            assert len(level) == 2
            assert all(isinstance(x, str) for x in level)
        if kind != "depth@100ms":
            levels = int(kind[5:].split("@", maxsplit=1)[0])
            assert len(data["b"]) == len(data["a"]) == levels
    assert data["s"] == "BTCUSDT"


@pytest.mark.parametrize("kind", list(REFERENCES))
@pytest.mark.parametrize("form", ["combined", "raw"])
async def test_stream_payloads(shared_sim: SimHandle, kind: str, form: str) -> None:
    stream = f"btcusdt@{kind}"
    url = (
        f"{shared_sim.ws_url}/stream?streams={stream}"
        if form == "combined"
        else f"{shared_sim.ws_url}/ws/{stream}"
    )
    frames = await collect(url, 1 if kind == "markPrice" else 2, within_s=10)
    for frame in frames:
        if form == "combined":
            assert list(frame) == ["stream", "data"]
            assert frame["stream"] == stream
            data = frame["data"]
        else:
            data = frame
        _check_payload(kind, data)


async def test_mark_price_funding_time(shared_sim: SimHandle) -> None:
    frames = await collect(f"{shared_sim.ws_url}/ws/ethusdt@markPrice@1s", 2, within_s=5)
    for data in frames:
        # The fixture compresses funding to 60 s: next funding is the next whole minute.
        assert data["T"] % 60_000 == 0
        assert 0 < data["T"] - data["E"] <= 60_000
        assert abs(float(data["p"]) / float(data["i"]) - 1) < 0.01
    assert frames[1]["E"] - frames[0]["E"] == 1000


async def test_book_ticker_follows_top_changes(shared_sim: SimHandle) -> None:
    frames = await collect(f"{shared_sim.ws_url}/ws/btcusdt@bookTicker", 30, within_s=10)
    tops = [(f["b"], f["B"], f["a"], f["A"]) for f in frames]
    assert all(a != b for a, b in itertools.pairwise(tops)), "one per change"
    assert all(float(f["b"]) < float(f["a"]) for f in frames)
    us = [f["u"] for f in frames]
    assert us == sorted(us)


async def test_subscribe_requests_and_unknown_streams(shared_sim: SimHandle) -> None:
    url = f"{shared_sim.ws_url}/stream?streams=nosuch@stream/btcusdt@aggTrade"
    async with open_ws(url) as ws:
        await ws.send(
            json.dumps({"method": "SUBSCRIBE", "params": ["ethusdt@bookTicker"], "id": 1})
        )
        await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 2}))
        replies: dict[int, Any] = {}
        seen: set[str] = set()
        async with asyncio.timeout(10):
            while len(replies) < 2 or "ethusdt@bookTicker" not in seen:
                msg = json.loads(await recv_text(ws))
                if "id" in msg:
                    replies[msg["id"]] = msg
                else:
                    seen.add(msg["stream"])
        assert replies[1] == {"result": None, "id": 1}
        assert replies[2] == {
            "result": ["btcusdt@aggTrade", "ethusdt@bookTicker", "nosuch@stream"],
            "id": 2,
        }
        assert seen <= {"btcusdt@aggTrade", "ethusdt@bookTicker"}
