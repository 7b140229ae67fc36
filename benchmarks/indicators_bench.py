"""Microseconds per update of each streaming indicator and of a typical ~10-feature vector.

Run from the repository root::

    .venv/bin/python benchmarks/indicators_bench.py [updates]

Inputs are generated up front (a seeded random walk) so the loop measures the indicator only; the
loop's own cost (the same loop calling a no-op) is subtracted; best of 3 runs.
Each run starts from a fresh indicator.
"""

from __future__ import annotations

import math
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.engine.features import (  # noqa: E402
    ATR,
    EMA,
    MACD,
    RSI,
    SMA,
    Bollinger,
    BookImbalance,
    FeatureSet,
    FundingRate,
    LogReturn,
    OrderFlowImbalance,
    OrderFlowImbalanceWindow,
    RollingVWAP,
    SessionVWAP,
    Spread,
    TimeOfDay,
)

TYPICAL = [
    "logret_1",
    "ema_12",
    "rsi_14",
    "bb_20_2.pctb",
    "macd_12_26_9.hist",
    "atr_14",
    "obi_5",
    "ofi",
    "vwap_60",
    "spread_bps",
    "tod_sin",
    "tod_cos",
]


def _walk(n: int) -> list[float]:
    rng = random.Random(1)
    p = 100.0
    out = []
    for _ in range(n):
        p *= math.exp(rng.gauss(0.0, 0.001))
        out.append(p)
    return out


def _per_call_us(fn: Callable[..., object], args: list[tuple[Any, ...]]) -> float:
    t0 = time.perf_counter_ns()
    for a in args:
        fn(*a)
    return (time.perf_counter_ns() - t0) / len(args) / 1000.0


def _noop(*_a: object) -> None:
    return None


def _bench(
    make: Callable[[], Callable[..., object]], args: list[tuple[Any, ...]], repeat: int = 3
) -> float:
    """µs per call of a fresh ``make()`` (best of ``repeat``), less the loop's own cost."""
    best = min(_per_call_us(make(), args) for _ in range(repeat))
    loop = min(_per_call_us(_noop, args) for _ in range(repeat))
    return max(best - loop, 0.0)


def main(n: int) -> None:
    px = _walk(n)
    ts = [1_626_992_741_000 + 50 * i for i in range(n)]
    qty = [1.0 + (i % 13) for i in range(n)]
    levels = [[q, q + 1.0, q + 2.0, 3.0, 4.0] for q in qty]
    closes = [(x,) for x in px]
    quotes = [(x - 0.005, 2.0, x + 0.005, 3.0) for x in px]
    trades = list(zip(ts, px, qty, strict=True))

    rows: list[tuple[str, float]] = [
        ("logret_1", _bench(lambda: LogReturn(1).update, closes)),
        ("sma_20", _bench(lambda: SMA(20).update, closes)),
        ("ema_12", _bench(lambda: EMA(12).update, closes)),
        ("rsi_14", _bench(lambda: RSI(14).update, closes)),
        ("bb_20_2", _bench(lambda: Bollinger(20, 2.0).update, closes)),
        ("macd_12_26_9", _bench(lambda: MACD(12, 26, 9).update, closes)),
        ("atr_14", _bench(lambda: ATR(14).update, [(x * 1.001, x * 0.999, x) for x in px])),
        ("obi_5", _bench(lambda: BookImbalance(5).update, [(lv, lv) for lv in levels])),
        ("ofi", _bench(lambda: OrderFlowImbalance().update, quotes)),
        ("ofi_10", _bench(lambda: OrderFlowImbalanceWindow(10).update, [(t, *q) for t, q in
                                                                 zip(ts, quotes, strict=True)])),
        ("vwap_60", _bench(lambda: RollingVWAP(60).update, trades)),
        ("vwap_day", _bench(lambda: SessionVWAP().update, trades)),
        ("spread", _bench(lambda: Spread().update, [(x - 0.005, x + 0.005) for x in px])),
        ("funding_rate", _bench(lambda: FundingRate().update, closes)),
        ("tod", _bench(lambda: TimeOfDay().update, [(t,) for t in ts])),
    ]  # fmt: skip

    # A typical vector: every event is a quote and a trade, depth every 20th, read every time.
    def make_event() -> Callable[[int], None]:
        fs = FeatureSet(TYPICAL, 1)

        def event(i: int) -> None:
            t = ts[i]
            fs.on_quote(t, *quotes[i])
            fs.on_trade(t, px[i], qty[i])
            if i % 20 == 0:
                fs.on_depth(levels[i], levels[i])
            fs.values(t)

        return event

    per_event = _bench(make_event, [(i,) for i in range(n)])

    print(f"{n} updates each; µs per update (CPython {sys.version.split()[0]})")
    for name, us in rows:
        print(f"  {name:<14} {us:7.3f}")
    print(
        f"  {len(TYPICAL)}-feature set: {per_event:.3f} µs per event "
        f"(quote + trade + vector read; 1 s bars at 20 events/s)"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000)
