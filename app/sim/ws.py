"""WebSocket market streams as Binance serves them: ``/stream?streams=a/b`` and ``/ws/<stream>``.

Combined connections get ``{"stream": ..., "data": ...}`` frames, raw ones the payload alone.
Clients may also send Binance's ``SUBSCRIBE``/``UNSUBSCRIBE``/``LIST_SUBSCRIPTIONS`` requests.
Unknown stream names are accepted and stay silent, as on Binance. ``/ws/<listenKey>`` (the active
key) is the user-data stream instead (:mod:`app.sim.userstream`).

Each connection runs two tasks: this handler sends (the only writer on the socket), a reader
answers requests and notices the close. The stream faults act here: ``drop_after_s`` closes with
1001, ``malformed_every`` replaces every Nth data frame with text that is not JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import msgspec
from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from app.sim.hub import Connection, Hub
from app.sim.state import SimState, sim_of

log = logging.getLogger(__name__)

DROP_CLOSE_CODE = 1001
OVERFLOW_CLOSE_CODE = 1008
_GARBAGE = "\x00}{ not json: simulated garbage frame"


def _streams(spec: str) -> list[str]:
    return [s for s in spec.split("/") if s]


def _malformed(text: str, nth: int) -> str:
    """Alternately a truncated frame and plain garbage; neither parses as JSON."""
    if nth % 2 == 0 and len(text) > 2:
        return text[: len(text) // 2]
    return _GARBAGE


def _control_reply(text: str, conn: Connection, hub: Hub) -> str:
    """Answer one of Binance's live-subscription requests."""
    try:
        req = msgspec.json.decode(text)
    except msgspec.DecodeError:
        return '{"error":{"code":3,"msg":"Invalid JSON"}}'
    if not isinstance(req, dict):
        return '{"error":{"code":2,"msg":"Invalid request"}}'
    req_id = req.get("id")
    method = req.get("method")
    params = req.get("params") or []
    if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
        return msgspec.json.encode(
            {
                "error": {"code": 2, "msg": "Invalid request: params must be stream names"},
                "id": req_id,
            }
        ).decode()
    if method == "SUBSCRIBE":
        hub.subscribe(conn, params)
        result: object = None
    elif method == "UNSUBSCRIBE":
        hub.unsubscribe(conn, params)
        result = None
    elif method == "LIST_SUBSCRIPTIONS":
        result = sorted(conn.streams)
    else:
        return msgspec.json.encode(
            {
                "error": {"code": 2, "msg": f"Invalid request: unknown method {method!r}"},
                "id": req_id,
            }
        ).decode()
    return msgspec.json.encode({"result": result, "id": req_id}).decode()


async def _read(ws: WebSocket, conn: Connection, hub: Hub) -> None:
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None and message.get("bytes") is not None:
                text = message["bytes"].decode(errors="replace")
            if text is not None:
                conn.push(_control_reply(text, conn, hub))
    finally:
        conn.closed = True
        conn.wake.set()


async def _pump(ws: WebSocket, conn: Connection, state: SimState) -> None:
    """Send queued frames until the client goes or a fault closes the connection."""
    hub = state.hub
    faults = state.faults
    clock = state.clock
    counts = hub.frames_sent
    queue = conn.queue
    while not conn.closed:
        drop_after = faults.drop_after_s
        timeout: float | None = None
        if drop_after is not None:
            timeout = drop_after - (clock.monotonic_ns() - conn.opened_ns) / 1e9
            if timeout <= 0:
                hub.dropped_by_fault += 1
                await ws.close(code=DROP_CLOSE_CODE, reason="drop_after_s")
                return
        if conn.overflowed:
            await ws.close(code=OVERFLOW_CLOSE_CODE, reason="client too slow")
            return
        if not queue:
            conn.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(conn.wake.wait(), timeout)
            continue
        stalled = faults.stalled()
        every = faults.malformed_every
        combined = conn.combined
        # A batch at a time, so a fault change is seen within one batch.
        for _ in range(min(len(queue), 64)):
            item = queue.popleft()
            if isinstance(item, str):
                await ws.send_text(item)
                continue
            if stalled:
                hub.withheld_by_stall += 1
                continue
            text = item.combined if combined else item.raw
            conn.sent += 1
            if every and conn.sent % every == 0:
                text = _malformed(text, hub.malformed_sent)
                hub.malformed_sent += 1
            await ws.send_text(text)
            counts[item.stream] += 1


async def _serve(ws: WebSocket, streams: list[str], combined: bool, state: SimState) -> None:
    hub = state.hub
    await ws.accept()
    conn = hub.connect(combined)
    hub.subscribe(conn, streams)
    reader = asyncio.create_task(_read(ws, conn, hub))
    try:
        await _pump(ws, conn, state)
    except (WebSocketDisconnect, OSError, RuntimeError) as exc:
        # The client went away mid-send; nothing to do but forget it.
        log.debug("stream connection %d ended: %r", conn.cid, exc)
    finally:
        hub.disconnect(conn)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


async def combined(ws: WebSocket) -> None:
    await _serve(ws, _streams(ws.query_params.get("streams", "")), True, sim_of(ws))


async def raw(ws: WebSocket) -> None:
    state = sim_of(ws)
    spec = ws.path_params.get("streams", "")
    if state.user_streams.is_key(spec):
        await state.user_streams.serve(ws, spec)
        return
    await _serve(ws, _streams(spec), False, state)


ROUTES: list[BaseRoute] = [
    WebSocketRoute("/stream", combined, name="stream_combined"),
    WebSocketRoute("/ws", raw, name="stream_raw_bare"),
    WebSocketRoute("/ws/{streams:path}", raw, name="stream_raw"),
]
