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


async def command_done(
    request: Request, cmd: str, args: dict[str, Any] | None = None, timeout_s: float = 180.0
) -> Reply:
    """``cmd``, and if the engine answers with a job (a slow command), its outcome once it ends.

    Validating a model takes a few seconds on the board (longer under emulation); the page waits
    for the verdict rather than showing a job id.
    """
    reply = await command(request, cmd, args)
    if not (reply.ok and isinstance(reply.result, dict) and set(reply.result) == {"job"}):
        return reply
    job = reply.result["job"]
    engine = panel_of(request).engine
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.25)
        state = await engine.call("job.status", {"job": job}, actor=actor_of(request))
        if not state.ok:
            return state
        if isinstance(state.result, dict) and state.result.get("state") != "running":
            done = state.result
            return Reply(done["state"] == "done", done.get("result"), str(done.get("error", "")))
    return Reply(False, error=f"{cmd}: still running after {timeout_s:.0f} s (job {job})")


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
