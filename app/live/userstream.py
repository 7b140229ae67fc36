"""The user-data stream: a listenKey kept alive, a WebSocket on ``/ws/<listenKey>``, reconnects.

Lifecycle (USD-M REST listenKey, as the simulator serves it):

1. ``POST /fapi/v1/listenKey`` creates the key (or returns the active one);
2. connect ``<ws>/ws/<listenKey>``; once connected, ``on_connected()`` runs, and the venue uses it
   to recover what it may have missed while not connected (``userTrades``/order queries), so a
   fill made while the stream was down is never lost: the stream covers everything after the
   connection, REST everything before;
3. ``PUT /fapi/v1/listenKey`` every ``keepalive_s`` (Binance: 30 minutes; a key expires 60
   minutes after its last keep-alive);
4. a closed connection, a ``listenKeyExpired`` event or a keep-alive refused with -1125 ends the
   connection; after a jittered backoff the loop starts again at 1 with a fresh key.

Events are handed, decoded, to ``on_event`` in the order received.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from app.binance.signed import ExchangeClient
from app.config import LiveConfig
from app.errors import ExchangeApiError, TransientError

log = logging.getLogger(__name__)

EventHandler = Callable[[dict[str, Any]], Awaitable[None]]


class UserStream:
    """Runs the user-data stream until cancelled (see the module docstring)."""

    def __init__(
        self,
        client: ExchangeClient,
        ws_base: str,
        cfg: LiveConfig,
        on_event: EventHandler,
        on_connected: Callable[[], Awaitable[None]],
    ) -> None:
        self._client = client
        self._ws_base = ws_base.rstrip("/")
        self._cfg = cfg
        self._on_event = on_event
        self._on_connected = on_connected
        self.connected = asyncio.Event()
        self.connects = 0
        self.keepalives = 0
        self.last_end = ""

    async def run(self) -> None:
        """Connect, serve, reconnect, forever (cancel to stop)."""
        delay = self._cfg.stream_backoff_initial_s
        while True:
            try:
                served = await self._session()
                self.last_end = served
            except (OSError, TimeoutError, WebSocketException, TransientError) as exc:
                self.last_end = f"{type(exc).__name__}: {exc}"
            finally:
                self.connected.clear()
            log.info("user stream ended (%s); reconnecting in %.1f s", self.last_end, delay)
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))  # jitter
            delay = min(delay * 2, self._cfg.stream_backoff_max_s)
            if self.last_end.startswith("served"):
                delay = self._cfg.stream_backoff_initial_s

    async def _session(self) -> str:
        key = await self._client.new_listen_key()
        async with connect(
            f"{self._ws_base}/ws/{key}", open_timeout=10, ping_interval=20, ping_timeout=20
        ) as ws:
            self.connects += 1
            await self._on_connected()
            # Set only after recovery: whoever waits for it sees nothing missing.
            self.connected.set()
            keeper = asyncio.create_task(self._keepalive(ws))
            try:
                return await self._read(ws)
            finally:
                keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keeper

    async def _read(self, ws: ClientConnection) -> str:
        try:
            async for message in ws:
                doc = msgspec.json.decode(message)
                if not isinstance(doc, dict):
                    continue
                if doc.get("e") == "listenKeyExpired":
                    return "served: listenKey expired"
                await self._on_event(doc)
        except ConnectionClosed as exc:
            return f"served: closed ({exc.rcvd.code if exc.rcvd else 'no close frame'})"
        return "served: closed by the server"

    async def _keepalive(self, ws: ClientConnection) -> None:
        while True:
            await asyncio.sleep(self._cfg.keepalive_s)
            try:
                await self._client.keepalive_listen_key()
                self.keepalives += 1
            except ExchangeApiError as exc:
                log.warning("listenKey keep-alive failed: %s; reconnecting", exc)
                if exc.code == -1125:
                    await ws.close()
                    return
