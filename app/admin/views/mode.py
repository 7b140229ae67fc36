"""Mode: paper ↔ live behind guard rails (preflight checklist, typed confirmation, password),
the kill switch (one tap) and resume/pause."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from app import contract
from app.admin.render import render
from app.admin.views.common import check_password, command, form_dict

POLICIES: dict[str, contract.ExitPolicy] = {
    "keep": "keep",
    "cancel": "cancel",
    "flatten": "flatten",
}


async def mode_page(request: Request) -> Response:
    return await render(request, "mode.html", {"outcome": None})


async def _outcome(request: Request, outcome: dict[str, Any], code: int = 200) -> Response:
    response = await render(request, "_outcome.html", {"outcome": outcome}, status_code=code)
    # The "Now: ..." line and the status line reload (mode.html listens for it).
    response.headers["HX-Trigger"] = "mode-changed"
    return response


async def status_fragment(request: Request) -> Response:
    """What the engine is doing now: the Mode page's "Now" line and status line."""
    return await render(request, "_mode_now.html")


async def preflight(request: Request) -> Response:
    reply = await command(request, contract.MODE_PREFLIGHT)
    return await render(
        request, "_preflight.html", {"reply": reply}, status_code=200 if reply.ok else 422
    )


async def go_live(request: Request) -> Response:
    form = await form_dict(request)
    # The password leaves the field whatever the answer (an out-of-band swap empties it).
    outcome: dict[str, Any] = {"action": "go live", "clear_password": "live-password"}
    typed = form.get("confirm", "").strip()
    if not typed:
        outcome.update(ok=False, error="run the preflight, then type the phrase it shows")
        return await _outcome(request, outcome, 400)
    problem = await check_password(request, form.get("password", ""))
    if problem:
        outcome.update(ok=False, error=problem)
        return await _outcome(request, outcome, 403)
    # The engine checks the phrase against its own preflight (it names the account): the panel
    # only passes on what the operator typed.
    reply = await command(
        request, contract.MODE_SET, contract.ModeSetArgs(mode="live", confirm=typed)
    )
    outcome.update(ok=reply.ok, error=reply.error)
    if reply.result is not None:
        outcome["message"] = (
            f"live; trading halted until reconciliation passes: {reply.result.halt_reason}"
            if reply.result.halted
            else "live"
        )
    return await _outcome(request, outcome, 200 if reply.ok else 422)


async def go_paper(request: Request) -> Response:
    form = await form_dict(request)
    policy = POLICIES.get(form.get("policy", "keep"))
    if policy is None:
        error = f"policy must be one of {', '.join(POLICIES)}"
        return await _outcome(
            request, {"action": "back to paper", "ok": False, "error": error}, 400
        )
    reply = await command(
        request, contract.MODE_SET, contract.ModeSetArgs(mode="paper", policy=policy)
    )
    outcome: dict[str, Any] = {"action": "back to paper", "ok": reply.ok, "error": reply.error}
    if reply.result is not None:
        r = reply.result
        outcome["message"] = (
            f"paper ({r.policy}: {r.cancelled} orders cancelled, {r.flatten_orders} to flatten)"
            if r.changed
            else "already paper"
        )
    return await _outcome(request, outcome, 200 if reply.ok else 422)


async def kill(request: Request) -> Response:
    """One tap: cutting risk is always allowed to a logged-in session (its CSRF token is checked
    by the gate); only going live and deleting a model ask for the password again."""
    form = await form_dict(request)
    outcome: dict[str, Any] = {"action": "kill switch"}
    reason = form.get("reason", "").strip()[:200] or "kill switch (panel)"
    reply = await command(request, contract.KILL, contract.KillArgs(reason=reason))
    outcome.update(ok=reply.ok, error=reply.error)
    if reply.result is not None:
        r = reply.result
        closing = (
            f"{r.flatten_orders} closing order{'s' if r.flatten_orders != 1 else ''} sent"
            if r.flatten_orders
            else "no position to close"
        )
        outcome["message"] = (
            f"The engine is halted ({r.reason}): open orders cancelled, {closing}. "
            "No new positions until Resume."
        )
        if r.warning:
            outcome["message"] += f" {r.warning}"
    return await _outcome(request, outcome, 200 if reply.ok else 422)


async def resume(request: Request) -> Response:
    reply = await command(request, contract.RESUME)
    outcome = {"action": "resume", "ok": reply.ok, "error": reply.error}
    if reply.result is not None:
        outcome["message"] = f"The engine is {reply.result.state} again."
    return await _outcome(request, outcome, 200 if reply.ok else 422)


async def pause(request: Request) -> Response:
    reply = await command(request, contract.PAUSE)
    outcome = {"action": "pause", "ok": reply.ok, "error": reply.error}
    if reply.result is not None:
        outcome["message"] = f"The engine is {reply.result.state}: no new positions until Resume."
    return await _outcome(request, outcome, 200 if reply.ok else 422)
