"""Small WebSocket client helpers for the simulator tests."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import ClientConnection, connect


def open_ws(url: str, **kw: Any) -> Any:
    """``websockets`` connect with test defaults (no client keepalive, no size limit)."""
    kw.setdefault("ping_interval", None)
    kw.setdefault("max_size", None)
    kw.setdefault("open_timeout", 10)
    return connect(url, **kw)


async def recv_text(ws: ClientConnection, within_s: float = 5.0) -> str:
    async with asyncio.timeout(within_s):
        msg = await ws.recv()
    assert isinstance(msg, str), "Binance sends text frames"
    return msg


async def collect(url: str, count: int, within_s: float = 10.0) -> list[dict[str, Any]]:
    """The first ``count`` frames at ``url``, decoded."""
    out: list[dict[str, Any]] = []
    async with open_ws(url) as ws:
        async with asyncio.timeout(within_s):
            while len(out) < count:
                out.append(json.loads(await ws.recv()))
    return out


async def until(url: str, done: Any, within_s: float = 10.0) -> list[dict[str, Any]]:
    """Frames at ``url`` until ``done(frames)`` is true."""
    out: list[dict[str, Any]] = []
    async with open_ws(url) as ws:
        async with asyncio.timeout(within_s):
            while not done(out):
                out.append(json.loads(await ws.recv()))
    return out
