"""The dashboard: the status line (what the engine does, every reason it is not trading), equity
with a sparkline, PnL, positions, the last decision per symbol, models, feeds, latency, and the
kill switch one tap away."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from app import contract
from app.admin import charts, sse
from app.admin.coalesce import Coalesced
from app.admin.render import render
from app.admin.state import Panel, panel_of
from app.ctl import Reply

SPARK_SPAN_NS = 86_400 * 1_000_000_000


async def dashboard_context(request: Request) -> dict[str, Any]:
    """Everything the live part of the dashboard shows: one shared fetch per half second, however
    many browsers are watching."""
    panel = panel_of(request)
    shared = panel.extra.get("dashboard")
    if shared is None:
        shared = panel.extra["dashboard"] = Coalesced(
            lambda: _fetch(panel), 0.5, panel.clock, lambda: panel.engine.changes
        )
    context: dict[str, Any] = await shared.get()
    return context


async def _fetch(panel: Panel) -> dict[str, Any]:
    status = await panel.engine.call(contract.STATUS)
    health: Reply[contract.Health] = (
        await panel.engine.call(contract.HEALTH) if status.reachable else Reply(False)
    )
    reader = panel.reader
    now = panel.clock.time_ns()
    pnl, positions, orders, alarms, series = await asyncio.gather(
        asyncio.to_thread(reader.pnl_summary, now),
        asyncio.to_thread(reader.positions),
        asyncio.to_thread(reader.open_orders),
        asyncio.to_thread(reader.open_alarms),
        asyncio.to_thread(reader.equity_series, now - SPARK_SPAN_NS, 120),
    )
    spark = charts.sparkline("Equity, last 24 h", [p.equity for p in series])
    return {
        "engine": status,
        "st": status.result,
        "health": health.result,
        "streams": health.result.streams if health.result is not None else {},
        "pnl": pnl,
        "positions": positions,
        "orders": orders,
        "alarms": alarms,
        "now_ns": now,
        "now_ms": now // 1_000_000,
        "spark": spark,
        "spark_points": len(series),
    }


async def dashboard(request: Request) -> Response:
    ctx = await dashboard_context(request)
    request.state.engine_status = ctx["engine"]
    return await render(request, "dashboard.html", ctx)


async def dashboard_fragment(request: Request) -> Response:
    """The live part alone (for clients without SSE, and the load benchmark)."""
    ctx = await dashboard_context(request)
    request.state.engine_status = ctx["engine"]
    return await render(request, "_dashboard_live.html", ctx)


async def dashboard_stream(request: Request) -> Response:
    return sse.stream(request, "dashboard", "_dashboard_live.html", dashboard_context)
