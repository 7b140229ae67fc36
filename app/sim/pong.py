"""A uvicorn WebSocket protocol that answers client pings late when ``pong_delay_s`` is set.

The WebSocket library answers pings by itself, below the ASGI app, so the delay has to live in
the protocol class handed to uvicorn (``ws=``). uvicorn >= 0.35 has a sans-I/O implementation
(the pong is queued by the protocol and flushed in ``handle_ping``: we flush it later); older
uvicorn (0.32 on Debian trixie) only has the ``websockets`` legacy one (``pong()`` is awaited
from the read loop: we send it from a task instead, so reading goes on meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import warnings
from typing import Any

from app.sim.faults import Faults


def delayed_pong_protocol(faults: Faults) -> type[asyncio.Protocol]:
    """A protocol class for ``uvicorn.Config(ws=...)`` reading the delay from ``faults``."""
    try:
        sansio = importlib.import_module("uvicorn.protocols.websockets.websockets_sansio_impl")
    except ImportError:
        return _legacy_protocol(faults)
    base: type[Any] = sansio.WebSocketsSansIOProtocol

    class DelayedPongSansIO(base):  # type: ignore[misc]
        def handle_ping(self) -> None:
            delay = faults.pong_delay_s
            if delay <= 0:
                super().handle_ping()
                return
            pending = b"".join(self.conn.data_to_send())
            self.loop.call_later(delay, self._late_write, pending)

        def _late_write(self, data: bytes) -> None:
            if not self.transport.is_closing():
                self.transport.write(data)

    return DelayedPongSansIO


def _legacy_protocol(faults: Faults) -> type[asyncio.Protocol]:
    with warnings.catch_warnings():
        # websockets >= 14 deprecates its legacy module, which this uvicorn is built on.
        warnings.simplefilter("ignore", DeprecationWarning)
        legacy = importlib.import_module("uvicorn.protocols.websockets.websockets_impl")
        closed = importlib.import_module("websockets.exceptions").ConnectionClosed
    base: type[Any] = legacy.WebSocketProtocol

    class DelayedPongLegacy(base):  # type: ignore[misc]
        _late: set[asyncio.Task[None]]

        async def pong(self, data: Any = b"") -> None:
            delay = faults.pong_delay_s
            if delay <= 0:
                await super().pong(data)
                return
            if not hasattr(self, "_late"):
                self._late = set()
            task = asyncio.get_running_loop().create_task(self._late_pong(data, delay))
            self._late.add(task)
            task.add_done_callback(self._late.discard)

        async def _late_pong(self, data: Any, delay: float) -> None:
            await asyncio.sleep(delay)
            with contextlib.suppress(closed):
                await super().pong(data)

    return DelayedPongLegacy
