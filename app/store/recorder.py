"""The market-data recorder: one writer thread fed off the hot path in batches.

The hot path only appends tuples to lists (no locks, no queue operation per message); ``flush``,
called on a timer by the engine's loop or when a buffer fills, hands the lists to the writer thread
as one batch. The writer compresses the raw frames into one block, inserts the derived rows with
``executemany`` and commits once per batch. It picks the weekly file from the records' receive
timestamps, so a batch that straddles Monday 00:00 UTC is split between the two weeks' files and the
closed week is handed to ``on_week_closed`` for backup.

Storage trouble never reaches trading: when the disk is nearly full (free space below
``min_free_bytes``) or SQLite reports SQLITE_FULL, the batch is rolled back, recording stops, an
alarm is raised, and batches are counted as dropped until space returns. Callbacks run on the
writer thread: the engine marshals them onto its loop.
"""

from __future__ import annotations

import logging
import queue
import shutil
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from app.clock import Clock
from app.config import StoreConfig
from app.store import db, rawlog, schema, weeks

log = logging.getLogger(__name__)

TradeRow = tuple[int, int, str, int, str, str, int]
TopRow = tuple[int, int, str, int, str, str, str, str]
# (ts_recv_ns, symbol, last update id, bids, asks): the levels as the book holds them, encoded
# to JSON text by the writer thread, not on the event loop.
SnapshotRow = tuple[int, str, int, Sequence[Sequence[str]], Sequence[Sequence[str]]]
MarkRow = tuple[int, int, str, str, str, str, int]

# How often the writer looks at free disk space; statvfs is cheap but not free.
_DISK_CHECK_INTERVAL_NS = 5_000_000_000


@dataclass
class _Batch:
    frames: list[tuple[int, bytes]] = field(default_factory=list)
    trades: list[TradeRow] = field(default_factory=list)
    tops: list[TopRow] = field(default_factory=list)
    snapshots: list[SnapshotRow] = field(default_factory=list)
    marks: list[MarkRow] = field(default_factory=list)

    def size(self) -> int:
        return (
            len(self.frames)
            + len(self.trades)
            + len(self.tops)
            + len(self.snapshots)
            + len(self.marks)
        )


@dataclass
class RecorderStats:
    batches: int = 0
    frames: int = 0
    rows: int = 0
    dropped_batches: int = 0
    dropped_records: int = 0
    recording: bool = True
    stop_reason: str = ""
    current_file: str = ""
    last_commit_ns: int = 0
    queue_depth: int = 0


