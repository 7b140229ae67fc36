"""A scripted WebSocket server on loopback, in its own thread and event loop.

Each accepted connection runs the next script of the list (the last one repeats), so a test can
say "first connection: send these frames and close; second: send and stall". Running in its own
thread lets a script freeze the server's whole event loop (``time.sleep``): then not even pings
are answered, which is how a server that answers pings late looks from the client.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

from websockets.asyncio.server import ServerConnection, serve

Script = Callable[[ServerConnection], Awaitable[None]]


class ScriptedServer:
    """See the module docstring. Use through :func:`scripted_server`."""

    def __init__(self, scripts: list[Script]) -> None:
        self._scripts = scripts
        self.paths: list[str] = []
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="scripted-ws", daemon=True)
        self.error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def connections(self) -> int:
        return len(self.paths)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # surfaced by stop()
            self.error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serve(self._handle, "127.0.0.1", 0) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            self._ready.set()
            await self._stop.wait()

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        index = len(self.paths)
        self.paths.append(ws.request.path)
        await self._scripts[min(index, len(self._scripts) - 1)](ws)

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(10), "server did not start"
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)
        assert not self._thread.is_alive(), "server did not stop"


@contextmanager
def scripted_server(*scripts: Script) -> Iterator[ScriptedServer]:
    """Run a :class:`ScriptedServer` for the duration of the ``with`` block."""
    server = ScriptedServer(list(scripts))
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- script building blocks ------------------------------------------------------------------


def send_then(frames: list[bytes], after: str, seconds: float = 0.0) -> Script:
    """Send ``frames`` as text frames, then ``close``, ``stall`` (send nothing, keep answering
    pings until the client leaves) or ``freeze`` (block the server's loop for ``seconds``)."""

    async def script(ws: ServerConnection) -> None:
        for frame in frames:
            await ws.send(frame.decode())
        if after == "close":
            await ws.close()
        elif after == "stall":
            await ws.wait_closed()
        elif after == "freeze":
            time.sleep(seconds)  # noqa: ASYNC251 - the point: nothing on this loop runs
            await ws.wait_closed()
        else:
            raise ValueError(after)

    return script
