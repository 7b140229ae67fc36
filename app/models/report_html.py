"""``report.html``: a backtest report's figures as one self-contained page.

No script, no font, no image and no stylesheet is fetched: the style is inline and the charts are
inline SVG drawn here (equity, drawdown, calibration), so the file opens from a USB stick on a
machine with no network. Every figure is rendered from the report's JSON document, never computed
again, and carries ``data-key`` (its path in ``report.json``) and ``data-fmt`` (how it is shown:
``money`` as the JSON's decimal text, ``pct`` a fraction as a percentage with 2 decimals, ``num``
and ``num4`` with 2 and 4 decimals, ``int``, ``text``), so a test can read the page back and
compare it with the JSON.
The layout is one column on a phone (390 px) and a grid on a laptop; wide tables scroll inside
their own box, never the page.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any

NONE = "—"
# Figures coloured by their sign (gains green, losses red); a fee or a count is not a gain.
_SIGNED = frozenset({"pnl", "return_pct", "net", "price", "avg_trade"})
_W, _H = 400, 190  # the line charts' viewBox; they scale to their column's width
_PAD_R, _PAD_T, _PAD_B = 10, 10, 24
_CHAR_W = 6.4  # an 11 px label's mean character width, to leave room for the y labels


def fmt(value: Any, kind: str) -> str:
    """A figure as the page shows it (see the module docstring)."""
    if value is None:
        return NONE
    if kind == "pct":
        return f"{float(value) * 100:.2f} %"
    if kind == "num":
        return f"{float(value):.2f}"
    if kind == "num4":
        return f"{float(value):.4f}"
    if kind == "int":
        return str(int(value))
    return str(value)  # money (already exact decimal text) and text


def _lookup(doc: dict[str, Any], key: str) -> Any:
    node: Any = doc
    for part in key.split("."):
        node = node[int(part)] if isinstance(node, list) else node.get(part)
        if node is None:
            return None
    return node


def _value(doc: dict[str, Any], key: str, kind: str, cls: str = "") -> str:
    value = _lookup(doc, key)
    sign = ""
    if key.rsplit(".", 1)[-1] in _SIGNED and value is not None:
        sign = " neg" if float(value) < 0 else " pos" if float(value) > 0 else ""
    return (
        f'<span class="v{sign}{" " + cls if cls else ""}" data-key="{escape(key)}" '
        f'data-fmt="{kind}">{escape(fmt(value, kind))}</span>'
    )


# -- charts ------------------------------------------------------------------------------------


def _nice_ticks(lo: float, hi: float, count: int = 4) -> list[float]:
    if hi <= lo:
        hi = lo + (abs(lo) * 0.01 or 1.0)
    raw = (hi - lo) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [first + k * step for k in range(int((hi - first) / step + 1e-9) + 1)]


def decimals(step: float) -> int:
    """The fewest decimals that show every multiple of ``step`` exactly (tick labels)."""
    for d in range(10):
        if abs(round(step, d) - step) <= abs(step) * 1e-6:
            return d
    return 10


def _time_label(ts_ms: float, span_ms: float) -> str:
    moment = datetime.fromtimestamp(ts_ms / 1000, UTC)
    if span_ms > 2 * 86_400_000:
        return moment.strftime("%m-%d")
    if span_ms > 600_000:
        return moment.strftime("%H:%M")
    return moment.strftime("%H:%M:%S")


def line_chart(
    points: Sequence[Sequence[float]],
    label: str,
    y_fmt: Callable[[float, float], str],
    css: str,
    area: bool = False,
) -> str:
    """An SVG line (or area down from 0) chart of ``(ts_ms, value)`` points, with UTC time;
    ``y_fmt(value, tick_step)`` labels the y ticks."""
    if len(points) < 2:
        return f'<p class="empty">{escape(label)}: not enough points to draw.</p>'
    xs = [float(p[0]) for p in points]
    ys = [float(p[1]) for p in points]
    y_lo, y_hi = min(ys), max(ys)
    if area:
        y_hi = max(y_hi, 0.0)
    if y_hi - y_lo < 1e-12:
        y_lo, y_hi = y_lo - (abs(y_lo) * 0.001 or 0.001), y_hi + (abs(y_hi) * 0.001 or 0.001)
    ticks = _nice_ticks(y_lo, y_hi)
    y_lo, y_hi = min(y_lo, ticks[0]), max(y_hi, ticks[-1])
    step = ticks[1] - ticks[0] if len(ticks) > 1 else abs(ticks[0]) or 1.0
    labels = [y_fmt(t, step) for t in ticks]
    pad_l = 10 + _CHAR_W * max(len(t) for t in labels)
    x_lo, x_hi = xs[0], xs[-1] if xs[-1] > xs[0] else xs[0] + 1
    iw, ih = _W - pad_l - _PAD_R, _H - _PAD_T - _PAD_B

    def sx(x: float) -> float:
        return pad_l + (x - x_lo) / (x_hi - x_lo) * iw

    def sy(y: float) -> float:
        return _PAD_T + (y_hi - y) / (y_hi - y_lo) * ih

    path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(xs, ys, strict=True))
    parts = [
        f'<svg class="chart {css}" viewBox="0 0 {_W} {_H}" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for t, text in zip(ticks, labels, strict=True):
        y = sy(t)
        parts.append(
            f'<line class="grid" x1="{pad_l:.1f}" x2="{_W - _PAD_R}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="ylab" x="{pad_l - 4:.1f}" y="{y + 3.5:.1f}">{escape(text)}</text>'
        )
    span = x_hi - x_lo
    for k in range(4):
        x = x_lo + span * k / 3
        anchor = "start" if k == 0 else "end" if k == 3 else "middle"
        parts.append(
            f'<text class="xlab" text-anchor="{anchor}" x="{sx(x):.1f}" y="{_H - 6}">'
            f"{escape(_time_label(x, span))}</text>"
        )
    if area:
        base = sy(0.0)
        parts.append(
            f'<polygon class="area" points="{sx(xs[0]):.1f},{base:.1f} {path} '
            f'{sx(xs[-1]):.1f},{base:.1f}"/>'
        )
    parts.append(f'<polyline class="line" points="{path}"/>')
    parts.append("</svg>")
    return "".join(parts)


def calibration_chart(cal: dict[str, Any]) -> str:
    """Mean predicted ``prob_up`` per bin against the share that went up, with the diagonal."""
    bins = [b for b in cal["bins"] if b["mean_p"] is not None and b["up_rate"] is not None]
    if not bins:
        return '<p class="empty">Calibration: no decision reached its horizon.</p>'
    values = [float(v) for b in bins for v in (b["mean_p"], b["up_rate"])]
    lo = max(0.0, math.floor(min(values) * 10) / 10)
    hi = min(1.0, math.ceil(max(values) * 10) / 10)
    if hi - lo < 0.2:
        mid = (hi + lo) / 2
        lo, hi = max(0.0, mid - 0.1), min(1.0, mid + 0.1)
    size, pad_l, pad_b, pad = 300, 44, 34, 18
    inner = size - pad_l - pad

    def sx(v: float) -> float:
        return pad_l + (v - lo) / (hi - lo) * inner

    def sy(v: float) -> float:
        return pad + (hi - v) / (hi - lo) * (size - pad - pad_b)

    largest = max(b["n"] for b in bins)
    parts = [
        f'<svg class="chart calib" viewBox="0 0 {size} {size}" role="img" '
        'aria-label="Calibration" xmlns="http://www.w3.org/2000/svg">'
    ]
    for t in _nice_ticks(lo, hi, 4):
        if lo - 1e-9 <= t <= hi + 1e-9:
            parts.append(
                f'<line class="grid" x1="{pad_l}" x2="{size - pad}" y1="{sy(t):.1f}" '
                f'y2="{sy(t):.1f}"/><text class="ylab" x="{pad_l - 4}" y="{sy(t) + 3.5:.1f}">'
                f'{t:.2f}</text><text class="xlab" text-anchor="middle" x="{sx(t):.1f}" '
                f'y="{size - pad_b + 14}">{t:.2f}</text>'
            )
    parts.append(
        f'<line class="diag" x1="{sx(lo):.1f}" y1="{sy(lo):.1f}" x2="{sx(hi):.1f}" '
        f'y2="{sy(hi):.1f}"/>'
    )
    base = cal.get("base_rate_up")
    if base is not None and lo <= base <= hi:
        parts.append(
            f'<line class="base" x1="{pad_l}" x2="{size - pad}" y1="{sy(base):.1f}" '
            f'y2="{sy(base):.1f}"/>'
        )
    line = " ".join(f"{sx(b['mean_p']):.1f},{sy(b['up_rate']):.1f}" for b in bins)
    parts.append(f'<polyline class="line" points="{line}"/>')
    for b in bins:
        r = 3 + 5 * math.sqrt(b["n"] / largest)
        parts.append(
            f'<circle class="dot" cx="{sx(b["mean_p"]):.1f}" cy="{sy(b["up_rate"]):.1f}" '
            f'r="{r:.1f}"><title>bin {b["bin"]}: {b["n"]} decisions, mean prob_up '
            f"{b['mean_p']:.3f}, went up {b['up_rate']:.3f}</title></circle>"
        )
    parts.append(
        f'<text class="axis" text-anchor="middle" x="{pad_l + inner / 2:.0f}" y="{size - 4}">'
        "predicted prob_up (bin mean)</text>"
        f'<text class="axis" text-anchor="middle" transform="translate(11 {size / 2 - 10:.0f}) '
        'rotate(-90)">share that went up</text></svg>'
    )
    return "".join(parts)


# -- page ----------------------------------------------------------------------------------------


def _card(doc: dict[str, Any], title: str, key: str, kind: str, note: str = "") -> str:
    extra = f'<span class="note">{escape(note)}</span>' if note else ""
    label = f'<span class="k">{escape(title)}</span>'
    return f'<div class="card">{label}{_value(doc, key, kind)}{extra}</div>'


def _table(
    doc: dict[str, Any], key: str, columns: Sequence[tuple[str, str, str]], limit: int | None = None
) -> str:
    rows = _lookup(doc, key) or []
    if not rows:
        return '<p class="empty">None.</p>'
    head = "".join(
        f'<th class="{"t" if kind == "text" else "n"}">{escape(title)}</th>'
        for title, _, kind in columns
    )
    body = []
    for k, _row in enumerate(rows[:limit]):
        cells = "".join(
            f'<td class="{"t" if kind == "text" else "n"}">'
            f"{_value(doc, f'{key}.{k}.{field}', kind)}</td>"
            for _, field, kind in columns
        )
        body.append(f"<tr>{cells}</tr>")
    more = ""
    if limit is not None and len(rows) > limit:
        more = f'<p class="note">The first {limit} of {len(rows)}; report.json has them all.</p>'
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>{more}"
    )


_GROUP_COLUMNS = (
    ("Trades", "trades", "int"),
    ("Open", "open", "int"),
    ("Wins", "wins", "int"),
    ("Hit rate", "hit_rate", "pct"),
    ("Net PnL", "pnl", "money"),
    ("Fees", "fees", "money"),
    ("Funding", "funding", "money"),
    ("Slippage cost", "slippage", "money"),
    ("Notional", "notional", "money"),
)
_CLOSED_NOTE = (
    '<p class="note">Money over closed round trips; a trip still open at the end is counted '
    "under Open and shown with its fees so far under Round trips.</p>"
)
_TRIP_COLUMNS = (
    ("Symbol", "symbol", "text"),
    ("Side", "side", "text"),
    ("Opened (UTC)", "opened", "text"),
    ("Held s", "duration_s", "num"),
    ("Qty", "qty", "money"),
    ("Entry", "entry_price", "money"),
    ("Exit", "exit_price", "money"),
    ("Entry reason", "entry_reason", "text"),
    ("Exit reason", "exit_reason", "text"),
    ("Fees", "fees", "money"),
    ("Funding", "funding", "money"),
    ("Net PnL", "pnl", "money"),
)
_CAL_COLUMNS = (
    ("Decile", "bin", "int"),
    ("Decisions", "n", "int"),
    ("p from", "p_min", "num4"),
    ("p to", "p_max", "num4"),
    ("Mean p", "mean_p", "num4"),
    ("Went up", "up_rate", "pct"),
)


def _section(title: str, body: str, cls: str = "") -> str:
    return f'<section class="{cls}"><h2>{escape(title)}</h2>{body}</section>'


def render(doc: dict[str, Any]) -> str:
    """The whole page for one report document (``report.json``'s content)."""
    s, m, cal = doc["summary"], doc["model"], doc["calibration"]
    returns_note = f"{s['returns_interval_s']} s returns, annualised; needs {s['min_returns']}"
    cards = "".join(
        _card(doc, *c)
        for c in (
            ("Net PnL (USDT)", "summary.pnl", "money", "after fees and funding"),
            ("Return", "summary.return_pct", "pct", ""),
            ("Round trips", "summary.trades", "int", "closed"),
            ("Hit rate", "summary.hit_rate", "pct", "winning trips"),
            ("Sharpe", "summary.sharpe", "num", returns_note),
            ("Sortino", "summary.sortino", "num", returns_note),
            ("Max drawdown", "summary.max_drawdown", "pct", "of the running peak"),
            ("Exposure", "summary.exposure", "pct", "time with a position"),
            ("Turnover", "summary.turnover", "num", "traded notional / start equity"),
            ("Fees", "summary.fees", "money", ""),
            ("Funding", "summary.funding", "money", "+ received, − paid"),
            ("Profit factor", "summary.profit_factor", "num", "gross wins / gross losses"),
        )
    )
    pnl_rows = "".join(
        f'<tr><th class="t">{escape(title)}</th><td class="n">{_value(doc, key, "money")}</td></tr>'
        for title, key in (
            ("Price PnL (realised + open)", "pnl.price"),
            ("Fees", "pnl.fees"),
            ("Funding", "pnl.funding"),
            ("Net PnL", "pnl.net"),
        )
    )
    pnl_table = (
        f'<div class="scroll"><table class="kv"><tbody>{pnl_rows}</tbody></table></div>'
        f'<p class="note">Slippage against the mid when each order was made, already inside the '
        f"price PnL: {_value(doc, 'pnl.slippage', 'money')} USDT.</p>"
    )
    cal_text = (
        f'<p class="note">prob_up at each decision against the last trade price one horizon '
        f"({_value(doc, 'calibration.horizon_s', 'num')} s) later: "
        f"{_value(doc, 'calibration.resolved', 'int')} decisions resolved, "
        f"{_value(doc, 'calibration.flat', 'int')} flat (left out), "
        f"{_value(doc, 'calibration.unresolved', 'int')} without an outcome. "
        f"AUC {_value(doc, 'calibration.auc', 'num4')}, Brier "
        f"{_value(doc, 'calibration.brier', 'num4')}, went up overall "
        f"{_value(doc, 'calibration.base_rate_up', 'pct')}. On the chart the diagonal is a "
        "perfectly calibrated model, the dashed line the overall share.</p>"
    )
    reasons = doc["exit_reasons"]
    reason_list = (
        "".join(
            f'<li><span class="k">{escape(r)}</span>{_value(doc, f"exit_reasons.{r}", "int")}</li>'
            for r in reasons
        )
        if reasons
        else "<li>none</li>"
    )
    activity = "".join(
        f'<li><span class="k">{escape(title)}</span>{_value(doc, key, "int")}</li>'
        for title, key in (
            ("Events", "summary.events"),
            ("Decisions", "summary.decisions"),
            ("Signals", "summary.signals"),
            ("Orders", "summary.orders"),
            ("Fills", "summary.fills"),
            ("Warm-up inputs replayed", "summary.warmups"),
        )
    )
    skipped = "".join(
        f'<li><span class="k">skipped: {escape(r)}</span>'
        f"{_value(doc, f'summary.skipped.{r}', 'int')}</li>"
        for r in s["skipped"]
    )
    body = "".join(
        (
            "<header><h1>Backtest report</h1>",
            '<p class="sub">Model ',
            _value(doc, "model.model_version", "text", "strong"),
            " on ",
            escape(", ".join(s["symbols"])),
            '</p><p class="sub">',
            _value(doc, "period.start", "text"),
            " → ",
            _value(doc, "period.end", "text"),
            " (",
            _value(doc, "summary.span_s", "num"),
            ' s)</p><p class="sub hash">sha256 ',
            _value(doc, "model.sha256", "text"),
            "</p></header>",
            f'<section class="cards">{cards}</section>',
            '<div class="grid2">',
            _section(
                "Equity (USDT)",
                line_chart(
                    doc["curves"]["equity"],
                    "Equity",
                    lambda v, step: f"{v:,.{decimals(step)}f}",
                    "equity",
                ),
            ),
            _section(
                "Drawdown",
                line_chart(
                    doc["curves"]["drawdown"],
                    "Drawdown",
                    lambda v, step: f"{v * 100:.{decimals(step * 100)}f}%",
                    "dd",
                    True,
                ),
            ),
            "</div>",
            '<div class="grid2">',
            _section("PnL decomposition (USDT)", pnl_table),
            _section(
                "Exits and activity",
                f'<ul class="kvlist">{reason_list}</ul><ul class="kvlist">{activity}{skipped}</ul>',
            ),
            "</div>",
            _section(
                "Calibration",
                f'<div class="calgrid"><div>{calibration_chart(cal)}</div><div>{cal_text}'
                f"{_table(doc, 'calibration.bins', _CAL_COLUMNS)}</div></div>",
            ),
            _section(
                "By symbol",
                _table(doc, "by_symbol", (("Symbol", "symbol", "text"), *_GROUP_COLUMNS))
                + _CLOSED_NOTE,
            ),
            _section(
                "By side",
                _table(doc, "by_side", (("Side", "side", "text"), *_GROUP_COLUMNS)) + _CLOSED_NOTE,
            ),
            _section("Round trips", _table(doc, "round_trips", _TRIP_COLUMNS, limit=500)),
            '<footer><p class="note">Sources: ',
            escape(", ".join(doc["sources"]) or "not recorded"),
            f". Model horizon {m['horizon_bars']} bars of {m['bar_interval_s']} s; thresholds "
            f"long ≥ {m['long_threshold']}, short ≤ {m['short_threshold']}. Money in USDT; "
            "times UTC.</p></footer>",
        )
    )
    title = f"Backtest report: {m['model_version']}"
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )


