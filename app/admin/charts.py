"""Server-rendered SVG charts: no chart script in the browser, nothing the CSP has to allow.

Colours and sizes come from presentation attributes and classes in the panel's stylesheet (inline
``style`` attributes would need ``'unsafe-inline'``). Values are converted to float only here, for
drawing; the tables beside the charts show the exact decimals.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from html import escape

from markupsafe import Markup

WIDTH, HEIGHT = 640, 240
PAD_L, PAD_R, PAD_T, PAD_B = 64, 12, 12, 28


def _fmt(value: float) -> str:
    return f"{value:,.2f}"


def _when(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / 1e9, UTC).strftime("%m-%d %H:%M")


def _frame(label: str, body: str, lo: float, hi: float, left: str, right: str) -> Markup:
    return Markup(  # noqa: S704 - every interpolated text is escaped
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(label)}" preserveAspectRatio="none">'
        f"<title>{escape(label)}</title>"
        f'<line class="axis" x1="{PAD_L}" y1="{HEIGHT - PAD_B}" x2="{WIDTH - PAD_R}" '
        f'y2="{HEIGHT - PAD_B}"/>'
        f'<line class="axis" x1="{PAD_L}" y1="{PAD_T}" x2="{PAD_L}" y2="{HEIGHT - PAD_B}"/>'
        f'<text class="tick" x="{PAD_L - 4}" y="{PAD_T + 10}" text-anchor="end">{_fmt(hi)}</text>'
        f'<text class="tick" x="{PAD_L - 4}" y="{HEIGHT - PAD_B}" text-anchor="end">'
        f"{_fmt(lo)}</text>"
        f'<text class="tick" x="{PAD_L}" y="{HEIGHT - 8}">{escape(left)}</text>'
        f'<text class="tick" x="{WIDTH - PAD_R}" y="{HEIGHT - 8}" text-anchor="end">'
        f"{escape(right)}</text>"
        f"{body}</svg>"
    )


def empty(label: str, message: str) -> Markup:
    return Markup(  # noqa: S704
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(label)}">'
        f"<title>{escape(label)}</title>"
        f'<text class="empty" x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">'
        f"{escape(message)}</text></svg>"
    )


def line_chart(label: str, points: Sequence[tuple[int, Decimal]], area: bool = False) -> Markup:
    """A line over time: ``points`` are (ts_ns, value), oldest first; ``area`` shades between
    the line and the top of the range (a drawdown under its zero)."""
    if not points:
        return empty(label, "no data yet")
    xs = [p[0] for p in points]
    ys = [float(p[1]) for p in points]
    lo, hi = min(ys), max(ys)
    if hi == lo:
        lo, hi = lo - 1.0, hi + 1.0
    x0, x1 = xs[0], xs[-1] if xs[-1] > xs[0] else xs[0] + 1
    plot_w, plot_h = WIDTH - PAD_L - PAD_R, HEIGHT - PAD_T - PAD_B
    coords = " ".join(
        f"{PAD_L + (x - x0) / (x1 - x0) * plot_w:.1f},{PAD_T + (hi - y) / (hi - lo) * plot_h:.1f}"
        for x, y in zip(xs, ys, strict=True)
    )
    body = f'<polyline class="series" fill="none" points="{coords}"/>'
    if area:
        right = PAD_L + plot_w if xs[-1] > xs[0] else PAD_L
        shade = f"{coords} {right:.1f},{PAD_T} {PAD_L},{PAD_T}"
        body = f'<polygon class="area" points="{shade}"/>' + body
    return _frame(label, body, lo, hi, _when(xs[0]), _when(xs[-1]))


def bar_chart(label: str, bars: Sequence[tuple[str, Decimal]]) -> Markup:
    """Bars around zero (gains up, losses down): ``bars`` are (label, value)."""
    if not bars:
        return empty(label, "no data yet")
    ys = [float(v) for _, v in bars]
    lo, hi = min(0.0, *ys), max(0.0, *ys)
    if hi == lo:
        hi = lo + 1.0
    plot_w, plot_h = WIDTH - PAD_L - PAD_R, HEIGHT - PAD_T - PAD_B
    # A slot per bar, never wider than a week's bar: one day is one bar, not a full-width block.
    step = min(plot_w / len(bars), plot_w / 7)
    x0 = PAD_L + (plot_w - step * len(bars)) / 2
    zero_y = PAD_T + hi / (hi - lo) * plot_h
    parts = [
        f'<line class="zero" x1="{PAD_L}" y1="{zero_y:.1f}" '
        f'x2="{WIDTH - PAD_R}" y2="{zero_y:.1f}"/>'
    ]
    for i, ((name, value), y) in enumerate(zip(bars, ys, strict=True)):
        top = PAD_T + (hi - max(y, 0.0)) / (hi - lo) * plot_h
        height = abs(y) / (hi - lo) * plot_h
        cls = "gain" if y >= 0 else "loss"
        parts.append(
            f'<rect class="{cls}" x="{x0 + i * step + step * 0.1:.1f}" y="{top:.1f}" '
            f'width="{step * 0.8:.1f}" height="{max(height, 0.5):.1f}">'
            f"<title>{escape(name)}: {escape(str(value))}</title></rect>"
        )
    for i, (name, _) in enumerate(bars):
        if len(bars) <= 7 or i in (0, len(bars) - 1):
            parts.append(
                f'<text class="tick" x="{x0 + (i + 0.5) * step:.1f}" y="{HEIGHT - 8}" '
                f'text-anchor="middle">{escape(name)}</text>'
            )
    return _frame(label, "".join(parts), lo, hi, "", "")


SPARK_W, SPARK_H = 240, 48


def sparkline(label: str, values: Sequence[Decimal]) -> Markup:
    """A small line without axes (the numbers stand beside it): ``values`` oldest first."""
    if len(values) < 2:
        return Markup(  # noqa: S704
            f'<svg class="spark" viewBox="0 0 {SPARK_W} {SPARK_H}" role="img" '
            f'aria-label="{escape(label)}: not enough points yet"></svg>'
        )
    ys = [float(v) for v in values]
    lo, hi = min(ys), max(ys)
    if hi == lo:
        lo, hi = lo - 1.0, hi + 1.0
    step = SPARK_W / (len(ys) - 1)
    coords = " ".join(
        f"{i * step:.1f},{2 + (hi - y) / (hi - lo) * (SPARK_H - 4):.1f}" for i, y in enumerate(ys)
    )
    trend = "gain" if ys[-1] >= ys[0] else "loss"
    return Markup(  # noqa: S704 - only numbers and an escaped label are interpolated
        f'<svg class="spark {trend}" viewBox="0 0 {SPARK_W} {SPARK_H}" role="img" '
        f'aria-label="{escape(label)}" preserveAspectRatio="none">'
        f"<title>{escape(label)}</title>"
        f'<polyline class="series" fill="none" points="{coords}"/></svg>'
    )


def drawdown(points: Sequence[tuple[int, Decimal]]) -> list[tuple[int, Decimal]]:
    """Drawdown from the running peak, in percent (0 or negative), for each equity point."""
    out: list[tuple[int, Decimal]] = []
    peak: Decimal | None = None
    for ts, value in points:
        peak = value if peak is None or value > peak else peak
        out.append((ts, (value - peak) / peak * 100 if peak else Decimal(0)))
    return out
