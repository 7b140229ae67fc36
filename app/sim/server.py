"""The simulator process: one Starlette app (REST + streams) on one uvicorn port."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import AsyncIterator
from typing import TypedDict

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware

from app.clock import Clock, SystemClock
from app.sim import history_rest, rest, trading_rest, ws
from app.sim.config import SimConfig
from app.sim.driver import drive_markets
from app.sim.pong import delayed_pong_protocol
from app.sim.ratelimit import RateLimitMiddleware
from app.sim.replay import run_replay
from app.sim.rest import ApiError, api_error_handler
from app.sim.state import SimState, build_state

log = logging.getLogger("app.sim")

# Every route, declared once; each handler reads the simulator from the lifespan state.
ROUTES = [*rest.ROUTES, *history_rest.ROUTES, *trading_rest.ROUTES, *ws.ROUTES]


class LifespanState(TypedDict):
    sim: SimState


def build_app(state: SimState, listening: str = "") -> Starlette:
    """The ASGI app; its lifespan runs the market (or the replay), logs ``listening`` and hands
    ``state`` to the handlers (``request.state.sim``, read by :func:`~app.sim.state.sim_of`)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[LifespanState]:
        cfg = state.config
        if cfg.replay is None:
            driver = drive_markets(
                state.markets,
                state.hub,
                state.clock,
                state.start_ms,
                cfg.step_ms,
                after_step=state.after_step,
            )
        else:
            assert state.replay is not None
            driver = run_replay(
                cfg.replay,
                cfg.speed,
                loop=cfg.loop,
                hub=state.hub,
                clock=state.clock,
                status=state.replay,
            )
        task = asyncio.create_task(driver, name="sim-driver")
        task.add_done_callback(_driver_done)
        if listening:
            log.info("sim listening on %s", listening)
        try:
            yield {"sim": state}
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return Starlette(
        routes=ROUTES,
        middleware=[Middleware(RateLimitMiddleware, limiter=state.limiter)],
        exception_handlers={ApiError: api_error_handler},
        lifespan=lifespan,
    )


def _driver_done(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("sim driver failed", exc_info=task.exception())


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket whose accepted connections get TCP_NODELAY.

    asyncio sets TCP_NODELAY only on sockets whose ``proto`` is IPPROTO_TCP, and
    ``socket.create_server`` leaves it 0: every keep-alive answer (headers and body written
    separately) then waited ~40 ms for the client's delayed ACK.
    """
    family, kind, proto, _, addr = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(socket.SOMAXCONN)
    except OSError:
        sock.close()
        raise
    return sock


def _ignore_signal(signum: int, frame: object) -> None:
    """Placeholder handler: uvicorn re-raises the signal that stopped it once it has shut down."""


def serve(config: SimConfig, clock: Clock | None = None) -> int:
    """Run the simulator until SIGTERM/SIGINT; return the exit status (0)."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    state = build_state(config, clock or SystemClock())
    sock = _listen(config.host, config.port)
    host, port = sock.getsockname()[:2]
    app = build_app(state, listening=f"http://{host}:{port}")
    uv_config = uvicorn.Config(
        app,
        ws=delayed_pong_protocol(state.faults),
        lifespan="on",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=3,
    )
    server = uvicorn.Server(uv_config)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _ignore_signal)
    try:
        asyncio.run(server.serve(sockets=[sock]))
    finally:
        sock.close()
    return 0