_CSS = """
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1c2430;
background:#f4f6f9}
main{max-width:1180px;margin:0 auto;padding:16px}
h1{font-size:1.4rem;margin:0 0 4px}
h2{font-size:1.05rem;margin:0 0 10px}
.sub{margin:2px 0;color:#4a5666;overflow-wrap:anywhere}
.hash{font-size:.8rem;overflow-wrap:anywhere}
section{background:#fff;border:1px solid #dde3ea;border-radius:8px;padding:14px;margin:14px 0;
min-width:0}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:10px;
background:none;border:0;padding:0}
.card{background:#fff;border:1px solid #dde3ea;border-radius:8px;padding:10px 12px;
display:flex;flex-direction:column;min-width:0}
.card .k{font-size:.8rem;color:#4a5666}
.card .v{font-size:1.25rem;font-weight:600;font-variant-numeric:tabular-nums;overflow-wrap:anywhere}
.card .note{font-size:.72rem;color:#6b7684}
.pos{color:#11703a}.neg{color:#b3261e}
.grid2{display:grid;grid-template-columns:1fr;gap:0 14px}
.calgrid{display:grid;grid-template-columns:1fr;gap:14px;align-items:start}
.calgrid>div{min-width:0}
.calgrid svg{max-width:420px;margin:0 auto;display:block}
@media (min-width:900px){.grid2{grid-template-columns:1fr 1fr}
.calgrid{grid-template-columns:minmax(300px,420px) 1fr}}
.chart{width:100%;height:auto;display:block}
.chart text{font-size:11px;fill:#4a5666}
.chart .ylab{text-anchor:end}
.chart .grid{stroke:#e6eaef;stroke-width:1}
.chart .line{fill:none;stroke:#1f5fbf;stroke-width:1.6;stroke-linejoin:round}
.chart.dd .line{stroke:#b3261e}
.chart .area{fill:#b3261e;fill-opacity:.18}
.chart .diag{stroke:#8a94a3;stroke-dasharray:0;stroke-width:1}
.chart .base{stroke:#8a94a3;stroke-dasharray:4 3;stroke-width:1}
.chart .dot{fill:#1f5fbf;fill-opacity:.75}
.chart .axis{font-size:11px}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch}
table{border-collapse:collapse;width:100%;font-size:.85rem;font-variant-numeric:tabular-nums}
th,td{padding:5px 8px;border-bottom:1px solid #eef1f4;white-space:nowrap}
th{font-weight:600;color:#4a5666;background:#f8f9fb}
.n{text-align:right}.t{text-align:left}
table.kv th{background:none}
.kvlist{list-style:none;margin:0 0 10px;padding:0;display:grid;
grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:4px 14px}
.kvlist li{display:flex;justify-content:space-between;gap:8px;border-bottom:1px solid #eef1f4;
padding:3px 0}
.kvlist .k{color:#4a5666}
.note{font-size:.82rem;color:#4a5666;overflow-wrap:anywhere}
.empty{color:#6b7684;font-style:italic}
footer{margin:8px 0 24px}
"""
