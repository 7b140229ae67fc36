"""Downloaded history into the weekly market files, as frames a recording would hold.

``appliance download`` stages REST pages in a database of their own (``download.py``); once every
page is in, :func:`publish` writes them into ``market_<year>_<week>.db`` the way the recorder does:
raw frames in zstd blocks (the source of truth every reader uses) and the derived ``trades`` and
``marks`` rows. The frames are the combined-stream frames the live streams would have carried,
rebuilt from the REST rows and stamped with the exchange's event time (there was no receive time):

- ``<symbol>@aggTrade``: one per aggregated trade, ``E`` = ``T`` (REST gives no event time);
- ``<symbol>@kline_<interval>``: the closed bar (``x`` true) at its close time; REST gives no
  first/last trade ids, so ``f`` and ``L`` are -1;
- ``<symbol>@markPrice@1s``: one per mark-price bar, at its close: ``p`` the mark close, ``i`` and
  ``P`` the index close (the mark where no index bar was fetched), ``r`` the last funding rate
  *settled* at or before that time (the live stream shows the next one's estimate, which REST
  does not keep: using the settled rate never shows a model the future), ``T`` the next
  settlement time.

Frames are written in time order (within a millisecond: trades, then klines, then marks; then by
symbol), hour by hour, in one transaction per week file together with a row in ``imports``: a job
is imported into a week once or not at all. A week file that already holds frames inside the
job's range is refused (the two would interleave): download that range into another directory.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec

from app.errors import ConfigError
from app.store import db, rawlog, schema, weeks

_HOUR_MS = 3_600_000
_BLOCK_FRAMES = 4000
_MS = 1_000_000
# Ordering within one millisecond.
_TRADE, _KLINE, _MARK = 0, 1, 2

_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True)
class ImportJob:
    """What to publish: the symbols (upper case), ``[start_ms, end_ms)``, the kline intervals and
    the mark-price interval (empty: none), and a key naming the job."""

    job: str
    source: str
    symbols: tuple[str, ...]
    start_ms: int
    end_ms: int
    intervals: tuple[str, ...]
    mark_interval: str


@dataclass
class _Week:
    frames: list[tuple[int, bytes]]
    trades: list[tuple[int, int, str, int, str, str, int]]
    marks: list[tuple[int, int, str, str, str, str, int]]


def publish(
    staging: sqlite3.Connection,
    market_dir: Path,
    job: ImportJob,
    now_ns: int,
    on_week: Callable[[Path, int], None] = lambda path, frames: None,
) -> dict[str, int]:
    """Write the job's staged rows into the week files; returns frames written per file name."""
    written: dict[str, int] = {}
    t = job.start_ms
    while t < job.end_ms:
        _, week_end = weeks.week_bounds_ns(t * _MS)
        hi = min(job.end_ms, week_end // _MS)
        path = weeks.market_file(market_dir, weeks.week_of(t * _MS))
        written[path.name] = _publish_week(staging, path, job, t, hi, now_ns)
        on_week(path, written[path.name])
        t = hi
    return written


def _publish_week(
    staging: sqlite3.Connection, path: Path, job: ImportJob, lo: int, hi: int, now_ns: int
) -> int:
    conn = db.connect(path)
    try:
        db.migrate(conn, schema.MARKET_MIGRATIONS)
        if conn.execute("SELECT 1 FROM imports WHERE job = ?", (job.job,)).fetchone():
            return 0
        clash = conn.execute(
            "SELECT MIN(ts_first_ns), MAX(ts_last_ns) FROM raw_blocks "
            "WHERE ts_last_ns >= ? AND ts_first_ns < ?",
            (lo * _MS, hi * _MS),
        ).fetchone()
        if clash[0] is not None:
            raise ConfigError(
                f"{path} already holds frames from {clash[0] // _MS} to {clash[1] // _MS} ms, "
                f"inside the download's range: download into another directory (--out)"
            )
        conn.execute("BEGIN IMMEDIATE")
        try:
            frames, first_block, last_block, first_ns, last_ns = 0, None, None, 0, 0
            hour = lo
            while hour < hi:
                week = _frames(staging, job, hour, min(hi, hour + _HOUR_MS))
                hour += _HOUR_MS
                for k in range(0, len(week.frames), _BLOCK_FRAMES):
                    chunk = week.frames[k : k + _BLOCK_FRAMES]
                    cur = conn.execute(
                        "INSERT INTO raw_blocks (ts_first_ns, ts_last_ns, frames, codec, body) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (chunk[0][0], chunk[-1][0], len(chunk), rawlog.CODEC,
                         rawlog.encode_block(chunk)),
                    )  # fmt: skip
                    last_block = cur.lastrowid
                    first_block = first_block if first_block is not None else last_block
                    first_ns = first_ns or chunk[0][0]
                    last_ns = chunk[-1][0]
                    frames += len(chunk)
                conn.executemany("INSERT INTO trades VALUES (?, ?, ?, ?, ?, ?, ?)", week.trades)
                conn.executemany("INSERT INTO marks VALUES (?, ?, ?, ?, ?, ?, ?)", week.marks)
            conn.execute(
                "INSERT INTO imports (job, source, symbols, ts_first_ns, ts_last_ns, first_block, "
                "last_block, frames, ts_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (job.job, job.source, ",".join(job.symbols), first_ns, last_ns, first_block,
                 last_block, frames, now_ns),
            )  # fmt: skip
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return frames
    finally:
        conn.close()


