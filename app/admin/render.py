"""Templates: the Jinja2 environment, its filters, and the context every page shares.

Pages are full documents; htmx requests (``HX-Request``) for a fragment get a template of their
own (``_*.html``) that the full page also includes, so one template renders both.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from app import contract
from app.admin.config import AdminConfig
from app.admin.state import panel_of
from app.ctl import Reply


def fmt_ts(ts_ns: object) -> str:
    if not isinstance(ts_ns, int) or ts_ns <= 0:
        return "—"
    return datetime.fromtimestamp(ts_ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S")


def fmt_money(value: object, places: int = 2) -> str:
    if value is None:
        return "—"
    dec = value if isinstance(value, Decimal) else Decimal(str(value))
    return f"{dec.quantize(Decimal(1).scaleb(-places)):,}"


def fmt_signed(value: object, places: int = 2) -> str:
    text = fmt_money(value, places)
    return text if text.startswith(("-", "—")) else "+" + text


def fmt_age(seconds: object) -> str:
    if not isinstance(seconds, (int, float)):
        return "—"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def make_templates(cfg: AdminConfig) -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(cfg.web_dir / "templates"))
    env = templates.env
    env.filters["ts"] = fmt_ts
    env.filters["money"] = fmt_money
    env.filters["signed"] = fmt_signed
    env.filters["age"] = fmt_age
    env.filters["tojson_pretty"] = lambda v: json.dumps(
        contract.to_builtins(v), indent=2, sort_keys=True
    )
    return templates


async def engine_status(request: Request) -> Reply[contract.Status]:
    """The engine's ``status``, fetched once per request."""
    cached: Reply[contract.Status] | None = getattr(request.state, "engine_status", None)
    if cached is None:
        cached = await panel_of(request).engine.call(contract.STATUS)
        request.state.engine_status = cached
    return cached


async def render(
    request: Request, name: str, context: dict[str, Any] | None = None, status_code: int = 200
) -> Response:
    """Render ``name`` with the shared context: CSRF token, session, engine banner, alarms."""
    panel = panel_of(request)
    ctx: dict[str, Any] = dict(context or {})
    ctx.setdefault("csrf_token", request.state.csrf_token)
    ctx.setdefault("session", request.state.session)
    if request.state.session is not None:
        if "engine" not in ctx:
            ctx["engine"] = await engine_status(request)
        if "alarms" not in ctx:
            ctx["alarms"] = await asyncio.to_thread(panel.reader.open_alarms)
    ctx.setdefault("tls_fingerprint", panel.tls_fingerprint)
    templates: Jinja2Templates = panel.extra["templates"]
    return templates.TemplateResponse(request, name, ctx, status_code=status_code)


def wants_fragment(request: Request) -> bool:
    """htmx asked (and not for a boosted full page)."""
    return bool(request.headers.get("hx-request")) and not request.headers.get("hx-boosted")
