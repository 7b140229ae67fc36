"""Replay mode: recordings served frame for frame, in order, with the recorded REST side files."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.paths import REFERENCE
from tests.sim.wsclient import collect, open_ws, recv_text
from tests.simproc import running_sim

MARKET_DATA = REFERENCE / "market-data"
JSONL = MARKET_DATA / "usdm_2021-07-22_ws.jsonl"
SNAPSHOTS = MARKET_DATA / "usdm_2021-07-22_rest_depth_snapshots.txt"
EXCHANGE_INFO = MARKET_DATA / "usdm_2021-07-22_exchangeInfo.txt"


def _recording() -> list[dict[str, Any]]:
    return [json.loads(line) for line in JSONL.read_text().splitlines() if line.strip()]


def _all_streams(records: list[dict[str, Any]]) -> list[str]:
    return sorted({r["stream"] for r in records})


async def test_jsonl_replay_delivers_every_frame_in_order() -> None:
    records = _recording()
    streams = _all_streams(records)
    assert len(records) == 1535
    assert len(streams) == 16
    with running_sim(
        "--replay",
        str(JSONL),
        "--speed",
        "1000",
        "--snapshots",
        str(SNAPSHOTS),
        "--exchange-info",
        str(EXCHANGE_INFO),
    ) as sim:
        frames = await collect(
            f"{sim.ws_url}/stream?streams={'/'.join(streams)}", 1535, within_s=30
        )
        assert [(f["stream"], f["data"]) for f in frames] == [
            (r["stream"], r["data"]) for r in records
        ]
        stats = sim.stats()
        assert stats["mode"] == "replay"
        assert stats["replay"]["frames"] == 1535
        assert stats["frames_sent_total"] == 1535

        # The recorded snapshots and exchangeInfo are served as recorded.
        recorded = {
            line.split("symbol=")[1].split("&")[0]: json.loads(line.split(": ", 1)[1])
            for line in SNAPSHOTS.read_text().splitlines()
            if line.strip()
        }
        for symbol, body in recorded.items():
            served = sim.get(f"/fapi/v1/depth?symbol={symbol}&limit=1000")
            assert served == body
            top = sim.get(f"/fapi/v1/depth?symbol={symbol}&limit=5")
            assert top["bids"] == body["bids"][:5]
            assert top["lastUpdateId"] == body["lastUpdateId"]
        info = sim.get("/fapi/v1/exchangeInfo")
        assert len(info["symbols"]) == 122


async def test_replay_raw_form_and_synthesized_exchange_info() -> None:
    records = [r for r in _recording() if r["stream"] == "sushiusdt@bookTicker"]
    with running_sim("--replay", str(JSONL), "--speed", "0") as sim:
        frames = await collect(f"{sim.ws_url}/ws/sushiusdt@bookTicker", len(records), within_s=30)
        assert frames == [r["data"] for r in records]
        info = sim.get("/fapi/v1/exchangeInfo")
        specs = {s["symbol"]: s for s in info["symbols"]}
        assert set(specs) == {"SUSHIUSDT", "AKROUSDT", "KEEPUSDT", "CTKUSDT"}
        assert specs["SUSHIUSDT"]["pricePrecision"] == 4
        tick = next(f for f in specs["SUSHIUSDT"]["filters"] if f["filterType"] == "PRICE_FILTER")
        assert tick["tickSize"] == "0.0001"


async def test_replayed_diff_depth_syncs_with_recorded_snapshots() -> None:
    """The reference's own oracle, through the simulator: four books, no sequence gap."""
    records = _recording()
    depth_streams = sorted({r["stream"] for r in records if "@depth" in r["stream"]})
    expected = sum(1 for r in records if r["stream"] in depth_streams)
    with running_sim(
        "--replay", str(JSONL), "--speed", "1000", "--snapshots", str(SNAPSHOTS)
    ) as sim:
        frames = await collect(
            f"{sim.ws_url}/stream?streams={'/'.join(depth_streams)}", expected, within_s=30
        )
        synced: dict[str, int] = {}
        prev: dict[str, int] = {}
        for frame in frames:
            data = frame["data"]
            symbol = data["s"]
            last_id = synced.get(symbol)
            if last_id is None:
                last_id = synced[symbol] = sim.get(f"/fapi/v1/depth?symbol={symbol}")[
                    "lastUpdateId"
                ]
            if data["u"] < last_id:
                continue
            if symbol not in prev:
                assert data["U"] <= last_id <= data["u"]
            else:
                assert data["pu"] == prev[symbol], f"gap in {symbol}"
            prev[symbol] = data["u"]
        assert set(prev) == {"SUSHIUSDT", "AKROUSDT", "KEEPUSDT", "CTKUSDT"}


async def test_rawlog_database_replay(tmp_path: Path) -> None:
    rawlog = pytest.importorskip("app.store.rawlog")
    db = pytest.importorskip("app.store.db")
    schema = pytest.importorskip("app.store.schema")
    records = _recording()[:300]
    frames: list[tuple[int, bytes]] = []
    for r in records:
        body = json.dumps({"stream": r["stream"], "data": r["data"]}, separators=(",", ":"))
        frames.append((int(r["recv_ts"] * 1e9), body.encode()))
    frames.insert(50, (frames[49][0], b"\x00not json, recorded as received"))
    path = tmp_path / "market_2021_29.db"
    conn = sqlite3.connect(path)
    db.migrate(conn, schema.MARKET_MIGRATIONS)
    for i in range(0, len(frames), 100):
        block = frames[i : i + 100]
        conn.execute(
            "INSERT INTO raw_blocks (ts_first_ns, ts_last_ns, frames, codec, body)"
            " VALUES (?, ?, ?, ?, ?)",
            (block[0][0], block[-1][0], len(block), rawlog.CODEC, rawlog.encode_block(block)),
        )
    conn.commit()
    conn.close()
    streams = _all_streams(records)
    with running_sim("--replay", str(path), "--speed", "0") as sim:
        url = f"{sim.ws_url}/stream?streams={'/'.join(streams)}"
        async with open_ws(url) as ws:
            got = []
            async with asyncio.timeout(30):
                while len(got) < len(records):
                    got.append(await recv_text(ws))
        # Frames from the engine's recording are served byte for byte.
        assert got == [f.decode() for _, f in frames if f.startswith(b"{")]
