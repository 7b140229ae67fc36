"""Classification figures for ``prob_up`` models: AUC, Brier score, precision at the thresholds."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]


def auc(p: F64, y: F64) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties counted half); NaN with one class only."""
    n_pos = int((y == 1.0).sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    order = np.argsort(p, kind="stable")
    sorted_p = p[order]
    ranks = np.empty(len(p))
    # Average ranks over runs of equal scores.
    _, first, counts = np.unique(sorted_p, return_index=True, return_counts=True)
    for start, count in zip(first, counts, strict=True):
        ranks[order[start : start + count]] = start + (count + 1) / 2
    return float((ranks[y == 1.0].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def brier(p: F64, y: F64) -> float:
    return float(np.mean((p - y) ** 2)) if len(y) else math.nan


def precision_at(p: F64, y: F64, long_t: float, short_t: float) -> dict[str, float]:
    """Precision of the long signals (``p >= long_t``: up) and short ones (``p <= short_t``)."""
    longs, shorts = p >= long_t, p <= short_t
    return {
        "long_precision": float(y[longs].mean()) if longs.any() else math.nan,
        "short_precision": float((1.0 - y[shorts]).mean()) if shorts.any() else math.nan,
        "signal_share": float((longs | shorts).mean()) if len(p) else math.nan,
    }


def summary(p: F64, y: F64, long_t: float, short_t: float) -> dict[str, float]:
    """Every figure, rounded for reports and model metadata."""
    out = {
        "auc": auc(p, y),
        "brier": brier(p, y),
        "accuracy": float(np.mean((p >= 0.5) == (y == 1.0))) if len(y) else math.nan,
        "base_rate_up": float(np.mean(y)) if len(y) else math.nan,
        **precision_at(p, y, long_t, short_t),
    }
    rounded: dict[str, float] = {k: round(v, 4) for k, v in out.items()}
    rounded["n"] = len(y)
    return rounded
