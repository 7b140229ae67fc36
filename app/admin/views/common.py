"""What several pages share: sending a command as the logged-in user, password re-entry."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request

from app.admin.control import Reply
from app.admin.state import actor_of, client_of, panel_of


async def command(request: Request, cmd: str, args: dict[str, Any] | None = None) -> Reply:
    """Send ``cmd`` to the engine as ``panel:<user>@<ip>`` (the engine journals it)."""
    return await panel_of(request).engine.call(cmd, args or {}, actor=actor_of(request))


async def form_dict(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


async def check_password(request: Request, password: str) -> str:
    """Password re-entry for dangerous actions: '' when right, else the reason it was refused.

    Wrong answers count against the same throttle as logins.
    """
    panel = panel_of(request)
    client = client_of(request)
    wait = panel.throttle.wait_s(client)
    if wait > 0:
        return f"too many wrong passwords: try again in {wait:.0f} s"
    if await asyncio.to_thread(panel.passwords.verify, password):
        panel.throttle.success(client)
        return ""
    panel.throttle.failure(client)
    return "wrong password"
