"""Price series for the feature tests: real recorded data and long seeded random walks."""

from __future__ import annotations

import json
import math
import random
from typing import Any

from tests.paths import REFERENCE

WS_FILE = REFERENCE / "market-data" / "usdm_2021-07-22_ws.jsonl"

# (high, low, close) per bar
OHLC = tuple[list[float], list[float], list[float]]


def load_frames() -> list[dict[str, Any]]:
    """Every ``data`` object of the recorded combined-stream frames, in file order."""
    with WS_FILE.open() as f:
        return [json.loads(line)["data"] for line in f]


def quote_series(symbol: str) -> OHLC:
    """Real bookTicker quotes of ``symbol`` as bars: high = ask, low = bid, close = mid."""
    highs: list[float] = []
    lows: list[float] = []
    closes: list[float] = []
    for d in load_frames():
        if d["e"] == "bookTicker" and d["s"] == symbol:
            bid, ask = float(d["b"]), float(d["a"])
            highs.append(ask)
            lows.append(bid)
            closes.append((bid + ask) / 2)
    return highs, lows, closes


def random_walk(n: int, seed: int, start: float, sigma: float, tick: float = 0.0) -> OHLC:
    """A seeded geometric random walk as bars; with ``tick``, prices on a tick grid (many ties)."""
    rng = random.Random(seed)
    highs: list[float] = []
    lows: list[float] = []
    closes: list[float] = []
    log_p = math.log(start)
    prev = start
    for _ in range(n):
        log_p += rng.gauss(0.0, sigma)
        c = math.exp(log_p)
        h = max(prev, c) * (1.0 + abs(rng.gauss(0.0, sigma / 2)))
        lo = min(prev, c) * (1.0 - abs(rng.gauss(0.0, sigma / 2)))
        if tick:
            c, h, lo = (round(v / tick) * tick for v in (c, h, lo))
        highs.append(h)
        lows.append(lo)
        closes.append(c)
        prev = c
    return highs, lows, closes