def _frames(staging: sqlite3.Connection, job: ImportJob, lo: int, hi: int) -> _Week:
    """Every frame of ``[lo, hi)`` ms, in time order, with the derived rows."""
    keyed: list[tuple[int, int, str, int, bytes]] = []
    out = _Week([], [], [])
    marks = {sym: list(_marks(staging, sym, job, lo, hi)) for sym in job.symbols}
    for sym in job.symbols:
        low = sym.lower()
        rows = staging.execute(
            "SELECT agg_id, ts_ms, price, qty, first_id, last_id, buyer_maker FROM agg_trades "
            "WHERE symbol = ? AND ts_ms >= ? AND ts_ms < ? ORDER BY agg_id",
            (sym, lo, hi),
        )
        stream = f"{low}@aggTrade"
        for agg, ts, price, qty, first, last, maker in rows:
            data = {"e": "aggTrade", "E": ts, "a": agg, "s": sym, "p": price, "q": qty,
                    "f": first, "l": last, "T": ts, "m": bool(maker)}  # fmt: skip
            keyed.append((ts, _TRADE, sym, agg, _encode({"stream": stream, "data": data})))
            out.trades.append((ts * _MS, ts, sym, agg, price, qty, maker))
        for interval in job.intervals:
            rows = staging.execute(
                "SELECT open_ms, close_ms, row FROM klines WHERE symbol = ? AND kind = 'klines' "
                "AND interval = ? AND close_ms >= ? AND close_ms < ? ORDER BY open_ms",
                (sym, interval, lo, hi),
            )
            stream = f"{low}@kline_{interval}"
            for open_ms, close_ms, body in rows:
                r = json.loads(body)
                k = {"t": open_ms, "T": close_ms, "s": sym, "i": interval, "f": -1, "L": -1,
                     "o": r[1], "c": r[4], "h": r[2], "l": r[3], "v": r[5], "n": r[8],
                     "x": True, "q": r[7], "V": r[9], "Q": r[10], "B": "0"}  # fmt: skip
                frame = _encode({"stream": stream, "data": {"e": "kline", "E": close_ms, "s": sym,
                                                            "k": k}})  # fmt: skip
                keyed.append((close_ms, _KLINE, sym, open_ms, frame))
        stream = f"{low}@markPrice@1s"
        for ts, mark, index, rate, next_ms in marks[sym]:
            data = {"e": "markPriceUpdate", "E": ts, "s": sym, "p": mark, "i": index, "P": index,
                    "r": rate, "T": next_ms}  # fmt: skip
            keyed.append((ts, _MARK, sym, 0, _encode({"stream": stream, "data": data})))
            out.marks.append((ts * _MS, ts, sym, mark, index, rate, next_ms))
    keyed.sort(key=lambda k: k[:4])
    out.frames = [(ts * _MS, raw) for ts, _, _, _, raw in keyed]
    out.trades.sort()
    out.marks.sort()
    return out


def _marks(
    staging: sqlite3.Connection, sym: str, job: ImportJob, lo: int, hi: int
) -> Iterator[tuple[int, str, str, str, int]]:
    """(close ms, mark, index, settled funding rate, next funding ms) per mark-price bar."""
    if not job.mark_interval:
        return
    index = dict(
        staging.execute(
            "SELECT open_ms, json_extract(row, '$[4]') FROM klines WHERE symbol = ? "
            "AND kind = 'indexPriceKlines' AND interval = ? AND close_ms >= ? AND close_ms < ?",
            (sym, job.mark_interval, lo, hi),
        ).fetchall()
    )
    funding = staging.execute(
        "SELECT ts_ms, rate FROM funding WHERE symbol = ? ORDER BY ts_ms", (sym,)
    ).fetchall()
    times = [t for t, _ in funding]
    step = times[-1] - times[-2] if len(times) > 1 else 8 * _HOUR_MS
    rows = staging.execute(
        "SELECT open_ms, close_ms, json_extract(row, '$[4]') FROM klines WHERE symbol = ? "
        "AND kind = 'markPriceKlines' AND interval = ? AND close_ms >= ? AND close_ms < ? "
        "ORDER BY open_ms",
        (sym, job.mark_interval, lo, hi),
    )
    k = 0
    for open_ms, close_ms, mark in rows:
        while k < len(times) and times[k] <= close_ms:
            k += 1
        rate = funding[k - 1][1] if k else "0"
        next_ms = times[k] if k < len(times) else (times[-1] if times else close_ms) + step
        while next_ms <= close_ms:
            next_ms += step
        yield close_ms, str(mark), str(index.get(open_ms, mark)), rate, next_ms
