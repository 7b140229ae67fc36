"""``appliance bench``: the whole decision loop over a recording, in one process, with figures.

Each message goes decode → book → features → (inference → signal → risk gate → paper fill) →
hand-off to the recorder, exactly through the engine's own objects (:class:`MarketData`,
:class:`Trader`, :class:`RiskGate`, :class:`PaperExchange`, :class:`RecordingSink`); only the
recorder's disk write is left out (its queue is emptied every 64 messages, untimed, as the writer
thread takes each batch within a flush interval). Latency is per message, from the frame in hand
to the decision made, measured with ``perf_counter_ns``. The collector is tuned and start-up
objects frozen as the engine does (:mod:`app.engine.gcpolicy`).

The recording is looped until ``--messages`` have been measured. Books, account, gate and orders
are reset on every pass: diff-depth books resync from the recording's REST snapshots, fetched by
the engine's own snapshot task between messages (untimed, as on the event loop), and the result
says in how many passes every book was in sync at the end. The features run on across passes, on
timestamps shifted by the recording's span, so the model's windows fill once and stay full.
Messages before the first decision are warm-up and are not counted.

``--decide bar`` (the default) decides at bar closes, as the model contract defines a decision
and the engine runs; ``--decide event`` runs inference on every message once the window is full
(on the window as of the last close, which only changes at closes: the worst case, not a mode the
engine has).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import platform
import resource
import statistics
import sys
import time
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec

from app import native
from app.binance.filters import SymbolFilters, parse_symbol_filters
from app.binance.margin import MarginSettings, default_brackets
from app.binance.public import DepthSnapshot
from app.clock import ManualClock
from app.config import (
    ExchangeConfig,
    FeedConfig,
    LiveConfig,
    PaperConfig,
    RiskConfig,
    StoreConfig,
)
from app.engine import gcpolicy
from app.engine.book import OrderBook
from app.engine.decode import decode_depth_snapshot
from app.engine.events import Event
from app.engine.inference import InferenceSlot, load_model
from app.engine.loop import paper_loop
from app.engine.market_data import MarketData
from app.engine.paper import PaperLedger
from app.engine.recording import RecordingSink
from app.engine.trader import Trader
from app.sim.recordings import load_exchange_info, load_snapshots
from app.store import rawlog
from app.store.recorder import Recorder

_TIME_KEYS = ("E", "T")


@dataclass(frozen=True)
class _Frame:
    ts_ns: int
    stream: str
    data: dict[str, Any]


def load_recording(path: Path) -> list[_Frame]:
    """Frames of a jsonl recording (``recv_ts``, ``stream``, ``data``) or an engine raw log."""
    frames: list[_Frame] = []
    if path.suffix == ".jsonl":
        for line in path.read_text().splitlines():
            if line.strip():
                obj = json.loads(line)
                frames.append(_Frame(int(obj["recv_ts"] * 1e9), obj["stream"], obj["data"]))
        return frames
    for ts_ns, raw in rawlog.iter_frames(path):
        try:
            obj = json.loads(raw)
        except ValueError:
            continue  # a malformed frame as received: the engine skipped it too
        if isinstance(obj, dict) and "stream" in obj and "data" in obj:
            frames.append(_Frame(ts_ns, obj["stream"], obj["data"]))
    return frames


def with_mark_prices(frames: list[_Frame]) -> tuple[list[_Frame], bool]:
    """Add a ``markPrice@1s`` frame per symbol per second if the recording has none.

    The reference recording has no mark-price stream, so ``funding_rate`` (a feature of the
    default model) would never be known and no window would fill. The added frames carry the
    book's mid as mark and index price and a constant funding rate of 0.01 %: honest filler that
    exercises the same code path, and the output says it was added.
    """
    if any("@markPrice" in f.stream for f in frames):
        return frames, False
    out: list[_Frame] = []
    next_ms: dict[str, int] = {}
    for f in frames:
        out.append(f)
        if f.data.get("e") != "bookTicker":
            continue
        symbol, ts_ms = f.data["s"], f.data["E"]
        if ts_ms < next_ms.get(symbol, 0):
            continue
        next_ms[symbol] = ts_ms - ts_ms % 1000 + 1000
        mid = str((Decimal(f.data["b"]) + Decimal(f.data["a"])) / 2)
        funding_ms = ts_ms - ts_ms % 28_800_000 + 28_800_000
        mark = {"e": "markPriceUpdate", "E": ts_ms, "s": symbol, "p": mid, "i": mid, "P": mid,
                "r": "0.00010000", "T": funding_ms}  # fmt: skip
        out.append(_Frame(f.ts_ns, f"{symbol.lower()}@markPrice@1s", mark))
    return out, True


def load_filters(path: Path | None, symbols: tuple[str, ...]) -> dict[str, SymbolFilters]:
    """Exchange filters from an exchangeInfo file (the reference ``<url> -> <ts>: <body>`` form)."""
    if path is None:
        return {}
    filters = parse_symbol_filters(load_exchange_info(path))
    return {s: filters[s] for s in symbols if s in filters}


class _FileSnapshots:
    """The recording's REST snapshots, served as the engine's PublicRest would."""

    def __init__(self, path: Path) -> None:
        self._bodies = {s.upper(): msgspec.json.encode(b) for s, b in load_snapshots(path).items()}

    async def depth(self, symbol: str, limit: int = 1000) -> DepthSnapshot:
        return decode_depth_snapshot(self._bodies[symbol.upper()])


def _shifted(frames: list[_Frame], offset_ms: int) -> Iterator[tuple[int, bytes]]:
    """The recording with every timestamp moved ``offset_ms`` later, rendered as received."""
    encode = msgspec.json.encode
    for f in frames:
        data = dict(f.data)
        for key in _TIME_KEYS:
            if key in data:
                data[key] += offset_ms
        if "k" in data:
            k = dict(data["k"])
            k["t"] += offset_ms
            k["T"] += offset_ms
            data["k"] = k
        yield f.ts_ns + offset_ms * 1_000_000, encode({"stream": f.stream, "data": data})


def _percentile(sorted_ns: list[int], q: float) -> float:
    return round(sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))] / 1000, 1)


# Long on purpose: the measured loop: splitting it would add calls inside what is timed.
async def run(ns: argparse.Namespace) -> dict[str, Any]:  # noqa: PLR0915
    frames, synthetic_marks = with_mark_prices(load_recording(ns.replay))
    if not frames:
        raise SystemExit(f"{ns.replay}: no frames")
    symbols = tuple(sorted({f.stream.split("@")[0].upper() for f in frames}))
    span_ms = (frames[-1].ts_ns - frames[0].ts_ns) // 1_000_000 + 1_000
    snapshots = _FileSnapshots(ns.snapshots) if ns.snapshots else None
    filters = load_filters(ns.exchange_info, symbols)
    model = load_model(ns.model)
    slot = InferenceSlot(model, symbols=tuple(s.lower() for s in symbols))
    clock = ManualClock(frames[0].ts_ns)
    feed = FeedConfig(symbols=tuple(s.lower() for s in symbols), depth_mode="diff")
    store = StoreConfig(queue_max=10**9)
    recorder = Recorder(store, Path("/nonexistent"), clock)  # never started: no disk write
    risk_cfg, paper_cfg, live_cfg = RiskConfig(), PaperConfig(), LiveConfig()
    # Margin checks and liquidation at the mark, as the engine runs them.
    margin = MarginSettings(
        live_cfg.leverage,
        live_cfg.margin_type == "ISOLATED",
        {s: default_brackets(s) for s in symbols},
    )
    books: dict[str, OrderBook] = {}
    trader = Trader(
        symbols,
        clock,
        slot,
        None,  # type: ignore[arg-type]  # attached per pass, below
        None,  # type: ignore[arg-type]
        filters,
        books,
        lambda symbol: "",
        decide_every_event=ns.decide == "event",
        margin=margin,
    )
    market_ref: list[MarketData] = []

    def book_view(symbol: str, levels: int) -> Any:
        return market_ref[0].book_view(symbol, levels)

    sink = RecordingSink(recorder, store, book_view)
    trader_on_event, sink_call = trader.on_event, sink.__call__

    def on_message(ts_ns: int, raw: bytes, ev: Event | None) -> None:
        sink_call(ts_ns, raw, ev)
        if ev is not None:
            trader_on_event(ts_ns, ev)

    latencies = array("q", bytes(8 * ns.messages))
    measured = warmup = orders = passes = synced_passes = 0
    decisions_at_start = decisions_at_end = 0
    elapsed_ns = 0
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    thresholds = gc.get_threshold()
    gcpolicy.tune()  # as the engine runs
    gcpolicy.settle()  # what exists now lives for the whole run, as the engine's start-up does
    while measured < ns.messages:
        market = MarketData(feed, ExchangeConfig(), clock, on_message, rest=snapshots)
        market_ref[:] = [market]
        books.clear()
        books.update(market.books)
        built = paper_loop(
            risk_cfg,
            paper_cfg,
            clock,
            passes + 1,
            filters,
            # The engine's own listener, its writes dropped: the database is not what is timed.
            listener=lambda book, gate: PaperLedger(lambda fn: None, book, gate),
            margin=margin,
        )
        gate, venue = built.gate, built.venue
        trader.attach(gate, venue, market.books)
        handle = market.handle_frame
        perf = time.perf_counter_ns
        stats = trader.stats
        async with market.replaying():
            # Frames are rendered one at a time, untimed, just before each is handled: rendering a
            # whole pass up front would evict the caches the loop's own objects live in.
            for i, (ts_ns, raw) in enumerate(_shifted(frames, passes * span_ms)):
                clock.now_ns = ts_ns
                t0 = perf()
                handle(ts_ns, raw)
                t1 = perf()
                if stats.decisions == 0:
                    warmup += 1
                elif measured < ns.messages:
                    if not decisions_at_start:
                        decisions_at_start = stats.decisions
                    latencies[measured] = t1 - t0
                    elapsed_ns += t1 - t0
                    measured += 1
                    decisions_at_end = stats.decisions
                if i % 64 == 0:
                    await asyncio.sleep(0)  # the snapshot fetches run here, as on the event loop
                    # The writer thread's share, untimed: it takes each batch within a flush
                    # interval and frees its rows (kept, they would wake the cyclic collector).
                    recorder.flush()
                    recorder.discard_queued()
        recorder.flush()
        recorder.discard_queued()
        orders += stats.orders
        stats.orders = 0
        synced_passes += all(b.synced for b in market.books.values())
        await market.close()
        del market, gate, venue, built
        # The pass's books, orders and feed objects hold reference cycles: collect them here,
        # untimed, as a long-running engine never has a whole market's worth of them at once.
        gc.collect()
        passes += 1
    gc.unfreeze()
    gc.set_threshold(*thresholds)
    # The loop's peak, read before the report: sorting the latencies makes one Python int per
    # message (8 MB at 200,000), which is the benchmark's arithmetic, not the engine's memory.
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ordered = sorted(latencies[:measured])
    # The first measured message made decision number ``decisions_at_start``.
    decisions = decisions_at_end - decisions_at_start + 1
    seconds = elapsed_ns / 1e9
    return {
        "messages": measured,
        "decisions": decisions,
        "msgs_per_s": round(measured / seconds),
        "decisions_per_s": round(decisions / seconds),
        "p50_us": _percentile(ordered, 0.5),
        "p99_us": _percentile(ordered, 0.99),
        "p999_us": _percentile(ordered, 0.999),
        "max_us": round(ordered[-1] / 1000, 1),
        "rss_mb": round(rss_kb / 1024, 1),
        "rss_before_mb": round(rss_before / 1024, 1),
        "passes": passes,
        "passes_books_synced": synced_passes,
        "warmup_messages": warmup,
        "orders": orders,
        "decide": ns.decide,
        "synthetic_mark_price": synthetic_marks,
        "model": model.contract.model_version,
        "symbols": list(symbols),
        # Whether the per-message modules ran compiled (app.native) or as Python.
        "native": native.in_use(sys.modules[Trader.__module__]),
        "python": platform.python_version(),
    }


# Figures that vary from run to run; with --repeat each is the median over the runs.
_VARYING = ("msgs_per_s", "decisions_per_s", "p50_us", "p99_us", "p999_us", "max_us", "rss_mb")


def repeated(ns: argparse.Namespace) -> dict[str, Any]:
    """``--repeat N`` runs, each from a fresh state: the median of each varying figure, and every
    run's own figures under ``runs`` (on a shared machine one run can be 30 % off another)."""
    runs = [asyncio.run(run(ns)) for _ in range(ns.repeat)]
    if len(runs) == 1:
        return runs[0]
    result = dict(runs[0])
    for key in _VARYING:
        result[key] = statistics.median(r[key] for r in runs)
    result["runs"] = [{k: r[k] for k in ("msgs_per_s", "p99_us", "p999_us")} for r in runs]
    return result


def main(ns: argparse.Namespace) -> int:
    result = repeated(ns)
    if ns.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:20s} {value}")
    return 0
