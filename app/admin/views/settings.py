"""Settings: symbols and risk limits (``settings.get`` / ``settings.set``: the engine validates them
with the configuration's own bounds, saves, applies and journals them), API keys (write-only:
``keys.set``, never shown back), the alert webhook (the panel's own setting: the panel posts the
alerts), and the password."""

from __future__ import annotations

import logging
import re
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from app import contract
from app.admin.alerts import WEBHOOK_KEY, post_alert
from app.admin.passwords import check_strength
from app.admin.render import render
from app.admin.state import actor_of, panel_of
from app.admin.views.common import check_password, command, form_dict
from app.errors import ConfigError

log = logging.getLogger(__name__)
_KEY = re.compile(r"^[A-Za-z0-9]{8,128}$")
RISK_FIELDS = contract.RiskLimits.__struct_fields__


def parse_risk(form: dict[str, str]) -> tuple[contract.RiskLimits | None, list[str]]:
    """The limits given in ``form`` (blank: unchanged), or why they are not numbers.

    Bounds are the engine's to check (``app.config.RUNTIME``), so a TOML file and this page obey
    the same rules.
    """
    values: dict[str, str] = {}
    problems: list[str] = []
    for name in RISK_FIELDS:
        raw = form.get(name, "").strip()
        if not raw:
            continue
        label = name.replace("_", " ")
        try:
            msgspec.convert({name: raw}, contract.RiskLimits, strict=False)
            finite = Decimal(raw).is_finite()
        except (msgspec.ValidationError, InvalidOperation) as exc:
            whole = "`int" in str(exc)
            problems.append(f"{label}: {raw!r} is not {'a whole number' if whole else 'a number'}")
            continue
        if not finite:
            problems.append(f"{label}: {raw!r} is not finite")
            continue
        values[name] = raw
    if problems:
        return None, problems
    return msgspec.convert(values, contract.RiskLimits, strict=False), []


def parse_symbols(text: str) -> list[str]:
    return [s.strip().lower() for s in text.replace(" ", ",").split(",") if s.strip()]


def validate_webhook(url: str) -> str:
    if not url:
        return ""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return "the webhook must be an http:// or https:// URL"
    return ""


async def settings_page(request: Request) -> Response:
    panel = panel_of(request)
    current = await command(request, contract.SETTINGS_GET)
    ctx = {
        "current": current,
        "by_key": {v.key: v for v in current.result.settings} if current.result else {},
        "webhook": panel.db.get_setting(WEBHOOK_KEY, ""),
        "outcome": None,
    }
    return await render(request, "settings.html", ctx)


async def _outcome(request: Request, outcome: dict[str, Any], code: int = 200) -> Response:
    return await render(request, "_outcome.html", {"outcome": outcome}, status_code=code)


async def _save(request: Request, action: str, args: contract.SettingsSetArgs) -> Response:
    reply = await command(request, contract.SETTINGS_SET, args)
    outcome: dict[str, Any] = {"action": action, "ok": reply.ok, "error": reply.error}
    if reply.result is not None:
        changed = reply.result.changed
        outcome["message"] = (
            "; ".join(f"{c.key}: {c.old} → {c.new}" for c in changed) or "nothing changed"
        )
        if reply.result.restarting:
            outcome["message"] += "; the engine restarts to trade the new symbols"
    return await _outcome(request, outcome, 200 if reply.ok else 422)


async def save_risk(request: Request) -> Response:
    limits, problems = parse_risk(await form_dict(request))
    if limits is None or problems:
        error = "; ".join(problems)
        return await _outcome(request, {"action": "risk limits", "ok": False, "error": error}, 400)
    return await _save(request, "risk limits", contract.SettingsSetArgs(risk=limits))


async def save_symbols(request: Request) -> Response:
    symbols = parse_symbols((await form_dict(request)).get("symbols", ""))
    if not symbols:
        error = "give at least one symbol"
        return await _outcome(request, {"action": "symbols", "ok": False, "error": error}, 400)
    return await _save(request, "symbols", contract.SettingsSetArgs(symbols=symbols))


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
    reply = await command(
        request, contract.KEYS_SET, contract.KeysSetArgs(api_key=key, api_secret=secret)
    )
    # Never echo the keys back: only that they were saved.
    outcome = {"action": "API keys", "ok": reply.ok, "error": reply.error, "message": "saved"}
    return await _outcome(request, outcome, 200 if reply.ok else 422)


async def save_webhook(request: Request) -> Response:
    panel = panel_of(request)
    form = await form_dict(request)
    url = form.get("webhook", "").strip()[:500]
    problem = validate_webhook(url)
    if problem:
        return await _outcome(request, {"action": "webhook", "ok": False, "error": problem}, 400)
    panel.db.set_setting(WEBHOOK_KEY, url, panel.clock.time_ns())
    message = f"alerts go to {url}" if url else "no webhook: alerts are not sent"
    if url and form.get("test"):
        sent = await post_alert(
            url, {"kind": "test", "message": "test alert from the panel", "state": "raised"}
        )
        message += f"; test alert: {sent or 'delivered'}"
    log.info("webhook set by %s", actor_of(request))
    return await _outcome(
        request, {"action": "webhook", "ok": True, "error": "", "message": message}
    )


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
    await panel.passwords.replace(form["new"])
    session = request.state.session
    for other in panel.sessions.active():
        if other.id_hash != session.id_hash:
            panel.sessions.revoke(other.id_hash)
    return await _outcome(
        request,
        {"action": "password", "ok": True, "error": "", "message": "changed; other sessions ended"},
    )
