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
from app.admin.browsers import browser_name
from app.admin.config import AdminConfig
from app.admin.numbers import ACCOUNT_CURRENCY, num_filter
from app.admin.state import panel_of
from app.admin.statusline import status_line
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
    if text.lstrip("-").replace("0", "").replace(".", "").replace(",", "") == "":
        return text.lstrip("-")  # zero after rounding: neither a gain nor a loss ("-0.00")
    return text if text.startswith(("-", "—")) else "+" + text


def _dec(value: object) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return value if isinstance(value, Decimal) else Decimal(str(value))
    except ArithmeticError:
        return None


def fmt_price(value: object, min_places: int = 2, max_places: int | None = None) -> str:
    """A price as the exchange quotes it: the stored digits without trailing zeros (the engine
    rounds to the symbol's tick), at least ``min_places`` decimals and at most what the price's
    size warrants (a mark price or an average carries more digits than the tick)."""
    dec = _dec(value)
    if dec is None:
        return "—"
    if max_places is None:
        size = abs(dec)
        max_places = 2 if size >= 100 else 4 if size >= 1 else 8
    exp = dec.normalize().as_tuple().exponent
    places = min(max(-exp if isinstance(exp, int) else 0, min_places), max_places)
    return f"{dec.quantize(Decimal(1).scaleb(-places)):,}"


def fmt_qty(value: object) -> str:
    """A quantity to the symbol's step: the stored digits without trailing zeros."""
    return fmt_price(value, 0, 8)


def fmt_pct(value: object, places: int = 2) -> str:
    dec = _dec(value)
    if dec is None:
        return "—"
    return f"{fmt_signed(dec, places)} %"


def fmt_duration(seconds: object) -> str:
    """A trip's duration: 45 s, 12 min, 3 h 5 min, 2 d 4 h."""
    if not isinstance(seconds, (int, float)):
        return "—"
    s = int(seconds)
    if s < 90:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86_400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86_400} d {s % 86_400 // 3600} h"


def fmt_us(value: object) -> str:
    """Microseconds as µs below a millisecond, else ms."""
    if not isinstance(value, (int, float)):
        return "—"
    return f"{value:.0f} µs" if value < 1000 else f"{value / 1000:.1f} ms"


_ACTIONS = {
    "none": "no signal",
    "order": "order sent",
    "close": "closed the position",
    "hold": "holding",
    "no book": "waiting for the book",
    "atr warming": "waiting for volatility data",
}


def fmt_action(action: object) -> str:
    """A decision's action as the trader reads it."""
    text = str(action or "")
    if text.startswith("rejected:"):
        return "refused by the risk gate (" + text.split(":", 1)[1].strip().replace("_", " ") + ")"
    return _ACTIONS.get(text, text.replace("_", " ") or "—")


def fmt_bytes(value: object) -> str:
    """A size with its unit: 940 B, 11.2 KiB, 3.4 MiB, 1.2 GiB."""
    if not isinstance(value, int):
        return "—"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


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
    env.filters["us"] = fmt_us
    env.filters["bytes"] = fmt_bytes
    env.filters["action"] = fmt_action
    env.filters["price"] = fmt_price
    env.filters["qty"] = fmt_qty
    env.filters["pct"] = fmt_pct
    env.filters["duration"] = fmt_duration
    # Prices to the tick, quantities to the step, money to the cent (app/admin/numbers.py).
    env.filters["num"] = num_filter
    env.globals["currency"] = ACCOUNT_CURRENCY
    env.filters["browser"] = browser_name
    env.globals["status_line"] = status_line
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
