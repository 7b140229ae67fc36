"""The cyclic garbage collector, kept off the decision loop's latency.

CPython frees almost everything by reference counting; the cyclic collector is only for cycles.
But it runs a generation-0 pass every 700 net new container objects, and the engine keeps a few
per message for a while (rows waiting for the recorder, bars, order updates), so with the default
a pass lands every few hundred messages, and every tenth pass walks the older generation too.
Measured with ``appliance bench`` on the reference recording: p99.9 470-525 µs at the default,
300-380 µs at 10,000, no further gain at 50,000.

So the engine (and the benchmark, to measure what runs) raises the generation-0 threshold, and
once start-up is over (model loaded, klines fetched, books allocated) freezes what exists: it
lives as long as the process, and frozen objects are never walked again.
"""

from __future__ import annotations

import gc

GEN0_THRESHOLD = 10_000


def tune(gen0: int = GEN0_THRESHOLD) -> None:
    """Make generation-0 passes rarer (the older generations keep their default ratios)."""
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0, gen1, gen2)


def settle() -> None:
    """Collect once, then move every surviving object out of the collector's sight."""
    gc.collect()
    gc.freeze()
