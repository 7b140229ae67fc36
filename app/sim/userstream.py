"""The user-data stream: listenKeys and the ``/ws/<listenKey>`` connections that carry events.

As on USD-M: one active listenKey per account; ``POST`` returns it (creating one if none) and
extends its validity, ``PUT`` extends it (-1125 when unknown), ``DELETE`` ends it and closes its
connections. A key not kept alive for ``listen_key_validity_s`` expires: its connections get a
``listenKeyExpired`` event and are closed. Events are pushed to whoever is connected at the time;
nothing is buffered for absent clients (the account itself survives disconnects).

Fault ``drop_user_stream``: while true, open user-data connections are closed (1001) and new ones
are closed as soon as they open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import string
from collections import deque

import msgspec
from starlette.websockets import WebSocket, WebSocketDisconnect

from app.clock import Clock
from app.sim.apierror import ApiError
from app.sim.faults import Faults

log = logging.getLogger(__name__)

DROP_CLOSE_CODE = 1001
EXPIRED_CLOSE_CODE = 1000
_KEY_CHARS = string.ascii_letters + string.digits


class UserConnection:
    """One client on a listenKey: a queue of event texts and, once set, a close code."""

    __slots__ = ("close_code", "queue", "wake")

    def __init__(self) -> None:
        self.queue: deque[str] = deque()
        self.wake = asyncio.Event()
        self.close_code: int | None = None

    def push(self, text: str) -> None:
        self.queue.append(text)
        self.wake.set()

    def close(self, code: int) -> None:
        if self.close_code is None:
            self.close_code = code
        self.wake.set()


class UserStreams:
    """The account's listenKey and its connections."""

    def __init__(self, validity_s: float, clock: Clock, faults: Faults, seed: int) -> None:
        self.validity_ns = int(validity_s * 1e9)
        self.clock = clock
        self.faults = faults
        self._rng = random.Random(f"sim:{seed}:listenKey")
        self.key: str | None = None
        self._deadline_ns = 0
        self._conns: dict[str, list[UserConnection]] = {}
        self.events_sent = 0
        self.expired = 0
        self.dropped_by_fault = 0
        faults.on_change(self._faults_changed)

    # -- listenKey management ------------------------------------------------------------------

    def create(self) -> str:
        """``POST /fapi/v1/listenKey``: the active key (a new one if none), validity extended."""
        self.check_expiry()
        if self.key is None:
            self.key = "".join(self._rng.choice(_KEY_CHARS) for _ in range(64))
        self._deadline_ns = self.clock.monotonic_ns() + self.validity_ns
        return self.key

    def keepalive(self) -> str:
        """``PUT /fapi/v1/listenKey``: extend the active key's validity."""
        self.check_expiry()
        if self.key is None:
            raise ApiError(-1125, "This listenKey does not exist.")
        self._deadline_ns = self.clock.monotonic_ns() + self.validity_ns
        return self.key

    def delete(self) -> None:
        """``DELETE /fapi/v1/listenKey``: end the active key and close its connections."""
        self.check_expiry()
        if self.key is None:
            raise ApiError(-1125, "This listenKey does not exist.")
        for conn in self._conns.pop(self.key, []):
            conn.close(EXPIRED_CLOSE_CODE)
        self.key = None

    def is_key(self, text: str) -> bool:
        """Whether ``text`` is the active (unexpired) listenKey."""
        return self.key is not None and text == self.key and not self.check_expiry()

    def check_expiry(self) -> bool:
        """Expire the key if its validity ran out; True when it just did."""
        key = self.key
        if key is None or self.clock.monotonic_ns() < self._deadline_ns:
            return False
        self.expired += 1
        now_ms = self.clock.time_ns() // 1_000_000
        # The current docs show E as a string in this event (unlike the other events).
        text = msgspec.json.encode(
            {"e": "listenKeyExpired", "E": str(now_ms), "listenKey": key}
        ).decode()
        for conn in self._conns.pop(key, []):
            conn.push(text)
            conn.close(EXPIRED_CLOSE_CODE)
        self.key = None
        return True

    # -- events --------------------------------------------------------------------------------

    def wants(self) -> bool:
        """Whether anyone is connected (events are not rendered otherwise)."""
        return self.key is not None and bool(self._conns.get(self.key))

    def publish(self, event: dict[str, object]) -> None:
        """Send ``event`` to every connection on the active key."""
        if self.key is None:
            return
        conns = self._conns.get(self.key)
        if not conns:
            return
        text = msgspec.json.encode(event).decode()
        for conn in conns:
            conn.push(text)
        self.events_sent += 1

    def _faults_changed(self) -> None:
        if not self.faults.drop_user_stream:
            return
        for conns in self._conns.values():
            for conn in conns:
                self.dropped_by_fault += 1
                conn.close(DROP_CLOSE_CODE)
        self._conns.clear()

    def connections(self) -> int:
        return sum(len(c) for c in self._conns.values())

    def stats(self) -> dict[str, object]:
        return {
            "listen_key_active": self.key is not None,
            "connections": self.connections(),
            "events_sent": self.events_sent,
            "expired": self.expired,
            "dropped_by_fault": self.dropped_by_fault,
        }

    # -- the WebSocket side --------------------------------------------------------------------

    async def serve(self, ws: WebSocket, key: str) -> None:
        """Run one ``/ws/<listenKey>`` connection until it closes."""
        await ws.accept()
        if self.faults.drop_user_stream:
            self.dropped_by_fault += 1
            await ws.close(code=DROP_CLOSE_CODE, reason="drop_user_stream")
            return
        conn = UserConnection()
        self._conns.setdefault(key, []).append(conn)
        reader = asyncio.create_task(_read_until_closed(ws, conn))
        try:
            await _pump(ws, conn)
        except (WebSocketDisconnect, OSError, RuntimeError) as exc:
            log.debug("user stream connection ended: %r", exc)
        finally:
            conns = self._conns.get(key)
            if conns is not None and conn in conns:
                conns.remove(conn)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


async def _read_until_closed(ws: WebSocket, conn: UserConnection) -> None:
    """Drain client frames (Binance ignores them here); notice the client leaving."""
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
    finally:
        conn.close(DROP_CLOSE_CODE)


async def _pump(ws: WebSocket, conn: UserConnection) -> None:
    queue = conn.queue
    while True:
        while queue:
            await ws.send_text(queue.popleft())
        if conn.close_code is not None:
            with contextlib.suppress(RuntimeError, OSError):
                await ws.close(code=conn.close_code)
            return
        conn.wake.clear()
        await conn.wake.wait()
