"""What several pages share: sending a command as the logged-in user, password re-entry."""

from __future__ import annotations

from starlette.requests import Request

from app.admin.state import actor_of, panel_of, session_of
from app.admin.throttle import session_key
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

    Throttled per session, never per address: wrong logins from the operator's own address (a
    shared NAT, an attacker on the same network) must not block the logged-in operator. The
    attempt is claimed before the check, like a login's.
    """
    panel = panel_of(request)
    key = session_key(session_of(request).id_hash)
    claim = panel.throttle.attempt(key)
    if not claim.granted:
        return f"too many wrong passwords: try again in {max(1, round(claim.wait_s))} s"
    if await panel.passwords.check(password):
        panel.throttle.success(key)
        return ""
    return "wrong password"
