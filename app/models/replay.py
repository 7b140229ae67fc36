"""Market events for offline work, in receive order: recordings and long simulator series.

Both sources yield ``(ts_recv_ns, stream, event)``: the engine's own decoder made the event, so
datasets and backtests see exactly what the live engine would; a backtest also gets the engine's
recorded start-up inputs (:func:`recording_inputs`). :class:`ReplayBooks` keeps the
order books the paper exchange fills against, as :class:`~app.engine.market_data.MarketData` does
live (partial depth replaces the book; diff depth is synced from recorded REST snapshots).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import msgspec

from app.binance.filters import SymbolFilters, parse_symbol_filters
from app.binance.public import DepthSnapshot
from app.engine.book import DiffDepthSync, OrderBook
from app.engine.decode import decode_depth_snapshot, decode_event
from app.engine.events import DepthUpdate, Event, Kline
from app.errors import MalformedFrameError
from app.models.warmup import STREAM_MARK, ModelReady, Warmup, decode_warmup, is_warmup
from app.sim.exchange_info import exchange_info
from app.sim.frames import Frame
from app.sim.klines import INTERVALS_MS, KlineQuery
from app.sim.market import SymbolMarket
from app.sim.recordings import iter_recording, load_exchange_info
from app.sim.symbols import spec_for

Replayed = tuple[int, str, Event]
ReplayItem = tuple[int, str, Event | Warmup | ModelReady]
"""A replayed event, or the engine's start-up input recorded at that point."""

DAY0_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z, as in models/make_default.py
SIM_STEP_MS = 100
SIM_FUNDING_INTERVAL_MS = 8 * 3600 * 1000
# The streams the engine subscribes in its default (partial-depth) mode.
_KINDS = ("aggTrade", "bookTicker", "depth20@100ms", "markPrice@1s")


def recording_events(path: Path) -> Iterator[Replayed]:
    """Every decodable market event of a recording (``.jsonl``, market ``.db`` or ``.db.zst``).

    Malformed frames are skipped (the live engine counts and skips them too); klines are dropped
    (the engine builds its own bars from trades).
    """
    for ts_ns, stream, ev in recording_inputs(path):
        if not isinstance(ev, Warmup | ModelReady):
            yield ts_ns, stream, ev


def recording_inputs(path: Path) -> Iterator[ReplayItem]:
    """:func:`recording_events` plus the engine's recorded start-up inputs (:mod:`.warmup`), in
    the order the engine used them: what a backtest needs to decide where the engine decided."""
    for frame in iter_recording(path):
        if is_warmup(frame.stream):
            # A damaged one is left out: the replay then warms from the data, as it always did.
            with contextlib.suppress(msgspec.DecodeError):
                yield frame.ts_ns, frame.stream, decode_warmup(frame.data)
            continue
        try:
            event = decode_event(frame.data)
        except MalformedFrameError:
            continue
        if type(event) is not Kline:
            yield frame.ts_ns, frame.stream, event


class _Sink:
    def __init__(self, streams: set[str]) -> None:
        self.streams = streams
        self.frames: list[Frame] = []

    def wants(self, stream: str) -> bool:
        return stream in self.streams

    def publish(self, frame: Frame) -> None:
        self.frames.append(frame)


@dataclass(frozen=True)
class SimSeries:
    """A simulated stretch: symbols (lower case), seed, start and length."""

    symbols: tuple[str, ...] = ("btcusdt", "ethusdt")
    seed: int = 1
    start_ms: int = DAY0_MS
    minutes: int = 60


def sim_events(series: SimSeries) -> Iterator[Replayed]:
    """The simulator's market model run in-process (no server, no clock): every frame the engine
    would receive, decoded, received at the end of its step."""
    for ts_ns, stream, ev in sim_inputs(series, warmup=False):
        if not isinstance(ev, Warmup | ModelReady):
            yield ts_ns, stream, ev


def sim_inputs(series: SimSeries, warmup: bool = True) -> Iterator[ReplayItem]:
    """:func:`sim_events`, first with each symbol's :class:`Warmup`: the simulator's last 60
    one-minute klines before the start, as an engine started then would fetch and use them."""
    markets = [
        SymbolMarket(spec_for(s), series.seed, series.start_ms, SIM_STEP_MS,
                     SIM_FUNDING_INTERVAL_MS)
        for s in series.symbols
    ]  # fmt: skip
    if warmup:
        query = KlineQuery(INTERVALS_MS["1m"], None, None, 60)
        for s, market in zip(series.symbols, markets, strict=True):
            rows = market.klines.query(query, series.start_ms)
            item = Warmup(s.upper(), "1m", series.start_ms, tuple(tuple(r) for r in rows))
            yield series.start_ms * 1_000_000, f"{s}{STREAM_MARK}kline_1m", item
    sinks = [_Sink({f"{s}@{k}" for k in _KINDS}) for s in series.symbols]
    t = series.start_ms
    for _ in range(series.minutes * 60_000 // SIM_STEP_MS):
        ts_ns = (t + SIM_STEP_MS) * 1_000_000
        for market, sink in zip(markets, sinks, strict=True):
            market.step(t, sink)
            for frame in sink.frames:
                yield ts_ns, frame.stream, decode_event(frame.raw)
            sink.frames.clear()
        t += SIM_STEP_MS


def sim_filters(symbols: Iterable[str]) -> dict[str, SymbolFilters]:
    """Exchange filters of simulated symbols, from the simulator's own exchangeInfo."""
    return parse_symbol_filters(exchange_info([spec_for(s.lower()) for s in symbols], DAY0_MS))


def recorded_filters(path: Path) -> dict[str, SymbolFilters]:
    """Exchange filters from a recorded exchangeInfo response (``<url> -> <ts>: <body>``)."""
    return parse_symbol_filters(load_exchange_info(path))


def load_depth_snapshots(path: Path) -> dict[str, DepthSnapshot]:
    """Recorded REST depth snapshots by upper-case symbol (``<url> -> <ts>: <body>`` lines)."""
    out: dict[str, DepthSnapshot] = {}
    for line in path.read_text().splitlines():
        if " -> " not in line or "symbol=" not in line:
            continue
        url, rest = line.split(" -> ", 1)
        symbol = url.split("symbol=", 1)[1].split("&", 1)[0].upper()
        out[symbol] = decode_depth_snapshot(rest.partition(": ")[2])
    return out


class ReplayBooks:
    """Order books rebuilt from replayed depth events, as the live engine keeps them."""

    def __init__(self, snapshots: Mapping[str, DepthSnapshot] | None = None) -> None:
        self.books: dict[str, OrderBook] = {}
        self._syncs: dict[str, DiffDepthSync] = {}
        self._snapshots = dict(snapshots or {})

    def on_event(self, stream: str, ev: DepthUpdate) -> None:
        """Apply a depth event (``stream`` tells partial from diff depth)."""
        symbol = ev.symbol
        book = self.books.get(symbol)
        if book is None:
            book = self.books[symbol] = OrderBook(symbol)
        if "@depth@" not in stream and not stream.endswith("@depth"):
            book.apply_partial(ev)
            return
        sync = self._syncs.get(symbol)
        if sync is None:
            sync = self._syncs[symbol] = DiffDepthSync(book)
        sync.on_event(ev)
        snapshot = self._snapshots.get(symbol)
        if sync.needs_snapshot and snapshot is not None:
            sync.apply_snapshot(snapshot)
