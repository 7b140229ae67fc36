"""Integer-valued random draws that are identical on every platform for a given seed.

``random.Random`` (Mersenne Twister) with ``random()``, ``randrange`` and ``choice`` is exact
everywhere; ``gauss``/``lognormvariate`` go through libm, whose last bit may differ between
machines. So normal and log-normal draws pick from fixed integer quantile tables instead.
"""

from __future__ import annotations

import math
from statistics import NormalDist

_N = 128
# Standard normal quantiles at the midpoints of 128 equal-probability bins, in thousandths.
Z_MILLI: tuple[int, ...] = tuple(
    round(NormalDist().inv_cdf((i + 0.5) / _N) * 1000) for i in range(_N)
)
# exp(z) for the same quantiles, in thousandths: a log-normal multiplier with median 1.
LOGN_MILLI: tuple[int, ...] = tuple(max(1, round(math.exp(z / 1000) * 1000)) for z in Z_MILLI)


def scaled_normal(rng_choice: int, sigma_milli: int) -> int:
    """``sigma * z`` rounded to an integer, for ``sigma`` in thousandths."""
    return (sigma_milli * rng_choice + 500_000) // 1_000_000
