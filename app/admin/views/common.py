"""What several pages share: sending a command as the logged-in user, password re-entry."""

from __future__ import annotations

import asyncio

from starlette.requests import Request

from app.admin.state import actor_of, client_of, panel_of
from app.contract import A, R, Spec
from app.ctl import Reply


async def command(request: Request, spec: Spec[A, R], args: A | None = None) -> Reply[R]:
    """Send ``spec`` to the engine as ``panel:<user>@<ip>`` (the engine journals changes).

    A slow command is waited for: validating a model takes a few seconds on the board (longer
    under emulation), and the page shows the verdict rather than a job id.
    """
    return await panel_of(request).engine.call(spec, args, actor=actor_of(request))


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