class Recorder:
    """Batching SQLite writer for raw frames and derived market tables."""

    def __init__(
        self,
        cfg: StoreConfig,
        market_dir: Path,
        clock: Clock,
        on_alarm: Callable[[str, str, bool], None] = lambda kind, msg, active: None,
        on_week_closed: Callable[[Path], None] = lambda path: None,
    ) -> None:
        self._cfg = cfg
        self._dir = market_dir
        self._clock = clock
        self._on_alarm = on_alarm
        self._on_week_closed = on_week_closed
        self._batch = _Batch()
        self._pending = 0
        self._queue: queue.SimpleQueue[_Batch | None] = queue.SimpleQueue()
        self._queued_records = 0
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self._week_end_ns = 0
        self._week_start_ns = 0
        self._next_disk_check_ns = 0
        self._encode = msgspec.json.Encoder().encode  # book levels to compact JSON text
        self._alarm_up = False
        self.stats = RecorderStats()

    # -- hot path: called on the engine's loop ------------------------------------------------

    def frame(self, ts_recv_ns: int, raw: bytes) -> None:
        self._batch.frames.append((ts_recv_ns, raw))
        self._bump()

    def trade(self, row: TradeRow) -> None:
        self._batch.trades.append(row)
        self._bump()

    def top(self, row: TopRow) -> None:
        self._batch.tops.append(row)
        self._bump()

    def book_snapshot(self, row: SnapshotRow) -> None:
        self._batch.snapshots.append(row)
        self._bump()

    def mark(self, row: MarkRow) -> None:
        self._batch.marks.append(row)
        self._bump()

    def _bump(self) -> None:
        self._pending += 1
        if self._pending >= self._cfg.batch_max:
            self.flush()

    def flush(self) -> None:
        """Hand the buffered records to the writer thread (never blocks)."""
        if not self._pending:
            return
        batch, self._batch = self._batch, _Batch()
        count, self._pending = self._pending, 0
        if self._queued_records + count > self._cfg.queue_max:
            # The writer cannot keep up (or the disk stalls): shed load here rather than grow
            # memory without bound on a board with 8 GB shared with trading.
            self.stats.dropped_batches += 1
            self.stats.dropped_records += count
            return
        self._queued_records += count
        self._queue.put(batch)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
        self._thread.start()

    def alarm_open(self) -> None:
        """A ``disk_full`` alarm from an earlier run is still open: the next commit clears it."""
        self._alarm_up = True

    def stop(self, timeout: float = 10.0) -> None:
        """Flush what is buffered, let the writer drain its queue, and close the file."""
        self.flush()
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout)
        self._thread = None

    def discard_queued(self) -> int:
        """Drop the batches waiting for the writer; returns how many records were dropped.

        For the benchmark, which measures the hand-off to the recorder but not the disk write.
        """
        dropped = 0
        while True:
            try:
                batch = self._queue.get_nowait()
            except queue.Empty:
                break
            if batch is not None:
                dropped += batch.size()
        self._queued_records = 0
        return dropped

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- writer thread -----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                batch = self._queue.get()
                if batch is None:
                    break
                self._queued_records -= batch.size()
                self.stats.queue_depth = self._queued_records
                self._write(batch)
        finally:
            self._close()

    def _write(self, batch: _Batch) -> None:
        now = self._clock.monotonic_ns()
        if not self.stats.recording or now >= self._next_disk_check_ns:
            self._next_disk_check_ns = now + _DISK_CHECK_INTERVAL_NS
            self._check_disk()
        if not self.stats.recording:
            self.stats.dropped_batches += 1
            self.stats.dropped_records += batch.size()
            return
        try:
            for part_start, part in self._split_by_week(batch):
                self._ensure_file(part_start)
                self._commit(part)
        except sqlite3.Error as exc:
            if db.is_disk_full(exc):
                self._stop_recording(f"database or disk is full: {exc}")
                self.stats.dropped_batches += 1
                self.stats.dropped_records += batch.size()
                return
            raise

    def _split_by_week(self, batch: _Batch) -> list[tuple[int, _Batch]]:
        """Split a batch at ISO-week boundaries (almost always a single part)."""
        first = _first_ts(batch)
        if first is None:
            return []
        if self._week_start_ns <= first < self._week_end_ns and _last_ts(batch) < self._week_end_ns:
            return [(first, batch)]
        parts: dict[int, _Batch] = {}
        for name in ("frames", "trades", "tops", "snapshots", "marks"):
            for row in getattr(batch, name):
                start, _ = weeks.week_bounds_ns(row[0])
                getattr(parts.setdefault(start, _Batch()), name).append(row)
        return sorted(parts.items())

    def _ensure_file(self, ts_ns: int) -> None:
        if self._conn is not None and self._week_start_ns <= ts_ns < self._week_end_ns:
            return
        closed = self._close()
        self._week_start_ns, self._week_end_ns = weeks.week_bounds_ns(ts_ns)
        path = weeks.market_file(self._dir, weeks.week_of(ts_ns))
        self._conn = db.connect(path, max_page_count=self._cfg.max_page_count)
        db.migrate(self._conn, schema.MARKET_MIGRATIONS)
        self.stats.current_file = str(path)
        if closed is not None and closed != path:
            self._on_week_closed(closed)

    def _commit(self, batch: _Batch) -> None:
        conn = self._conn
        assert conn is not None
        conn.execute("BEGIN")
        try:
            if batch.frames:
                conn.execute(
                    "INSERT INTO raw_blocks (ts_first_ns, ts_last_ns, frames, codec, body) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (
                        batch.frames[0][0],
                        batch.frames[-1][0],
                        len(batch.frames),
                        rawlog.CODEC,
                        rawlog.encode_block(batch.frames),
                    ),
                )
            if batch.trades:
                conn.executemany("INSERT INTO trades VALUES (?, ?, ?, ?, ?, ?, ?)", batch.trades)
            if batch.tops:
                conn.executemany("INSERT INTO tops VALUES (?, ?, ?, ?, ?, ?, ?, ?)", batch.tops)
            if batch.snapshots:
                enc = self._encode
                conn.executemany(
                    "INSERT INTO book_snapshots VALUES (?, ?, ?, ?, ?)",
                    [
                        (ts, symbol, uid, enc(bids).decode(), enc(asks).decode())
                        for ts, symbol, uid, bids, asks in batch.snapshots
                    ],
                )
            if batch.marks:
                conn.executemany("INSERT INTO marks VALUES (?, ?, ?, ?, ?, ?, ?)", batch.marks)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self.stats.batches += 1
        self.stats.frames += len(batch.frames)
        self.stats.rows += batch.size() - len(batch.frames)
        self.stats.last_commit_ns = self._clock.time_ns()
        if self._alarm_up:
            self._alarm_up = False
            self.stats.stop_reason = ""
            log.warning("recording resumed")
            self._on_alarm("disk_full", "recording resumed", False)

    def _check_disk(self) -> None:
        try:
            free = shutil.disk_usage(self._dir).free
        except OSError as exc:
            self._stop_recording(f"cannot read free space of {self._dir}: {exc}")
            return
        if free < self._cfg.min_free_bytes:
            self._stop_recording(
                f"free space {free // 1_048_576} MiB below the reserve "
                f"{self._cfg.min_free_bytes // 1_048_576} MiB"
            )
        elif not self.stats.recording:
            # Space is back (or the stop was SQLITE_FULL from the page budget): try again. The
            # alarm stays up until a batch actually commits.
            log.warning("recording: retrying after '%s'", self.stats.stop_reason)
            self.stats.recording = True

    def _stop_recording(self, reason: str) -> None:
        self.stats.recording = False
        self.stats.stop_reason = reason
        if not self._alarm_up:
            self._alarm_up = True
            log.error("recording stopped: %s", reason)
            self._on_alarm("disk_full", f"recording stopped: {reason}", True)

    def _close(self) -> Path | None:
        if self._conn is None:
            return None
        path = Path(self.stats.current_file)
        try:
            self._conn.close()
        finally:
            self._conn = None
        return path


def _first_ts(batch: _Batch) -> int | None:
    firsts = [rows[0][0] for rows in _all_rows(batch) if rows]
    return min(firsts) if firsts else None


def _last_ts(batch: _Batch) -> int:
    return max(rows[-1][0] for rows in _all_rows(batch) if rows)


def _all_rows(batch: _Batch) -> tuple[list[tuple[int, object]], ...]:
    return (batch.frames, batch.trades, batch.tops, batch.snapshots, batch.marks)  # type: ignore[return-value]
