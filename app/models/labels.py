"""Labels for bar series: the horizon-return threshold label and the triple barrier.

Both look only forward from bar ``t`` (its close is the decision price) and leave a bar unlabelled
(NaN) when the series ends before the horizon. Prices are bar closes: an intrabar touch of a
barrier that the close does not confirm is not counted (the engine decides on closes too).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]


def forward_return_bps(closes: F64, horizon: int) -> F64:
    """``ln(close[t + horizon] / close[t])`` in basis points; NaN where the horizon runs out."""
    out = np.full(len(closes), np.nan)
    if horizon < len(closes):
        out[: len(closes) - horizon] = np.log(closes[horizon:] / closes[:-horizon]) * 1e4
    return out


def horizon_label(closes: F64, horizon: int, threshold_bps: float) -> F64:
    """1 when the horizon return exceeds ``+threshold_bps``, 0 below ``-threshold_bps``, NaN for
    smaller moves (they would not pay the fees either way) and where the horizon runs out."""
    ret = forward_return_bps(closes, horizon)
    out = np.full(len(closes), np.nan)
    out[ret > threshold_bps] = 1.0
    out[ret < -threshold_bps] = 0.0
    return out


def triple_barrier(
    closes: F64, horizon: int, take_profit_bps: float, stop_loss_bps: float
) -> tuple[F64, F64]:
    """The first barrier a long entered at ``close[t]`` meets within ``horizon`` bars.

    Returns ``(label, outcome)``: outcome +1 take-profit (label 1), -1 stop-loss (label 0),
    0 time-out (label NaN: neither barrier, like the small moves of :func:`horizon_label`), NaN
    when the series ends first. Barriers are log-returns of ``±bps``.
    """
    n = len(closes)
    logc = np.log(closes)
    outcome = np.full(n, np.nan)
    undecided = np.ones(n, dtype=bool)
    up, down = take_profit_bps / 1e4, -stop_loss_bps / 1e4
    for k in range(1, horizon + 1):
        if k >= n:
            break
        ret = np.full(n, np.nan)
        ret[: n - k] = logc[k:] - logc[: n - k]
        hit_up = undecided & (ret >= up)
        hit_down = undecided & (ret <= down)
        outcome[hit_up] = 1.0
        outcome[hit_down & ~hit_up] = -1.0
        undecided &= ~(hit_up | hit_down)
    timed_out = undecided & (np.arange(n) < n - horizon)
    outcome[timed_out] = 0.0
    label = np.where(outcome == 1.0, 1.0, np.where(outcome == -1.0, 0.0, np.nan))
    return label, outcome
