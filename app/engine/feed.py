"""The combined-stream WebSocket client: receive frames, keep the connection alive, reconnect.

:class:`Feed` connects to ``{ws_base}/stream?streams=a/b/c`` and hands every frame, as the bytes
received and with its receive time (``clock.time_ns()``), to a callback. It owns every network
failure of the market-data connection: a refused or timed-out connect, a server-side close, a
stream that goes quiet for ``stale_after_s`` (closed by a watchdog), a server that answers pings
too late (websockets' keepalive closes the connection) all end in a reconnect after a jittered
exponential backoff. Exceptions raised by the callback are bugs: they propagate and end
:meth:`Feed.run`, so the supervisor sees them.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    ConnectionClosedOK,
    InvalidURI,
    WebSocketException,
)

from app.clock import Clock
from app.config import FeedConfig
from app.errors import ConfigError

# How long to wait for the server's close frame before dropping the TCP connection: a stalled
# server must not hold the reconnect up.
CLOSE_TIMEOUT_S = 2.0
# Frames websockets may buffer ahead of the callback: absorbs bursts (a reconnect, a busy loop).
MAX_QUEUE = 1024
# Binance frames are well under this; a bigger one is a broken server, not market data.
MAX_FRAME_BYTES = 4 * 1024 * 1024


def stream_url(ws_base: str, streams: tuple[str, ...]) -> str:
    """The combined-stream URL for ``streams``."""
    return f"{ws_base.rstrip('/')}/stream?streams={'/'.join(streams)}"


def backoff_delay(attempt: int, initial_s: float, max_s: float, rng: random.Random) -> float:
    """Seconds to wait before reconnect ``attempt`` (0-based): exponential, capped, jittered.

    "Equal jitter" (half fixed, half random): many appliances that lost the exchange at the same
    moment do not come back in lockstep, and none waits less than half the nominal delay.
    """
    nominal = min(max_s, initial_s * 2 ** min(attempt, 32))
    return rng.uniform(nominal / 2, nominal)


def _close_reason(exc: ConnectionClosed) -> str:
    sent = exc.sent
    if sent is not None and sent.code == 1011 and "keepalive" in sent.reason:
        return "ping_timeout"
    if isinstance(exc, ConnectionClosedOK):
        return "closed"
    return "dropped"


def _noop(*_: object) -> None:
    return None


class Feed:
    """One combined-stream connection, kept up for as long as :meth:`run` runs.

    ``on_frame(ts_recv_ns, frame)`` is called for every frame, in order, on the event loop; it
    must be quick. ``on_connect()`` is called after each successful handshake (before the first
    frame of that connection), ``on_disconnect(reason)`` when a connection or an attempt ends,
    with ``reason`` one of ``connect_failed``, ``closed`` (by the server), ``dropped`` (no clean
    close), ``ping_timeout``, ``stale``.
    """

    def __init__(
        self,
        url: str,
        cfg: FeedConfig,
        clock: Clock,
        on_frame: Callable[[int, bytes], None],
        *,
        on_connect: Callable[[], None] = _noop,
        on_disconnect: Callable[[str], None] = _noop,
        rng: random.Random | None = None,
    ) -> None:
        self.url = url
        self._cfg = cfg
        self._clock = clock
        self._on_frame = on_frame
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect
        self._rng = rng or random.Random()
        self._last_recv_mono_ns = 0
        self._stale = False
        self.last_error = ""

    async def run(self) -> None:
        """Connect, receive, reconnect; forever, until cancelled."""
        attempt = 0
        while True:
            reason, received = await self._session()
            self._on_disconnect(reason)
            if received:
                attempt = 0  # the connection worked: start the backoff over
            cfg = self._cfg
            delay = backoff_delay(attempt, cfg.backoff_initial_s, cfg.backoff_max_s, self._rng)
            attempt += 1
            await asyncio.sleep(delay)

    async def _session(self) -> tuple[str, bool]:
        """One connection from handshake to close: (why it ended, whether any frame arrived)."""
        cfg = self._cfg
        try:
            ws = await connect(
                self.url,
                open_timeout=cfg.open_timeout_s,
                ping_interval=cfg.ping_interval_s,
                ping_timeout=cfg.ping_timeout_s,
                close_timeout=CLOSE_TIMEOUT_S,
                max_queue=MAX_QUEUE,
                max_size=MAX_FRAME_BYTES,
                # Per-message deflate costs CPU on every frame; the riscv64 board has less CPU
                # to spare than bandwidth.
                compression=None,
            )
        except InvalidURI as exc:
            raise ConfigError(f"exchange.ws_url: {exc}") from exc
        except (OSError, TimeoutError, WebSocketException) as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            return "connect_failed", False
        self._stale = False
        self._last_recv_mono_ns = self._clock.monotonic_ns()
        received = False
        watchdog = asyncio.create_task(self._watch_stale(ws), name="feed-stale-watchdog")
        clock = self._clock
        on_frame = self._on_frame
        try:
            self._on_connect()
            while True:
                try:
                    frame = await ws.recv(decode=False)
                except ConnectionClosed as exc:
                    self.last_error = str(exc)
                    return ("stale" if self._stale else _close_reason(exc)), received
                ts_recv_ns = clock.time_ns()
                self._last_recv_mono_ns = clock.monotonic_ns()
                received = True
                # Outside any try: an exception here is a bug in a consumer and must surface.
                on_frame(ts_recv_ns, frame)
        finally:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
            await ws.close()

    async def _watch_stale(self, ws: ClientConnection) -> None:
        """Close ``ws`` when no frame has arrived for ``stale_after_s``."""
        stale_ns = int(self._cfg.stale_after_s * 1e9)
        while True:
            quiet_ns = self._clock.monotonic_ns() - self._last_recv_mono_ns
            if quiet_ns >= stale_ns:
                self._stale = True
                self.last_error = f"no frame for {quiet_ns / 1e9:.1f} s"
                await ws.close(code=1000, reason="stale")
                return
            await asyncio.sleep((stale_ns - quiet_ns) / 1e9)
