"""Moving averages and what is built on them: SMA, EMA, Bollinger bands, MACD.

Each class is fed one bar close at a time with ``update(x)`` and returns the current value, or
``None`` while it warms up; the last value is also kept in attributes. Each reproduces TA-Lib's
function of the same name (default compatibility mode) to within floating-point rounding: its
first value appears at the same input index as TA-Lib's first non-NaN output.

TA-Lib's *unstable period* (``TA_SetUnstablePeriod``, ``talib.set_unstable_period``) applies to
the functions whose value depends on where the series started (EMA, MACD through its EMAs, RSI,
ATR). It delays the first output by ``unstable`` inputs; the ``unstable`` argument here does the
same. TA-Lib's default, and ours, is 0.
"""

from __future__ import annotations

import math

MAX_PERIOD = 100_000  # TA-Lib's upper bound for every period parameter


def check_period(name: str, period: int, minimum: int) -> None:
    """Raise ``ValueError`` unless ``minimum <= period <= MAX_PERIOD`` (TA-Lib's ranges)."""
    if isinstance(period, bool) or not isinstance(period, int):
        raise ValueError(f"{name} must be an integer, got {period!r}")
    if not minimum <= period <= MAX_PERIOD:
        raise ValueError(f"{name} must be in [{minimum}, {MAX_PERIOD}], got {period}")


def check_unstable(unstable: int) -> None:
    if isinstance(unstable, bool) or not isinstance(unstable, int) or unstable < 0:
        raise ValueError(f"unstable period must be a non-negative integer, got {unstable!r}")


class SMA:
    """Simple moving average of the last ``period`` inputs (TA-Lib ``SMA``; period 2..100000).

    First value after ``period`` inputs (TA-Lib lookback ``period - 1``); no unstable period.
    The running sum is recomputed exactly (``math.fsum`` over the window) each time the window
    has been replaced once, so rounding cannot accumulate over a long series: amortised O(1).
    """

    __slots__ = ("_buf", "_i", "_n", "_sum", "period", "value")

    def __init__(self, period: int) -> None:
        check_period("SMA period", period, 2)
        self.period = period
        self.value: float | None = None
        self._buf = [0.0] * period
        self._i = 0
        self._n = 0
        self._sum = 0.0

    def update(self, x: float) -> float | None:
        """Add one input; returns the average of the last ``period`` inputs, or None."""
        i = self._i
        if self._n < self.period:
            self._n += 1
            self._sum += x
        else:
            self._sum += x - self._buf[i]
        self._buf[i] = x
        i += 1
        if i == self.period:
            i = 0
            self._sum = math.fsum(self._buf)
        self._i = i
        if self._n < self.period:
            return None
        v = self._sum / self.period
        self.value = v
        return v


class EMA:
    """Exponential moving average, TA-Lib ``EMA`` convention (period 2..100000).

    ``k = 2 / (period + 1)``; seeded with the simple average of the first ``period`` inputs, which
    is the first value (after ``period`` inputs, TA-Lib lookback ``period - 1``); then
    ``ema += k * (x - ema)``. With ``unstable = U`` the values are the same but the first ``U``
    are withheld (first value after ``period + U`` inputs), as TA-Lib does.
    """

    __slots__ = ("_ema", "_n", "_sum", "k", "period", "unstable", "value")

    def __init__(self, period: int, unstable: int = 0) -> None:
        check_period("EMA period", period, 2)
        check_unstable(unstable)
        self.period = period
        self.unstable = unstable
        self.k = 2.0 / (period + 1)
        self.value: float | None = None
        self._n = 0
        self._sum = 0.0
        self._ema = 0.0

    def update(self, x: float) -> float | None:
        """Add one input; returns the EMA, or None during the warm-up."""
        n = self._n + 1
        self._n = n
        if n > self.period:
            self._ema = (x - self._ema) * self.k + self._ema
        elif n == self.period:
            self._ema = (self._sum + x) / self.period
        else:
            self._sum += x
            return None
        if n < self.period + self.unstable:
            return None
        self.value = self._ema
        return self._ema


