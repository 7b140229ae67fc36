"""Server-rendered SVG charts: no chart script in the browser, nothing the CSP has to allow.

Colours and sizes come from presentation attributes and classes in the panel's stylesheet (inline
``style`` attributes would need ``'unsafe-inline'``). Values are converted to float only here, for
drawing; the tables beside the charts show the exact decimals.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from html import escape

from markupsafe import Markup

WIDTH, HEIGHT = 640, 240
# A phone's card is about 350 px wide: a chart drawn that wide keeps its labels at 12 px there
# (the 640-wide one, scaled down, would print them at 6 px).
NARROW = 360
PAD_L, PAD_R, PAD_T, PAD_B = 64, 12, 12, 28


def _fmt(value: float) -> str:
    return f"{value:,.2f}"


def _when(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / 1e9, UTC).strftime("%m-%d %H:%M")


def _frame(
    label: str,
    body: str,
    lo: float,
    hi: float,
    left: str,
    right: str,
    y_format: Callable[[float], str] = _fmt,
    width: int = WIDTH,
) -> Markup:
    return Markup(  # noqa: S704 - every interpolated text is escaped
        f'<svg class="chart" viewBox="0 0 {width} {HEIGHT}" role="img" '
        f'aria-label="{escape(label)}" preserveAspectRatio="none">'
        f"<title>{escape(label)}</title>"
        f'<line class="axis" x1="{PAD_L}" y1="{HEIGHT - PAD_B}" x2="{width - PAD_R}" '
        f'y2="{HEIGHT - PAD_B}"/>'
        f'<line class="axis" x1="{PAD_L}" y1="{PAD_T}" x2="{PAD_L}" y2="{HEIGHT - PAD_B}"/>'
        f'<text class="tick" x="{PAD_L - 4}" y="{PAD_T + 10}" text-anchor="end">'
        f"{escape(y_format(hi))}</text>"
        f'<text class="tick" x="{PAD_L - 4}" y="{HEIGHT - PAD_B}" text-anchor="end">'
        f"{escape(y_format(lo))}</text>"
        f'<text class="tick" x="{PAD_L}" y="{HEIGHT - 8}">{escape(left)}</text>'
        f'<text class="tick" x="{width - PAD_R}" y="{HEIGHT - 8}" text-anchor="end">'
        f"{escape(right)}</text>"
        f"{body}</svg>"
    )


def empty(label: str, message: str, width: int = WIDTH) -> Markup:
    return Markup(  # noqa: S704
        f'<svg class="chart" viewBox="0 0 {width} {HEIGHT}" role="img" '
        f'aria-label="{escape(label)}">'
        f"<title>{escape(label)}</title>"
        f'<text class="empty" x="{width / 2}" y="{HEIGHT / 2}" text-anchor="middle">'
        f"{escape(message)}</text></svg>"
    )


def line_chart(
    label: str,
    points: Sequence[tuple[int, Decimal]],
    area: bool = False,
    y_range: tuple[float, float] | None = None,
    y_format: Callable[[float], str] = _fmt,
    width: int = WIDTH,
) -> Markup:
    """A line over time: ``points`` are (ts_ns, value), oldest first; ``area`` shades between
    the line and the top of the range (a drawdown under its zero). ``y_range`` fixes the axis
    (a percentage: 0 to 100) instead of fitting it to the values; ``y_format`` labels it."""
    if not points:
        return empty(label, "no data yet", width)
    xs = [p[0] for p in points]
    ys = [float(p[1]) for p in points]
    lo, hi = y_range if y_range is not None else (min(ys), max(ys))
    if hi == lo:
        lo, hi = lo - 1.0, hi + 1.0
    x0, x1 = xs[0], xs[-1] if xs[-1] > xs[0] else xs[0] + 1
    plot_w, plot_h = width - PAD_L - PAD_R, HEIGHT - PAD_T - PAD_B
    xy = [
        f"{PAD_L + (x - x0) / (x1 - x0) * plot_w:.1f},{PAD_T + (hi - y) / (hi - lo) * plot_h:.1f}"
        for x, y in zip(xs, ys, strict=True)
    ]
    coords = " ".join(xy)
    # A stretch without points (the engine was stopped) is a gap, not a straight line across it.
    runs, start = [], 0
    for i in gaps(xs):
        runs.append(xy[start:i])
        start = i
    runs.append(xy[start:])
    body = "".join(
        f'<polyline class="series" fill="none" points="{" ".join(run)}"/>' for run in runs
    )
    if len(points) == 1:  # one point draws no line: a dot says where it is
        cx, cy = coords.split(",")
        body += f'<circle class="dot" cx="{cx}" cy="{cy}" r="4"/>'
    if area:  # each run shaded up to the top of the range, between its own first and last x
        shades = "".join(
            f'<polygon class="area" points="{" ".join(run)} {run[-1].split(",")[0]},{PAD_T} '
            f'{run[0].split(",")[0]},{PAD_T}"/>'
            for run in runs
        )
        body = shades + body
    return _frame(label, body, lo, hi, _when(xs[0]), _when(xs[-1]), y_format, width)


GAP_FACTOR = 10


def gaps(xs: Sequence[int]) -> list[int]:
    """Indexes where a new run of points starts: after a step longer than ``GAP_FACTOR`` times
    the median step (equity is recorded at a steady pace while the engine runs)."""
    steps = [b - a for a, b in zip(xs, xs[1:], strict=False)]
    if len(steps) < 3:
        return []
    typical = sorted(steps)[len(steps) // 2]
    return [i + 1 for i, step in enumerate(steps) if typical and step > GAP_FACTOR * typical]


def bar_chart(label: str, bars: Sequence[tuple[str, Decimal]], width: int = WIDTH) -> Markup:
    """Bars around zero (gains up, losses down): ``bars`` are (label, value)."""
    if not bars:
        return empty(label, "no data yet", width)
    ys = [float(v) for _, v in bars]
    lo, hi = min(0.0, *ys), max(0.0, *ys)
    if hi == lo:
        hi = lo + 1.0
    plot_w, plot_h = width - PAD_L - PAD_R, HEIGHT - PAD_T - PAD_B
    # A slot per bar, never wider than a week's bar: one day is one bar, not a full-width block.
    step = min(plot_w / len(bars), plot_w / 7)
    x0 = PAD_L + (plot_w - step * len(bars)) / 2
    zero_y = PAD_T + hi / (hi - lo) * plot_h
    parts = [
        f'<line class="zero" x1="{PAD_L}" y1="{zero_y:.1f}" '
        f'x2="{width - PAD_R}" y2="{zero_y:.1f}"/>'
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
    return _frame(label, "".join(parts), lo, hi, "", "", width=width)


def both_widths(draw: Callable[[int], Markup]) -> Markup:
    """A chart drawn at the laptop's width and at a phone's; the stylesheet shows the one that
    fits (``.chart-wide`` / ``.chart-narrow``), so labels stay legible on both."""
    return Markup(  # noqa: S704 - both halves are charts rendered (and escaped) above
        f'<span class="chart-wide">{draw(WIDTH)}</span>'
        f'<span class="chart-narrow">{draw(NARROW)}</span>'
    )


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
