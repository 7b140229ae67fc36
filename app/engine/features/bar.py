"""The closed bar, apart from the compiled :mod:`app.engine.features.bars`.

A msgspec struct has a metaclass, which mypyc cannot compile as a native class (mypy 1.15, the
appliance's trixie build, refuses the module outright: "mypyc classes can't have a metaclass").
Here, in a module that stays Python, it is the same struct for compiled and interpreted callers.
"""

from __future__ import annotations

import msgspec


class Bar(msgspec.Struct, frozen=True, gc=False):
    """One closed OHLCV bar; ``open_time_ms`` is the interval's start (UTC, epoch ms).

    A msgspec struct: made in a fifth of a frozen dataclass's time (one per bar close, on the
    decision path) and, holding no containers, never tracked by the cyclic collector.
    """

    open_time_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float
