"""PnL: round trips (entry, exit, why it ended, duration, PnL) with per-symbol and per-model
summaries, equity, drawdown and daily PnL (SVG), fees and funding, the fills table with paging and
filters, and CSV exports of both, all from the engine's own recorded data."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from app.admin import charts, roundtrips
from app.admin.numbers import ACCOUNT_CURRENCY
from app.admin.readers import DAY_NS, TradeFilter
from app.admin.render import render, wants_fragment
from app.admin.state import panel_of

PAGE_SIZE = 50
SIDES = ("BUY", "SELL")
CSV_MAX_ROWS = 100_000


# Dates the filters accept: nanosecond timestamps are signed 64-bit integers (SQLite's INTEGER),
# which end in April 2262; the "until" day's end must fit too.
FIRST_DAY = date(1970, 1, 1)
LAST_DAY = date(2261, 12, 31)
MAX_PAGE = 1_000_000


def bad_parameter(name: str, problem: str) -> HTTPException:
    """A 400 that names the parameter and what it accepts (Starlette answers it as text)."""
    return HTTPException(400, f"{name}: {problem}")


def _day_ns(name: str, text: str) -> int:
    """Midnight UTC of the ISO day ``text`` in ns; 0 for an empty value; else a 400."""
    if not text:
        return 0
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise bad_parameter(name, "expected a date as YYYY-MM-DD") from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise bad_parameter(name, f"expected a date from {FIRST_DAY} to {LAST_DAY}")
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1_000_000_000


def trade_filter(request: Request) -> tuple[TradeFilter, dict[str, str]]:
    q = request.query_params
    symbol = q.get("symbol", "").strip().lower()[:20]
    side = q.get("side", "").upper()
    side = side if side in SIDES else ""
    since, until = q.get("since", "").strip(), q.get("until", "").strip()
    until_ns = _day_ns("until", until)
    flt = TradeFilter(
        symbol=symbol,
        side=side,
        since_ns=_day_ns("since", since),
        until_ns=until_ns + DAY_NS if until_ns else 0,
    )
    return flt, {"symbol": symbol, "side": side, "since": since, "until": until}


def _page(request: Request) -> int:
    text = request.query_params.get("page", "1")
    try:
        page = int(text) if len(text) <= 12 else 0
    except ValueError:
        page = 0
    if not 1 <= page <= MAX_PAGE:
        raise bad_parameter("page", f"expected a whole number from 1 to {MAX_PAGE}")
    return page


async def trades_context(request: Request) -> dict[str, Any]:
    panel = panel_of(request)
    flt, form = trade_filter(request)
    page = _page(request)
    rows, total = await asyncio.to_thread(
        panel.reader.trades, flt, (page - 1) * PAGE_SIZE, PAGE_SIZE
    )
    pages = max(1, (total + PAGE_SIZE - 1) // PAGE_SIZE)
    query = "&".join(f"{k}={v}" for k, v in form.items() if v)
    return {
        "trades": rows,
        "total": total,
        "page": page,
        "pages": pages,
        "filters": form,
        "query": query,
        "symbols": await asyncio.to_thread(panel.reader.symbols_traded),
    }


ROUND_TRIPS_SHOWN = 50


async def round_trip_context(request: Request) -> dict[str, Any]:
    panel = panel_of(request)
    fills, funding = await asyncio.to_thread(panel.reader.fills_for_round_trips)
    trips = roundtrips.build(fills, funding)
    closed = [t for t in trips if not t.is_open]
    return {
        "trips": list(reversed(trips))[:ROUND_TRIPS_SHOWN],
        "trips_closed": len(closed),
        "trips_total": len(trips),
        "by_symbol": roundtrips.summarise(closed, "symbol"),
        "by_model": roundtrips.summarise(closed, "model"),
        "now_ns": panel.clock.time_ns(),
    }


async def round_trips_fragment(request: Request) -> Response:
    """Round trips and summaries alone: the page reloads them every few seconds."""
    return await render(request, "_roundtrips.html", await round_trip_context(request))


async def pnl_page(request: Request) -> Response:
    panel = panel_of(request)
    reader = panel.reader
    if wants_fragment(request):
        return await render(request, "_trades.html", await trades_context(request))
    now = panel.clock.time_ns()
    series, daily, summary, totals = await asyncio.gather(
        asyncio.to_thread(reader.equity_series, 0, 600),
        asyncio.to_thread(reader.daily_pnl, 30),
        asyncio.to_thread(reader.pnl_summary, now),
        asyncio.to_thread(reader.fee_funding_totals),
    )
    curve = [(p.ts_ns, p.equity) for p in series]
    equity_svg = charts.both_widths(
        lambda w: charts.line_chart(f"Equity curve ({ACCOUNT_CURRENCY})", curve, width=w)
    )
    dd = charts.drawdown(curve)
    drawdown_svg = charts.both_widths(
        lambda w: charts.line_chart(
            "Drawdown from the peak (%)", dd, area=True, y_format=_pct_label, width=w
        )
    )
    bars = [(datetime.fromtimestamp(d * 86_400, UTC).strftime("%m-%d"), v) for d, v in daily]
    daily_svg = charts.both_widths(
        lambda w: charts.bar_chart(f"Daily PnL ({ACCOUNT_CURRENCY})", bars, width=w)
    )
    ctx = {
        "equity_svg": equity_svg,
        "drawdown_svg": drawdown_svg,
        "max_drawdown": min((v for _, v in dd), default=None),
        "daily_svg": daily_svg,
        "points": len(series),
        "summary": summary,
        "fees_total": totals[0],
        "funding_total": totals[1],
        "daily": daily,
        **await trades_context(request),
        **await round_trip_context(request),
    }
    return await render(request, "pnl.html", ctx)


async def round_trips_csv(request: Request) -> Response:
    panel = panel_of(request)
    fills, funding = await asyncio.to_thread(panel.reader.fills_for_round_trips, CSV_MAX_ROWS)
    now = panel.clock.time_ns()
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            "opened_utc",
            "closed_utc",
            "symbol",
            "direction",
            "model_version",
            "qty",
            "entry_price",
            "exit_price",
            "reason",
            "duration_s",
            "gross_pnl",
            "fees",
            "funding",
            "pnl",
            "pnl_pct",
        ]
    )
    for t in roundtrips.build(fills, funding):
        exit_price = t.exit_price
        writer.writerow(
            [
                _iso(t.ts_open_ns),
                _iso(t.ts_close_ns) if t.ts_close_ns is not None else "",
                t.symbol,
                t.direction,
                t.model_version,
                t.qty,
                _round(t.entry_price, 8),
                _round(exit_price, 8) if exit_price is not None else "",
                t.reason or "open",
                round(t.duration_s(now), 3),
                t.gross,
                t.fees,
                t.funding,
                t.pnl,
                _round(t.pnl_pct, 4),
            ]
        )
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="round-trips.csv"'},
    )


def _pct_label(value: float) -> str:
    return f"{value:.2f} %"


def _iso(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / 1e9, UTC).isoformat()


def _round(value: Decimal, places: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-places))


async def trades_csv(request: Request) -> Response:
    panel = panel_of(request)
    flt, _ = trade_filter(request)
    rows, _ = await asyncio.to_thread(panel.reader.trades, flt, 0, CSV_MAX_ROWS)
    out = io.StringIO()
    names = [
        "ts_ns",
        "time_utc",
        "client_id",
        "symbol",
        "side",
        "price",
        "qty",
        "fee",
        "liquidity",
        "realized_pnl",
    ]
    writer = csv.DictWriter(out, fieldnames=names, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        when = datetime.fromtimestamp(row["ts_ns"] / 1e9, UTC).isoformat()
        writer.writerow({**row, "time_utc": when})
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="trades.csv"'},
    )
