"""Server-sent events: page fragments re-rendered every ``live_interval_s`` and pushed to htmx's
SSE extension (``sse-swap``), so live values update without reloads or polling.

The session is checked again on every tick: a revoked or timed-out session ends its streams.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.templating import Jinja2Templates

from app.admin.sessions import COOKIE
from app.admin.state import panel_of

ContextFn = Callable[[Request], Awaitable[dict[str, Any]]]


def sse_event(event: str, html: str) -> str:
    """One SSE message; every line of the payload gets its own ``data:`` prefix."""
    lines = "".join(f"data: {line}\n" for line in html.splitlines() or [""])
    return f"event: {event}\n{lines}\n"


def stream(request: Request, event: str, template: str, context: ContextFn) -> StreamingResponse:
    """Stream ``template`` rendered with ``context(request)`` as ``event`` until disconnect."""
    panel = panel_of(request)
    templates: Jinja2Templates = panel.extra["templates"]
    token = request.cookies.get(COOKIE, "")
    interval = panel.cfg.live_interval_s

    async def events() -> AsyncIterator[str]:
        # Tell the browser how long to wait before reconnecting after a panel restart.
        yield "retry: 2000\n\n"
        while True:
            if panel.sessions.lookup(token) is None:
                yield sse_event("expired", "")
                return
            ctx = await context(request)
            yield sse_event(event, templates.get_template(template).render(ctx))
            await asyncio.sleep(interval)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
