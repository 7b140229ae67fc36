"""``appliance import-archive``: Binance's public daily and monthly archive files, read from disk.

Owners who fetch history elsewhere (Binance publishes USD-M futures history as one zip per symbol,
kind and day or month, each with a ``.CHECKSUM`` beside it) give the files or the folders holding
them; nothing is fetched here. Each zip holds one CSV of the same name, with or without a header
line (older files have none):

- ``<SYMBOL>-aggTrades-<date>.zip``: ``agg_trade_id, price, quantity, first_trade_id,
  last_trade_id, transact_time, is_buyer_maker``;
- ``<SYMBOL>-<interval>-<date>.zip`` under a ``klines``, ``markPriceKlines`` or
  ``indexPriceKlines`` folder (the name alone does not say which; outside such a folder it is
  ``klines``): ``open_time, open, high, low, close, volume, close_time, quote_volume, count,
  taker_buy_volume, taker_buy_quote_volume, ignore`` (the REST kline row);
- ``<SYMBOL>-fundingRate-<YYYY-MM>.zip``: ``calc_time, funding_interval_hours,
  last_funding_rate``.

``<date>`` is ``YYYY-MM-DD`` (daily) or ``YYYY-MM`` (monthly). Times are epoch milliseconds;
a time in microseconds (Binance moved some archives to them in 2025) is read as such.

A ``.CHECKSUM`` file (``<sha256 hex>  <zip name>``) must sit beside each zip and match, unless the
owner says ``--no-checksum``. The rows go through the same staging tables as ``appliance
download`` (keyed by their natural ids: a file given twice counts once) and are published into
the week files by :func:`app.store.imports.publish` as one job: give every file of a date range in
one command (a second job over a range whose weeks already hold frames is refused, as for a
download).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import time
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.errors import ConfigError
from app.models.download import Staging
from app.sim.klines import INTERVALS_MS
from app.store.imports import ImportJob, publish

KLINE_FOLDERS = ("klines", "markPriceKlines", "indexPriceKlines")
_NAME = re.compile(
    r"^(?P<symbol>[A-Z0-9]+)-(?P<kind>aggTrades|fundingRate|[0-9]+[smhdwM])-"
    r"(?P<date>\d{4}-\d{2}(?:-\d{2})?)\.zip$"
)
_US_THRESHOLD = 10**14  # an epoch time above this is in microseconds (ms reach it in 5138)


class ArchiveError(ConfigError):
    """An archive file is not what it says (name, checksum, content): fix or drop the file."""


@dataclass(frozen=True)
class ArchiveFile:
    """One zip: what its name and folder say it holds, and the span its date covers."""

    path: Path
    symbol: str
    kind: str  # aggTrades, fundingRate, klines, markPriceKlines, indexPriceKlines
    interval: str  # klines only
    start_ms: int
    end_ms: int

    @property
    def label(self) -> str:
        return f"{self.symbol} {self.kind}{' ' + self.interval if self.interval else ''}"


def _span(date: str) -> tuple[int, int]:
    parts = [int(p) for p in date.split("-")]
    start = datetime(parts[0], parts[1], parts[2] if len(parts) == 3 else 1, tzinfo=UTC)
    if len(parts) == 3:
        end_ms = int(start.timestamp() * 1000) + 86_400_000
    else:
        year, month = (parts[0] + 1, 1) if parts[1] == 12 else (parts[0], parts[1] + 1)
        end_ms = int(datetime(year, month, 1, tzinfo=UTC).timestamp() * 1000)
    return int(start.timestamp() * 1000), end_ms


def describe(path: Path) -> ArchiveFile:
    """What ``path`` holds, from its name and its folders (raises :class:`ArchiveError`)."""
    match = _NAME.match(path.name)
    if match is None:
        raise ArchiveError(
            f"{path.name}: not a Binance archive name (<SYMBOL>-aggTrades|fundingRate|<interval>"
            "-<YYYY-MM[-DD]>.zip)"
        )
    kind, interval = match["kind"], ""
    if kind not in ("aggTrades", "fundingRate"):
        if kind not in INTERVALS_MS:
            raise ArchiveError(f"{path.name}: unknown kline interval {kind!r}")
        interval = kind
        kind = next((p for p in reversed(path.parts[:-1]) if p in KLINE_FOLDERS), "klines")
    start, end = _span(match["date"])
    return ArchiveFile(path, match["symbol"], kind, interval, start, end)


def verify(path: Path) -> str:
    """The zip's SHA-256, checked against the ``.CHECKSUM`` beside it."""
    sidecar = path.with_name(path.name + ".CHECKSUM")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    try:
        text = sidecar.read_text().split()
    except OSError as exc:
        raise ArchiveError(
            f"{path.name}: no {sidecar.name} beside it (fetch it too, or --no-checksum)"
        ) from exc
    if not text or text[0].lower() != digest:
        raise ArchiveError(f"{path.name}: SHA-256 {digest} does not match {sidecar.name}")
    if len(text) > 1 and text[1].lstrip("*") != path.name:
        raise ArchiveError(f"{sidecar.name} names {text[1]}, not {path.name}")
    return digest


