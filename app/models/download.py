"""``appliance download``: Binance USD-M history from its public REST into the market store.

For each symbol, over ``[start, end)``: klines at any intervals, aggregated trades (found by time,
then paged by id, so nothing between two pages can be missed), the funding rate history (from a
day before the start, so the rate in force at the start is known) and mark and index price klines.
Every page is written to a staging database (``<out>/download/staging.db``) with its task's cursor
in one transaction, rows keyed by their natural id (``INSERT OR IGNORE``): kill the process at any
moment, run the same command again and it continues from the last page written, with nothing
fetched twice kept twice. When every task is done the history is published into the weekly market
files as the frames a recording would hold (:mod:`app.store.imports`), so ``appliance dataset``,
``appliance backtest`` and ``appliance sim --replay`` read it as they read a recording.

Request weight is budgeted: the limit is read from ``exchangeInfo`` (``REQUEST_WEIGHT`` per
minute), the weight used from each answer's ``X-MBX-USED-WEIGHT-1M``, and a request that would
take the minute past ``budget_share`` of the limit waits for the next minute (server time); what
each request weighs is :mod:`app.binance.weights`'s. A 429 or 418 waits its ``Retry-After``; 5xx
and connection errors are retried with a backoff, then fail.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx

from app.binance.weights import request_weight
from app.errors import ConfigError
from app.sim.klines import INTERVALS_MS
from app.store import db, schema
from app.store.imports import ImportJob, publish

_HOUR_MS = 3_600_000
_DAY_MS = 24 * _HOUR_MS
_RETRIES = 6
KLINE_KINDS = ("klines", "markPriceKlines", "indexPriceKlines")


class DownloadError(ConfigError):
    """The exchange refused a request (bad symbol, bad range): fix the command and run again."""


@dataclass(frozen=True)
class DownloadSpec:
    """What to fetch. Times are ms, ``[start_ms, end_ms)``; symbols upper case."""

    symbols: tuple[str, ...]
    start_ms: int
    end_ms: int
    intervals: tuple[str, ...] = ("1m",)
    trades: bool = True
    funding: bool = True
    mark_interval: str = "1m"  # mark and index price klines; "" for none
    page_limit: int = 1000
    budget_share: float = 0.8

    def check(self) -> None:
        if not self.symbols:
            raise ConfigError("download: no symbols")
        if self.end_ms <= self.start_ms:
            raise ConfigError("download: the end must come after the start")
        for interval in (*self.intervals, *([self.mark_interval] if self.mark_interval else [])):
            if interval not in INTERVALS_MS:
                raise ConfigError(f"download: unknown interval {interval!r}")
        if not 1 <= self.page_limit <= 1000:
            raise ConfigError("download: the page limit is 1..1000")

    def job_key(self) -> str:
        body = {k: v for k, v in asdict(self).items() if k not in ("page_limit", "budget_share")}
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Task:
    symbol: str
    kind: str  # klines, markPriceKlines, indexPriceKlines, aggTrades, fundingRate
    interval: str = ""

    def key(self, spec: DownloadSpec) -> str:
        return f"{self.symbol}/{self.kind}/{self.interval}/{spec.start_ms}-{spec.end_ms}"

    @property
    def label(self) -> str:
        return f"{self.symbol} {self.kind}{' ' + self.interval if self.interval else ''}"


def tasks(spec: DownloadSpec) -> list[Task]:
    out: list[Task] = []
    for sym in spec.symbols:
        out += [Task(sym, "klines", i) for i in spec.intervals]
        if spec.mark_interval:
            out += [Task(sym, k, spec.mark_interval) for k in KLINE_KINDS[1:]]
        if spec.funding:
            out.append(Task(sym, "fundingRate"))
        if spec.trades:
            out.append(Task(sym, "aggTrades"))
    return out


@dataclass
class WeightBudget:
    """Request weight per minute of server time: wait rather than exceed ``share`` of the limit."""

    limit: int
    share: float = 0.8
    offset_ms: int = 0  # server time - local time
    used: int = 0
    window: int = -1
    waited_s: float = 0.0
    sleep: Callable[[float], None] = time.sleep
    now_ms: Callable[[], int] = field(default=lambda: time.time_ns() // 1_000_000)

    def _server_ms(self) -> int:
        return self.now_ms() + self.offset_ms

    def before(self, weight: int) -> None:
        now = self._server_ms()
        window = now // 60_000
        if window != self.window:
            self.window, self.used = window, 0
        if self.used + weight > self.limit * self.share:
            pause = ((window + 1) * 60_000 - now) / 1000 + 0.05
            self.waited_s += pause
            self.sleep(pause)
            self.window, self.used = window + 1, 0

    def after(self, headers: httpx.Headers, weight: int) -> None:
        used = headers.get("x-mbx-used-weight-1m")
        self.used = int(used) if used and used.isdigit() else self.used + weight


class Rest:
    """GET with the weight budget and the retries, in one place."""

    def __init__(self, base_url: str, client: httpx.Client | None = None) -> None:
        self.http = client or httpx.Client(base_url=base_url, timeout=30.0)
        self.requests = 0
        self.budget = WeightBudget(limit=2400)

    def start(self, share: float) -> dict[str, Any]:
        """Read the server's time and weight limit; returns exchangeInfo."""
        t0 = time.time_ns() // 1_000_000
        server = self.get("/fapi/v1/time", {})["serverTime"]
        t1 = time.time_ns() // 1_000_000
        info: dict[str, Any] = self.get("/fapi/v1/exchangeInfo", {})
        limit = next(
            (
                int(r["limit"])
                for r in info.get("rateLimits", [])
                if r.get("rateLimitType") == "REQUEST_WEIGHT" and r.get("interval") == "MINUTE"
            ),
            2400,
        )
        self.budget = WeightBudget(limit=limit, share=share, offset_ms=server - (t0 + t1) // 2)
        return info

    def server_ms(self) -> int:
        return time.time_ns() // 1_000_000 + self.budget.offset_ms

    def get(self, path: str, params: dict[str, Any]) -> Any:
        weight = request_weight("GET", path, params)
        delay = 0.5
        for attempt in range(_RETRIES):
            self.budget.before(weight)
            try:
                resp = self.http.get(path, params=params)
            except httpx.TransportError as exc:
                if attempt == _RETRIES - 1:
                    raise DownloadError(f"GET {path}: {exc}") from exc
                time.sleep(delay)
                delay *= 2
                continue
            self.requests += 1
            self.budget.after(resp.headers, weight)
            if resp.status_code in (429, 418):
                retry = resp.headers.get("retry-after", "")
                pause = float(retry) if retry.isdigit() else 60.0
                self.budget.waited_s += pause
                time.sleep(pause)
                continue
            if resp.status_code >= 500:
                time.sleep(delay)
                delay *= 2
                continue
            if resp.status_code != 200:
                raise DownloadError(f"GET {path} {params}: HTTP {resp.status_code} {resp.text}")
            return resp.json()
        raise DownloadError(f"GET {path}: no answer after {_RETRIES} attempts")


class Staging:
    """The staging database: rows and cursors, one transaction per page."""

    def __init__(self, path: Path) -> None:
        self.conn = db.connect(path)
        db.migrate(self.conn, schema.DOWNLOAD_MIGRATIONS)

    def cursor(self, key: str, start: int) -> tuple[int, int | None, int, bool]:
        row = self.conn.execute(
            "SELECT position, from_id, rows, done FROM cursors WHERE task = ?", (key,)
        ).fetchone()
        if row is None:
            return start, None, 0, False
        return int(row[0]), row[1], int(row[2]), bool(row[3])

    def save(
        self,
        key: str,
        sql: str,
        rows: list[tuple[Any, ...]],
        cursor: tuple[int, int | None, int, bool],
    ) -> None:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            if rows:
                conn.executemany(sql, rows)
            conn.execute(
                "INSERT OR REPLACE INTO cursors (task, position, from_id, rows, done) "
                "VALUES (?, ?, ?, ?, ?)",
                (key, *cursor[:3], int(cursor[3])),
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


_KLINE_SQL = "INSERT OR IGNORE INTO klines VALUES (?, ?, ?, ?, ?, ?)"
_TRADE_SQL = "INSERT OR IGNORE INTO agg_trades VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
_FUNDING_SQL = "INSERT OR IGNORE INTO funding VALUES (?, ?, ?, ?)"

Progress = Callable[[Task, float, int], None]


def _fetch_klines(
    rest: Rest, st: Staging, spec: DownloadSpec, task: Task, report: Progress
) -> None:
    key = task.key(spec)
    step = INTERVALS_MS[task.interval]
    first = -(-spec.start_ms // step) * step
    pos, _, count, done = st.cursor(key, first)
    param = "pair" if task.kind == "indexPriceKlines" else "symbol"
    while not done:
        now = rest.server_ms()
        page = rest.get(
            f"/fapi/v1/{task.kind}",
            {param: task.symbol, "interval": task.interval, "startTime": pos,
             "endTime": spec.end_ms - 1, "limit": spec.page_limit},
        )  # fmt: skip
        # Only closed bars that close inside the range.
        rows = [
            (task.symbol, task.kind, task.interval, int(r[0]), int(r[6]), json.dumps(r))
            for r in page
            if int(r[0]) >= pos and int(r[6]) < min(spec.end_ms, now)
        ]
        count += len(rows)
        if rows:
            pos = rows[-1][3] + step
        done = not rows or pos + step > spec.end_ms or len(page) < spec.page_limit
        st.save(key, _KLINE_SQL, rows, (pos, None, count, done))
        report(task, (pos - first) / max(1, spec.end_ms - first), count)


def _fetch_funding(
    rest: Rest, st: Staging, spec: DownloadSpec, task: Task, report: Progress
) -> None:
    key = task.key(spec)
    first = spec.start_ms - _DAY_MS
    pos, _, count, done = st.cursor(key, first)
    while not done:
        page = rest.get(
            "/fapi/v1/fundingRate",
            {"symbol": task.symbol, "startTime": pos, "endTime": spec.end_ms - 1, "limit": 1000},
        )
        rows = [
            (task.symbol, int(r["fundingTime"]), str(r["fundingRate"]), str(r.get("markPrice", "")))
            for r in page
            if pos <= int(r["fundingTime"]) < spec.end_ms
        ]
        count += len(rows)
        if rows:
            pos = rows[-1][1] + 1
        done = len(page) < 1000 or not rows
        st.save(key, _FUNDING_SQL, rows, (pos, None, count, done))
        report(task, (pos - first) / max(1, spec.end_ms - first), count)


def _fetch_trades(
    rest: Rest, st: Staging, spec: DownloadSpec, task: Task, report: Progress
) -> None:
    """Find the first trade at or after the start by time (hour windows), then page by id."""
    key = task.key(spec)
    pos, from_id, count, done = st.cursor(key, spec.start_ms)
    span = spec.end_ms - spec.start_ms
    while not done:
        if from_id is None:
            end = min(pos + _HOUR_MS, spec.end_ms) - 1
            params: dict[str, Any] = {"startTime": pos, "endTime": end}
        else:
            params = {"fromId": from_id}
        page = rest.get(
            "/fapi/v1/aggTrades", {"symbol": task.symbol, **params, "limit": spec.page_limit}
        )
        rows = [
            (task.symbol, int(r["a"]), int(r["T"]), str(r["p"]), str(r["q"]), int(r["f"]),
             int(r["l"]), int(bool(r["m"])))
            for r in page
            if spec.start_ms <= int(r["T"]) < spec.end_ms
        ]  # fmt: skip
        count += len(rows)
        past_end = any(int(r["T"]) >= spec.end_ms for r in page)
        if page:
            from_id = int(page[-1]["a"]) + 1
            pos = max(pos, int(page[-1]["T"]))
        elif from_id is None:
            pos = end + 1  # an hour without trades
        # By time: until the window passes the end; by id: until a page reaches it or runs dry.
        done = pos >= spec.end_ms if from_id is None else past_end or len(page) < spec.page_limit
        st.save(key, _TRADE_SQL, rows, (pos, from_id, count, done))
        report(task, min(1.0, (pos - spec.start_ms) / span), count)


_FETCHERS = {
    "klines": _fetch_klines,
    "markPriceKlines": _fetch_klines,
    "indexPriceKlines": _fetch_klines,
    "fundingRate": _fetch_funding,
    "aggTrades": _fetch_trades,
}


class ProgressLine:
    """One line, rewritten in place on a terminal; elsewhere a line every ``every_s``."""

    def __init__(self, out: TextIO, rest: Rest, every_s: float = 2.0) -> None:
        self.out = out
        self.rest = rest
        self.tty = out.isatty()
        self.every_s = every_s
        self._last = 0.0
        self.started = time.monotonic()

    def __call__(self, task: Task, fraction: float, rows: int) -> None:
        now = time.monotonic()
        if now - self._last < (0.1 if self.tty else self.every_s) and fraction < 1.0:
            return
        self._last = now
        budget = self.rest.budget
        width = 24
        filled = int(width * max(0.0, min(1.0, fraction)))
        text = (
            f"{task.label:32s} [{'#' * filled}{'.' * (width - filled)}] {fraction:6.1%} "
            f"{rows:>9,} rows  weight {budget.used}/{budget.limit}  "
            f"{self.rest.requests} requests  {now - self.started:5.1f} s"
        )
        if self.tty:
            self.out.write("\r" + text + "\x1b[K")
            if fraction >= 1.0:
                self.out.write("\n")
        else:
            self.out.write(text + "\n")
        self.out.flush()


def download(
    spec: DownloadSpec,
    base_url: str,
    market_dir: Path,
    out: TextIO = sys.stderr,
    client: httpx.Client | None = None,
) -> dict[str, Any]:
    """Fetch what is missing, then publish into ``market_dir``; returns a summary."""
    spec.check()
    started = time.monotonic()
    rest = Rest(base_url, client)
    rest.start(spec.budget_share)
    staging_path = market_dir / "download" / "staging.db"
    st = Staging(staging_path)
    progress = ProgressLine(out, rest)
    counts: dict[str, int] = {}
    try:
        for task in tasks(spec):
            _FETCHERS[task.kind](rest, st, spec, task, progress)
            counts[task.label] = st.cursor(task.key(spec), 0)[2]
            progress(task, 1.0, counts[task.label])
        job = ImportJob(
            job=spec.job_key(),
            source=f"download {base_url}",
            symbols=spec.symbols,
            start_ms=spec.start_ms,
            end_ms=spec.end_ms,
            intervals=spec.intervals,
            mark_interval=spec.mark_interval,
        )
        written = publish(st.conn, market_dir, job, time.time_ns())
    finally:
        st.conn.close()
    return {
        "job": spec.job_key(),
        "rows": counts,
        "files": written,
        "requests": rest.requests,
        "weight_limit": rest.budget.limit,
        "waited_s": round(rest.budget.waited_s, 1),
        "wall_s": round(time.monotonic() - started, 1),
    }
