"""Settings: symbols and risk limits (validated against bounds here, applied by the engine via
``settings.set``), API keys (write-only: ``keys.set``, never shown back), the alert webhook (the
panel's own setting: the panel posts the alerts), and the password."""

from __future__ import annotations

import asyncio
import re
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from app.admin.alerts import WEBHOOK_KEY, post_alert
from app.admin.passwords import check_strength
from app.admin.render import render
from app.admin.state import actor_of, panel_of
from app.admin.views.common import check_password, command, form_dict
from app.errors import ConfigError

# name -> (kind, lowest, highest): the bounds a value from the page must respect.
RISK_BOUNDS: dict[str, tuple[str, Decimal, Decimal]] = {
    "risk_per_trade": ("decimal", Decimal("0.0001"), Decimal("0.05")),
    "kelly_fraction": ("decimal", Decimal("0"), Decimal("1")),
    "max_position_notional": ("decimal", Decimal("1"), Decimal("1000000")),
    "max_leverage": ("decimal", Decimal("0.1"), Decimal("10")),
    "max_daily_loss": ("decimal", Decimal("0.001"), Decimal("0.5")),
    "max_drawdown": ("decimal", Decimal("0.01"), Decimal("0.9")),
    "losing_streak": ("int", Decimal("1"), Decimal("100")),
    "cooldown_minutes": ("int", Decimal("0"), Decimal("10080")),
}
_SYMBOL = re.compile(r"^[a-z0-9]{2,20}$")
_KEY = re.compile(r"^[A-Za-z0-9]{8,128}$")


def validate_risk(form: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """The limits given in ``form`` as exact strings, and one message per value out of bounds."""
    values: dict[str, str] = {}
    problems: list[str] = []
    for name, (kind, lo, hi) in RISK_BOUNDS.items():
        raw = form.get(name, "").strip()
        if not raw:
            continue
        try:
            value = Decimal(raw)
        except InvalidOperation:
            problems.append(f"{name}: {raw!r} is not a number")
            continue
        if not value.is_finite() or (kind == "int" and value != value.to_integral_value()):
            problems.append(
                f"{name}: {raw!r} is not {'a whole number' if kind == 'int' else 'finite'}"
            )
            continue
        if not lo <= value <= hi:
            problems.append(f"{name}: {raw} is outside [{lo}, {hi}]")
            continue
        values[name] = str(int(value)) if kind == "int" else str(value)
    return values, problems


def validate_symbols(text: str) -> tuple[list[str], list[str]]:
    symbols = [s.strip().lower() for s in text.replace(" ", ",").split(",") if s.strip()]
    problems = [f"{s!r} is not a symbol" for s in symbols if not _SYMBOL.match(s)]
    if not symbols:
        problems.append("give at least one symbol")
    if len(symbols) > 20:
        problems.append("at most 20 symbols")
    return symbols, problems


def validate_webhook(url: str) -> str:
    if not url:
        return ""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return "the webhook must be an http:// or https:// URL"
    return ""


async def settings_page(request: Request) -> Response:
    panel = panel_of(request)
    current = await command(request, "settings.get")
    ctx = {
        "bounds": RISK_BOUNDS,
        "current": current,
        "webhook": panel.db.get_setting(WEBHOOK_KEY, ""),
        "outcome": None,
    }
    return await render(request, "settings.html", ctx)


async def _outcome(request: Request, outcome: dict[str, Any], code: int = 200) -> Response:
    return await render(request, "_outcome.html", {"outcome": outcome}, status_code=code)


async def save_risk(request: Request) -> Response:
    values, problems = validate_risk(await form_dict(request))
    if problems or not values:
        return await _outcome(
            request,
            {
                "action": "risk limits",
                "ok": False,
                "error": "; ".join(problems) or "nothing to change",
            },
            400,
        )
    reply = await command(request, "settings.set", {"section": "risk", "values": values})
    outcome = {
        "action": "risk limits",
        "ok": reply.ok,
        "error": reply.error,
        "result": reply.result,
    }
    return await _outcome(request, outcome, 200 if reply.ok else 422)


async def save_symbols(request: Request) -> Response:
    symbols, problems = validate_symbols((await form_dict(request)).get("symbols", ""))
    if problems:
        return await _outcome(
            request, {"action": "symbols", "ok": False, "error": "; ".join(problems)}, 400
        )
    reply = await command(
        request, "settings.set", {"section": "feed", "values": {"symbols": symbols}}
    )
    outcome = {"action": "symbols", "ok": reply.ok, "error": reply.error, "result": reply.result}
    return await _outcome(request, outcome, 200 if reply.ok else 422)


async def save_keys(request: Request) -> Response:
    form = await form_dict(request)
    key, secret = form.get("api_key", "").strip(), form.get("api_secret", "").strip()
    if not (_KEY.match(key) and _KEY.match(secret)):
        return await _outcome(
            request,
            {"action": "API keys", "ok": False, "error": "key and secret: 8-128 letters or digits"},
            400,
        )
    problem = await check_password(request, form.get("password", ""))
    if problem:
        return await _outcome(request, {"action": "API keys", "ok": False, "error": problem}, 403)
    reply = await command(request, "keys.set", {"api_key": key, "api_secret": secret})
    # Never echo the keys back: the result shown is the engine's, which holds no secret.
    outcome = {"action": "API keys", "ok": reply.ok, "error": reply.error, "result": reply.result}
    return await _outcome(request, outcome, 200 if reply.ok else 422)


async def save_webhook(request: Request) -> Response:
    panel = panel_of(request)
    form = await form_dict(request)
    url = form.get("webhook", "").strip()[:500]
    problem = validate_webhook(url)
    if problem:
        return await _outcome(request, {"action": "webhook", "ok": False, "error": problem}, 400)
    panel.db.set_setting(WEBHOOK_KEY, url, panel.clock.time_ns())
    result: dict[str, Any] = {"webhook": url or "(none)", "by": actor_of(request)}
    if url and form.get("test"):
        sent = await post_alert(
            url, {"kind": "test", "message": "test alert from the panel", "state": "raised"}
        )
        result["test"] = sent or "delivered"
    return await _outcome(request, {"action": "webhook", "ok": True, "error": "", "result": result})


async def change_password(request: Request) -> Response:
    panel = panel_of(request)
    form = await form_dict(request)
    problem = await check_password(request, form.get("current", ""))
    if not problem and form.get("new", "") != form.get("confirm", ""):
        problem = "the two new passwords differ"
    if not problem:
        try:
            check_strength(form.get("new", ""))
        except ConfigError as exc:
            problem = str(exc)
    if problem:
        return await _outcome(request, {"action": "password", "ok": False, "error": problem}, 400)
    await asyncio.to_thread(panel.passwords.set, form["new"])
    session = request.state.session
    for other in panel.sessions.active():
        if other.id_hash != session.id_hash:
            panel.sessions.revoke(other.id_hash)
    return await _outcome(
        request,
        {"action": "password", "ok": True, "error": "", "result": "changed; other sessions ended"},
    )