def _rows(path: Path) -> Iterator[list[str]]:
    """The CSV's data rows (a header line, if any, left out)."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if n.endswith(".csv")]
            if len(names) != 1:
                raise ArchiveError(f"{path.name}: expected one .csv inside, found {names}")
            with zf.open(names[0]) as raw:
                reader = csv.reader(io.TextIOWrapper(raw, encoding="ascii", newline=""))
                for k, row in enumerate(reader):
                    if not row:
                        continue
                    if k == 0 and not row[0].strip().lstrip("-").isdigit():
                        continue  # the header
                    yield row
    except zipfile.BadZipFile as exc:
        raise ArchiveError(f"{path.name}: not a zip file ({exc})") from exc


def _ms(text: str) -> int:
    value = int(text)
    return value // 1000 if value > _US_THRESHOLD else value


def _bool(text: str) -> int:
    value = text.strip().lower()
    if value not in ("true", "false"):
        raise ValueError(f"not a boolean: {text!r}")
    return int(value == "true")


_KLINE_SQL = "INSERT OR IGNORE INTO klines VALUES (?, ?, ?, ?, ?, ?)"
_TRADE_SQL = "INSERT OR IGNORE INTO agg_trades VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
_FUNDING_SQL = "INSERT OR IGNORE INTO funding VALUES (?, ?, ?, ?)"


def _parse(f: ArchiveFile, row: list[str]) -> tuple[str, tuple[Any, ...]]:
    if f.kind == "aggTrades":
        agg, price, qty, first, last, ts, maker = row[:7]
        return _TRADE_SQL, (f.symbol, int(agg), _ms(ts), price, qty, int(first), int(last),
                            _bool(maker))  # fmt: skip
    if f.kind == "fundingRate":
        return _FUNDING_SQL, (f.symbol, _ms(row[0]), row[2], "")
    open_ms, close_ms = _ms(row[0]), _ms(row[6])
    rest_row = [open_ms, *row[1:6], close_ms, row[7], int(row[8]), row[9], row[10], row[11]]
    return _KLINE_SQL, (f.symbol, f.kind, f.interval, open_ms, close_ms, json.dumps(rest_row))


def stage(st: Staging, f: ArchiveFile, batch: int = 20_000) -> int:
    """Every row of ``f`` into the staging tables, in one transaction; returns the rows read."""
    conn = st.conn
    count = 0
    pending: dict[str, list[tuple[Any, ...]]] = {}
    conn.execute("BEGIN IMMEDIATE")
    try:
        for n, row in enumerate(_rows(f.path), 1):
            try:
                sql, values = _parse(f, row)
            except (ValueError, IndexError) as exc:
                raise ArchiveError(f"{f.path.name}: row {n} is not a {f.kind} row: {row}") from exc
            pending.setdefault(sql, []).append(values)
            count += 1
            if count % batch == 0:
                for s, rows in pending.items():
                    conn.executemany(s, rows)
                pending.clear()
        for s, rows in pending.items():
            conn.executemany(s, rows)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return count


def find(paths: Iterable[Path]) -> list[Path]:
    """The zips among ``paths`` (folders searched recursively), in name order."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(p.rglob("*.zip"))
        elif p.exists():
            out.append(p)
        else:
            raise ArchiveError(f"{p} does not exist")
    if not out:
        raise ArchiveError("no archive (.zip) files given")
    return out


@dataclass
class ImportSummary:
    job: str
    files: dict[str, int] = field(default_factory=dict)  # "<kind>/<file name>" -> rows read
    written: dict[str, int] = field(default_factory=dict)  # week file -> frames
    checksums: str = "verified"
    wall_s: float = 0.0


def import_archives(
    paths: Iterable[Path], market_dir: Path, checksum: bool = True
) -> ImportSummary:
    """Stage every file, then publish them as one job into ``market_dir``'s week files."""
    started = time.monotonic()
    files = [describe(p) for p in find(paths)]
    digests = [verify(f.path) if checksum else hashlib.sha256(f.path.read_bytes()).hexdigest()
               for f in files]  # fmt: skip
    job_key = hashlib.sha256("\n".join(sorted(digests)).encode()).hexdigest()[:16]
    mark = sorted({f.interval for f in files if f.kind == "markPriceKlines"})
    if len(mark) > 1:
        raise ArchiveError(f"mark price klines at several intervals ({mark}): give one")
    # Funding files (monthly) are context for the mark frames: the job spans the market data.
    spanning = [f for f in files if f.kind != "fundingRate"] or files
    staging_path = market_dir / "import" / f"{job_key}.db"
    summary = ImportSummary(job_key, checksums="verified" if checksum else "not checked")
    st = Staging(staging_path)
    try:
        for f in files:
            key = f"{f.kind}/{f.path.name}"  # kline kinds share file names
            summary.files[key] = summary.files.get(key, 0) + stage(st, f)
        job = ImportJob(
            job=job_key,
            source="archive " + ",".join(sorted({f.path.parent.name or "." for f in files})),
            symbols=tuple(sorted({f.symbol for f in files})),
            start_ms=min(f.start_ms for f in spanning),
            end_ms=max(f.end_ms for f in spanning),
            intervals=tuple(sorted({f.interval for f in files if f.kind == "klines"})),
            mark_interval=mark[0] if mark else "",
        )
        summary.written = publish(st.conn, market_dir, job, time.time_ns())
    finally:
        st.conn.close()
    staging_path.unlink(missing_ok=True)  # published: the week files hold it all now
    summary.wall_s = round(time.monotonic() - started, 1)
    return summary
