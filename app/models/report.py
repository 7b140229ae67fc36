"""A backtest's report: every figure as JSON (``report.json``) and the same figures as one
self-contained HTML page (``report.html``, rendered by :mod:`app.models.report_html`).

What is in it, beyond :class:`~app.models.backtest.BacktestResult`'s summary:

- ``pnl``: the net PnL decomposed: price PnL (realised and unrealised) − fees + funding; slippage
  (fills against the mid when their order was made) is part of the price PnL, shown on its own;
- ``by_symbol`` and ``by_side``: over closed round trips (the trips still open are counted
  apart): trips, wins, hit rate, net PnL, fees, funding, slippage cost and traded notional;
- ``round_trips``: each closed or still open trip with the decision that opened it and why it
  ended (signal, stop, take-profit, ...);
- ``calibration``: the model's ``prob_up`` at each decision against what the price did over the
  model's horizon (last trade price at the decision vs at the first decision a horizon later;
  equal prices are counted as flat and left out), in ten equal-count bins of predicted
  probability (deciles), with the AUC and Brier score over the same decisions;
- ``curves``: equity and drawdown, thinned to at most :data:`CURVE_POINTS` points keeping each
  bucket's extremes, so the plotted worst drawdown is the reported one.

Money is exact decimal text with 4 decimals, ratios are fractions (0.25 is 25 %) with 4 decimals,
times are epoch milliseconds (``ts_*_ms``) with ISO 8601 UTC beside the period's ends.
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from app.engine.inference import LoadedModel
from app.models import metrics
from app.models.backtest import MIN_RETURNS, RETURNS_INTERVAL_S, BacktestResult, Decision, drawdowns
from app.models.trips import Trip, build

SCHEMA = 1
CURVE_POINTS = 1200
CALIBRATION_BINS = 10
TRIPS_SHOWN = 500  # in the HTML; report.json has them all
_Q = Decimal("0.0001")


def money(value: Decimal) -> str:
    return str(value.quantize(_Q))


def ratio(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, 4)


def iso(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _group(trips: Iterable[Trip], key: str) -> list[dict[str, Any]]:
    groups: dict[str, list[Trip]] = {}
    for t in trips:
        groups.setdefault(getattr(t, key), []).append(t)
    out = []
    for name in sorted(groups):
        ts = groups[name]
        closed = [t for t in ts if not t.is_open]
        wins = sum(1 for t in closed if t.pnl > 0)
        out.append(
            {
                key: name,
                "trades": len(closed),
                "open": len(ts) - len(closed),
                "wins": wins,
                "hit_rate": ratio(wins / len(closed)) if closed else None,
                "pnl": money(sum((t.pnl for t in closed), Decimal(0))),
                "fees": money(sum((t.fees for t in closed), Decimal(0))),
                "funding": money(sum((t.funding for t in closed), Decimal(0))),
                "slippage": money(sum((t.slippage for t in closed), Decimal(0))),
                "notional": money(
                    sum((t.entry_notional + t.exit_notional for t in closed), Decimal(0))
                ),
            }
        )
    return out


def _entry_reasons(trips: list[Trip], decisions: Sequence[Decision]) -> None:
    """Name each trip's entry after the latest decision of its symbol that sent an order before
    the trip's first fill (the paper exchange fills after its latency)."""
    by_symbol: dict[str, list[Decision]] = {}
    for d in decisions:
        if d.action == "order":
            by_symbol.setdefault(d.symbol, []).append(d)
    for t in trips:
        ds = by_symbol.get(t.symbol, [])
        k = bisect.bisect_right([d.ts_ms for d in ds], t.ts_open_ns // 1_000_000) - 1
        if k >= 0:
            t.entry_reason = f"signal, prob_up {ds[k].prob:.3f}"


def _trip_row(t: Trip) -> dict[str, Any]:
    exit_price = t.exit_price
    return {
        "symbol": t.symbol,
        "side": t.side,
        "ts_open_ms": t.ts_open_ns // 1_000_000,
        "opened": iso(t.ts_open_ns // 1_000_000)[:19].replace("T", " "),
        "ts_close_ms": None if t.ts_close_ns is None else t.ts_close_ns // 1_000_000,
        "duration_s": None
        if t.ts_close_ns is None
        else round((t.ts_close_ns - t.ts_open_ns) / 1e9, 1),
        "qty": str(t.qty),
        "entry_price": money(t.entry_price),
        "exit_price": None if exit_price is None else money(exit_price),
        "entry_reason": t.entry_reason,
        "exit_reason": t.exit_reason or "open",
        "gross": money(t.gross),
        "fees": money(t.fees),
        "funding": money(t.funding),
        "slippage": money(t.slippage),
        "pnl": money(t.pnl),
    }


def calibration(
    decisions: Sequence[Decision], horizon_ms: int, bar_ms: int, bins: int = CALIBRATION_BINS
) -> dict[str, Any]:
    """Predicted ``prob_up`` against the price's move over ``horizon_ms`` (see the docstring)."""
    series: dict[str, tuple[list[int], list[float]]] = {}
    for d in decisions:
        if d.price is not None:
            ts, prices = series.setdefault(d.symbol, ([], []))
            ts.append(d.ts_ms)
            prices.append(d.price)
    # A later decision this far past the horizon (a feed gap) says nothing about the horizon.
    slack = max(2 * bar_ms, horizon_ms // 10)
    probs: list[float] = []
    ups: list[float] = []
    flat = unresolved = 0
    for d in decisions:
        if d.price is None:
            unresolved += 1
            continue
        ts, prices = series[d.symbol]
        due = d.ts_ms + horizon_ms
        j = bisect.bisect_left(ts, due)
        if j >= len(ts) or ts[j] - due > slack:
            unresolved += 1
        elif prices[j] == d.price:
            flat += 1
        else:
            probs.append(d.prob)
            ups.append(1.0 if prices[j] > d.price else 0.0)
    p, y = np.asarray(probs), np.asarray(ups)
    order = np.argsort(p, kind="stable")
    table = []
    if len(p):
        for k, idx in enumerate(np.array_split(order, min(bins, len(p)))):
            table.append(
                {
                    "bin": k + 1,
                    "n": len(idx),
                    "p_min": ratio(float(p[idx].min())),
                    "p_max": ratio(float(p[idx].max())),
                    "mean_p": ratio(float(p[idx].mean())),
                    "up_rate": ratio(float(y[idx].mean())),
                }
            )
    return {
        "horizon_s": horizon_ms / 1000,
        "decisions": len(decisions),
        "resolved": len(p),
        "flat": flat,
        "unresolved": unresolved,
        "base_rate_up": ratio(float(y.mean())) if len(y) else None,
        "auc": ratio(metrics.auc(p, y)) if len(y) else None,
        "brier": ratio(metrics.brier(p, y)) if len(y) else None,
        "bins": table,
    }


def thin(points: Sequence[tuple[int, float]], limit: int = CURVE_POINTS) -> list[tuple[int, float]]:
    """At most ``limit`` points: each bucket's lowest and highest, in time order, plus the ends."""
    if len(points) <= limit:
        return list(points)
    size = math.ceil(len(points) / (limit // 2))
    kept = {0, len(points) - 1}
    for start in range(0, len(points), size):
        bucket = range(start, min(start + size, len(points)))
        kept.add(min(bucket, key=lambda k: points[k][1]))
        kept.add(max(bucket, key=lambda k: points[k][1]))
    return [points[k] for k in sorted(kept)]


def build_report(
    result: BacktestResult, model: LoadedModel, sources: Sequence[str] = ()
) -> dict[str, Any]:
    """Every figure of the report (see the module docstring), JSON-ready."""
    trace, c = result.trace, model.contract
    trips = build(trace.fills, trace.funding)
    _entry_reasons(trips, trace.decisions)
    closed = [t for t in trips if not t.is_open]
    wins = [t.pnl for t in closed if t.pnl > 0]
    losses = [t.pnl for t in closed if t.pnl <= 0]
    start_ms = trace.equity[0][0] // 1_000_000 if trace.equity else 0
    end_ms = trace.equity[-1][0] // 1_000_000 if trace.equity else 0
    equity = [(ts // 1_000_000, float(e)) for ts, e in trace.equity]
    dd = drawdowns(e for _, e in trace.equity)
    gross_loss = -sum(losses, Decimal(0))
    exits: dict[str, int] = {}
    for t in closed:
        exits[t.exit_reason] = exits.get(t.exit_reason, 0) + 1
    summary = result.as_dict()
    summary.update(
        wins=len(wins),
        losses=len(losses),
        open_trips=len(trips) - len(closed),
        return_pct=ratio(float(result.pnl / result.initial_equity))
        if result.initial_equity
        else None,
        profit_factor=ratio(float(sum(wins, Decimal(0)) / gross_loss)) if gross_loss else None,
        avg_trade=money(sum((t.pnl for t in closed), Decimal(0)) / len(closed)) if closed else None,
        returns_interval_s=RETURNS_INTERVAL_S,
        min_returns=MIN_RETURNS,
        warmups=trace.warmups,
    )
    return {
        "schema": SCHEMA,
        "model": {
            "model_version": c.model_version,
            "sha256": model.sha256,
            "bar_interval_s": c.bar_interval_s,
            "horizon_bars": c.horizon_bars,
            "long_threshold": c.long_threshold,
            "short_threshold": c.short_threshold,
        },
        "sources": list(sources),
        "period": {
            "ts_start_ms": start_ms,
            "ts_end_ms": end_ms,
            "start": iso(start_ms),
            "end": iso(end_ms),
        },
        "summary": summary,
        "pnl": {
            "price": money(result.pnl + result.fees - result.funding),
            "fees": money(-result.fees),
            "funding": money(result.funding),
            "net": money(result.pnl),
            "slippage": money(-result.slippage),
        },
        "exit_reasons": dict(sorted(exits.items())),
        "by_symbol": _group(trips, "symbol"),
        "by_side": _group(trips, "side"),
        "calibration": calibration(
            trace.decisions, c.horizon_bars * c.bar_interval_s * 1000, c.bar_interval_s * 1000
        ),
        "round_trips": [_trip_row(t) for t in trips],
        "curves": {
            "equity": [[ts, round(v, 4)] for ts, v in thin(equity)],
            "drawdown": [
                [ts, round(v, 6)]
                for ts, v in thin([(t, -x) for (t, _), x in zip(equity, dd, strict=True)])
            ],
        },
    }


def write_report(
    result: BacktestResult, model: LoadedModel, out_dir: Path, sources: Sequence[str] = ()
) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.html`` into ``out_dir`` (made if missing)."""
    from app.models.report_html import render

    doc = build_report(result, model, sources)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out_dir / "report.json", out_dir / "report.html"
    json_path.write_text(json.dumps(doc, indent=1) + "\n")
    html_path.write_text(render(doc))
    return json_path, html_path
