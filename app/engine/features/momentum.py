"""Bar-based momentum and volatility: log-return, RSI and ATR (Wilder smoothing).

Fed one bar at a time; ``update`` returns the current value or ``None`` while warming up, and the
last value stays in ``value``. Each matches TA-Lib's function (default compatibility mode, not
MetaStock) to within floating-point rounding, including where the first value appears.
"""

from __future__ import annotations

import math

from app.engine.features.averages import check_period, check_unstable

# TA-Lib (0.6 and later) treats |gain + loss| below this as zero in RSI and outputs 0.
_TA_EPSILON = 1e-14


class LogReturn:
    """``ln(close / close N bars ago)`` (period 1..100000): ``log`` of TA-Lib ``ROCR``.

    First value after ``period + 1`` inputs (TA-Lib lookback ``period``); None when either
    close is not positive (TA-Lib's ROCR gives 0 for a zero base, whose log is undefined).
    """

    __slots__ = ("_buf", "_i", "_n", "period", "value")

    def __init__(self, period: int = 1) -> None:
        check_period("log-return period", period, 1)
        self.period = period
        self.value: float | None = None
        self._buf = [0.0] * period
        self._i = 0
        self._n = 0

    def update(self, x: float) -> float | None:
        """Add one close; returns the log-return over ``period`` bars, or None."""
        i = self._i
        old = self._buf[i]
        self._buf[i] = x
        self._i = i + 1 if i + 1 < self.period else 0
        if self._n < self.period:
            self._n += 1
            return None
        v = math.log(x / old) if x > 0.0 and old > 0.0 else None
        self.value = v
        return v


class RSI:
    """Relative strength index with Wilder's smoothing, TA-Lib ``RSI`` (period 2..100000).

    Gains and losses of the first ``period`` changes are averaged (simple mean); afterwards
    ``avg = (avg * (period - 1) + change) / period``. ``RSI = 100 * gain / (gain + loss)``, and 0
    when ``gain + loss`` is within 1e-14 of zero (a flat series), as TA-Lib does. First value after
    ``period + 1`` inputs (TA-Lib lookback ``period``); an unstable period ``U`` (TA-Lib's
    ``TA_FUNC_UNST_RSI``) withholds the first ``U`` values without changing the others.
    """

    __slots__ = ("_gain", "_loss", "_n", "_prev", "period", "unstable", "value")

    def __init__(self, period: int = 14, unstable: int = 0) -> None:
        check_period("RSI period", period, 2)
        check_unstable(unstable)
        self.period = period
        self.unstable = unstable
        self.value: float | None = None
        self._n = 0
        self._prev = 0.0
        self._gain = 0.0
        self._loss = 0.0

    def update(self, x: float) -> float | None:
        """Add one close; returns the RSI in [0, 100], or None during the warm-up."""
        n = self._n  # number of changes seen before this one
        self._n = n + 1
        change = x - self._prev
        self._prev = x
        if n == 0:
            return None
        p = self.period
        if n > p:
            self._loss *= p - 1
            self._gain *= p - 1
            if change < 0:
                self._loss -= change
            else:
                self._gain += change
            self._loss /= p
            self._gain /= p
        else:
            if change < 0:
                self._loss -= change
            else:
                self._gain += change
            if n < p:
                return None
            self._loss /= p
            self._gain /= p
        if n < p + self.unstable:
            return None
        total = self._gain + self._loss
        v = 100.0 * (self._gain / total) if not -_TA_EPSILON < total < _TA_EPSILON else 0.0
        self.value = v
        return v


class ATR:
    """Average true range with Wilder's smoothing, TA-Lib ``ATR`` (period 1..100000).

    True range needs the previous close, so the first bar gives none:
    ``TR = max(high - low, |high - prev_close|, |low - prev_close|)``. The first ATR is the mean
    of the first ``period`` true ranges (after ``period + 1`` bars, TA-Lib lookback ``period``);
    then ``atr = (atr * (period - 1) + TR) / period``. With period 1 it is the true range itself
    (TA-Lib ``TRANGE``). An unstable period ``U`` (TA-Lib's ``TA_FUNC_UNST_ATR``) withholds the
    first ``U`` values without changing the others.
    """

    __slots__ = ("_atr", "_n", "_prev_close", "_sum", "period", "unstable", "value")

    def __init__(self, period: int = 14, unstable: int = 0) -> None:
        check_period("ATR period", period, 1)
        check_unstable(unstable)
        self.period = period
        self.unstable = unstable
        self.value: float | None = None
        self._n = 0
        self._prev_close = 0.0
        self._sum = 0.0
        self._atr = 0.0

    def copy(self) -> ATR:
        """An independent ATR in the same state (``copy.deepcopy`` cannot copy the compiled
        class, see :mod:`app.native`)."""
        new = ATR(self.period, self.unstable)
        new.value, new._n, new._prev_close = self.value, self._n, self._prev_close
        new._sum, new._atr = self._sum, self._atr
        return new

    def update(self, high: float, low: float, close: float) -> float | None:
        """Add one bar; returns the ATR, or None during the warm-up."""
        n = self._n  # number of true ranges seen before this bar
        self._n = n + 1
        pc = self._prev_close
        self._prev_close = close
        if n == 0:
            return None
        tr = max(high - low, abs(pc - high), abs(pc - low))
        p = self.period
        if n > p:
            self._atr = (self._atr * (p - 1) + tr) / p
        else:
            self._sum += tr
            if n < p:
                return None
            self._atr = self._sum / p
        if n < p + self.unstable:
            return None
        self.value = self._atr
        return self._atr