class Bollinger:
    """Bollinger bands, TA-Lib ``BBANDS`` with ``matype=SMA`` (period 2..100000).

    ``middle`` is the SMA of the last ``period`` inputs; ``upper``/``lower`` are ``middle ± k·σ``
    with σ the *population* standard deviation of the same window (divide by ``period``). As in
    TA-Lib, a variance below 1e-14 counts as zero. First value after ``period`` inputs.
    ``pctb = (x - lower) / (upper - lower)`` (0.5 when the bands coincide) and
    ``width = (upper - lower) / middle`` (None when ``middle`` is 0).

    The window's mean and sum of squared deviations are updated with the sliding-window form of
    Welford's method on values shifted by the last window mean, and recomputed exactly (two passes
    with ``math.fsum``) each time the window has been replaced once, so they never drift
    (amortised O(1) per update). TA-Lib itself uses
    running sums of x and x², whose band width can be off by ~1e-8 relative on long series with a
    small spread; the bands themselves agree to far better than 1e-9 relative.
    """

    __slots__ = (
        "_buf",
        "_i",
        "_m2",
        "_mean",
        "_n",
        "_shift",
        "k",
        "lower",
        "middle",
        "pctb",
        "period",
        "std",
        "upper",
        "width",
    )

    def __init__(self, period: int, k: float) -> None:
        check_period("Bollinger period", period, 2)
        if not (math.isfinite(k) and k > 0):
            raise ValueError(f"Bollinger width k must be a positive number, got {k!r}")
        self.period = period
        self.k = k
        self.middle: float | None = None
        self.upper: float | None = None
        self.lower: float | None = None
        self.std: float | None = None
        self.pctb: float | None = None
        self.width: float | None = None
        self._buf = [0.0] * period
        self._i = 0
        self._n = 0
        self._shift = 0.0
        self._mean = 0.0  # mean of x - shift over the window
        self._m2 = 0.0  # sum of squared deviations from the mean

    def update(self, x: float) -> tuple[float, float, float] | None:
        """Add one input; returns ``(middle, upper, lower)``, or None during the warm-up."""
        p = self.period
        i = self._i
        if self._n == 0:
            self._shift = x
        # Work on x - shift (shift: the window mean at the last resync). The deviations are small
        # next to the price, so the running mean's rounding stays far below their size.
        y = x - self._shift
        mean = self._mean
        if self._n < p:
            # Growing window: ordinary Welford.
            n = self._n + 1
            self._n = n
            d = y - mean
            mean += d / n
            self._m2 += d * (y - mean)
        else:
            old = self._buf[i] - self._shift
            new_mean = mean + (y - old) / p
            self._m2 += (y - old) * (y - new_mean + old - mean)
            mean = new_mean
        self._mean = mean
        self._buf[i] = x
        i += 1
        if i == p:
            i = 0
            self._resync()
            mean = self._mean
        self._i = i
        if self._n < p:
            return None
        var = self._m2 / p
        std = math.sqrt(var) if var >= 1e-14 else 0.0
        middle = self._shift + mean
        band = self.k * std
        upper = middle + band
        lower = middle - band
        self.middle = middle
        self.upper = upper
        self.lower = lower
        self.std = std
        spread = upper - lower
        self.pctb = (x - lower) / spread if spread > 0.0 else 0.5
        self.width = spread / middle if middle != 0.0 else None
        return middle, upper, lower

    def _resync(self) -> None:
        shift = math.fsum(self._buf) / self.period
        ys = [v - shift for v in self._buf]
        mean = math.fsum(ys) / self.period
        self._shift = shift
        self._mean = mean
        self._m2 = math.fsum([(y - mean) * (y - mean) for y in ys])


class MACD:
    """MACD line, signal and histogram, exactly as TA-Lib ``MACD`` seeds them.

    ``fast`` and ``slow`` are EMA periods (2..100000, swapped if ``slow < fast``, as TA-Lib does),
    ``signal`` the signal EMA's (1..100000). TA-Lib's particular seeding: the slow EMA starts from
    the average of inputs ``0..slow-1``, but the fast EMA starts from the average of the ``fast``
    inputs *ending at the same index* ``slow-1`` (not of the first ``fast`` inputs), so that both
    start together. ``macd = fast - slow`` from input ``slow-1 + U``; the signal EMA is seeded
    with the average of the first ``signal`` MACD values and outputs from input
    ``slow + signal - 2 + 2U``. ``hist = macd - signal``.

    With an EMA unstable period ``U`` (TA-Lib's ``TA_FUNC_UNST_EMA``), TA-Lib delays the start
    of the MACD line by ``U`` and the signal by another ``U``; because the signal is then seeded
    from later MACD values, values differ from the ``U = 0`` ones, and this class reproduces that.
    """

    __slots__ = (
        "_fast_ema",
        "_fast_sum",
        "_n",
        "_sig",
        "_sig_sum",
        "_slow_ema",
        "_slow_sum",
        "fast",
        "hist",
        "k_fast",
        "k_signal",
        "k_slow",
        "macd",
        "signal",
        "signal_period",
        "slow",
        "unstable",
    )

    def __init__(self, fast: int, slow: int, signal: int, unstable: int = 0) -> None:
        check_period("MACD fast period", fast, 2)
        check_period("MACD slow period", slow, 2)
        check_period("MACD signal period", signal, 1)
        check_unstable(unstable)
        if slow < fast:
            fast, slow = slow, fast
        self.fast = fast
        self.slow = slow
        self.signal_period = signal
        self.unstable = unstable
        self.k_fast = 2.0 / (fast + 1)
        self.k_slow = 2.0 / (slow + 1)
        self.k_signal = 2.0 / (signal + 1)
        self.macd: float | None = None
        self.signal: float | None = None
        self.hist: float | None = None
        self._n = 0
        self._fast_sum = self._slow_sum = self._sig_sum = 0.0
        self._fast_ema = self._slow_ema = self._sig = 0.0

    def update(self, x: float) -> tuple[float, float, float] | None:
        """Add one input; returns ``(macd, signal, hist)``, or None during the warm-up."""
        idx = self._n  # index of this input in the series
        self._n = idx + 1
        slow = self.slow
        if idx >= slow:
            self._slow_ema = (x - self._slow_ema) * self.k_slow + self._slow_ema
            self._fast_ema = (x - self._fast_ema) * self.k_fast + self._fast_ema
        else:
            self._slow_sum += x
            if idx >= slow - self.fast:
                self._fast_sum += x
            if idx < slow - 1:
                return None
            self._slow_ema = self._slow_sum / slow
            self._fast_ema = self._fast_sum / self.fast
        m = idx - (slow - 1 + self.unstable)  # index in the MACD line
        if m < 0:
            return None
        macd = self._fast_ema - self._slow_ema
        sp = self.signal_period
        if m >= sp:
            self._sig = (macd - self._sig) * self.k_signal + self._sig
        else:
            self._sig_sum += macd
            if m < sp - 1:
                return None
            self._sig = self._sig_sum / sp
        if m < sp - 1 + self.unstable:
            return None
        sig = self._sig
        hist = macd - sig
        self.macd = macd
        self.signal = sig
        self.hist = hist
        return macd, sig, hist
