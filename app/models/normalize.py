"""The rolling z-score for training: the engine's own streaming code over a dataset's rows.

``appliance train --normalize rolling:N`` declares
:class:`~app.engine.model_contract.RollingZScore` in the model's contract and trains on the rows
as the engine's window will hold them: :func:`rolling_zscore` pushes each symbol's rows through
:class:`~app.engine.inference.RollingZ` (the class the decision loop's windows use), so training,
backtests, validation and live decisions see the same float32 values, warm-up included (NaN until
N complete rows in a row; windows holding one are dropped like any incomplete window).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import numpy.typing as npt

from app.engine.inference import RollingZ
from app.engine.model_contract import MAX_ROLLING_WINDOW, RollingZScore
from app.errors import ConfigError
from app.models.dataset import Labelled

F64 = npt.NDArray[np.float64]


def parse_normalize(text: str, clip: float | None) -> RollingZScore | None:
    """``"fixed"`` (None: the scaler fitted on the training split, folded into the graph) or
    ``"rolling:N"`` (a rolling z-score over N bars, applied by the engine)."""
    if text == "fixed":
        return None
    kind, _, n = text.partition(":")
    if kind != "rolling" or not n.isdigit() or not 2 <= int(n) <= MAX_ROLLING_WINDOW:
        raise ConfigError(
            f"--normalize {text!r}: use 'fixed' or 'rolling:N' with N bars from 2 to "
            f"{MAX_ROLLING_WINDOW}, e.g. rolling:500"
        )
    return RollingZScore(int(n), clip)


def rolling_zscore(x: F64, norm: RollingZScore) -> F64:
    """Each row of ``x`` (bars, features; NaN = missing) as the engine normalises it."""
    n_rows, n_features = x.shape
    out = np.full((n_rows, n_features), np.nan, dtype=np.float32)
    view = out.data.cast("B").cast("f")
    rz = RollingZ(norm.window, n_features, norm.clip)
    for t, row in enumerate(x.tolist()):
        rz.push([None if math.isnan(v) else v for v in row], view, t * n_features)
    return out.astype(np.float64)


def normalize_parts(parts: list[Labelled], norm: RollingZScore) -> list[Labelled]:
    """Every series with its features replaced by their rolling z-scores (flags, labels kept)."""
    return [replace(p, x=rolling_zscore(p.x, norm)) for p in parts]
