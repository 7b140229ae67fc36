"""The recorder against real SQLite files: round trip, rotation + verified backup, full disk."""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.clock import ManualClock
from app.config import StoreConfig
from app.store import backup, db, rawlog, schema, weeks
from app.store.recorder import Recorder


def _ns(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) * 1_000_000_000


def _frame(i: int) -> bytes:
    return b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","i":%d}}' % i


def test_frames_and_rows_round_trip(tmp_path: Path) -> None:
    rec = Recorder(StoreConfig(batch_max=50), tmp_path, ManualClock())
    rec.start()
    base = _ns("2026-11-18T12:00:00")
    sent = [(base + i * 1000, _frame(i)) for i in range(500)]
    sent.append((base + 999_999, b"\x00not json\n{\xff"))  # malformed frames are kept verbatim
    for ts, raw in sent:
        rec.frame(ts, raw)
        rec.trade((ts, ts // 1_000_000, "BTCUSDT", 1, "65000.10", "0.002", 0))
    rec.stop()
    path = weeks.market_file(tmp_path, weeks.week_of(base))
    assert list(rawlog.iter_frames(path)) == sent
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM trades").fetchone()[0] == len(sent)
    assert conn.execute("SELECT price FROM trades LIMIT 1").fetchone()[0] == "65000.10"
    conn.close()
    assert rec.stats.frames == len(sent)
    assert rec.stats.batches >= len(sent) * 2 // 50


def test_book_snapshots_are_stored_as_json_levels(tmp_path: Path) -> None:
    # The hot path hands over the book's level lists; the writer thread encodes them.
    rec = Recorder(StoreConfig(), tmp_path, ManualClock())
    rec.start()
    ts = _ns("2026-11-18T12:00:00")
    bids, asks = [("65000.10", "0.002"), ("64999.9", "1.5")], [("65000.2", "0.010")]
    rec.book_snapshot((ts, "BTCUSDT", 42, bids, asks))
    rec.stop()
    conn = sqlite3.connect(weeks.market_file(tmp_path, weeks.week_of(ts)))
    row = conn.execute("SELECT symbol, update_id, bids, asks FROM book_snapshots").fetchone()
    conn.close()
    assert row[:2] == ("BTCUSDT", 42)
    assert json.loads(row[2]) == [list(b) for b in bids]
    assert json.loads(row[3]) == [list(a) for a in asks]


def test_rotation_across_iso_week_yields_verified_backup(tmp_path: Path) -> None:
    market, backups = tmp_path / "market", tmp_path / "backups"
    closed: list[Path] = []
    done = threading.Event()

    def on_closed(path: Path) -> None:
        closed.append(path)
        done.set()

    clock = ManualClock(_ns("2026-12-27T23:59:00"))  # Sunday of ISO week 2026-52
    rec = Recorder(StoreConfig(batch_max=10_000), market, clock, on_week_closed=on_closed)
    rec.start()
    before = [(clock.time_ns() + i * 1_000_000_000, _frame(i)) for i in range(40)]
    for ts, raw in before:
        rec.frame(ts, raw)
    rec.flush()
    clock.advance(120)  # into Monday 2026-12-28: ISO week 2026-53
    after = [(clock.time_ns() + i, _frame(1000 + i)) for i in range(5)]
    for ts, raw in after:
        rec.frame(ts, raw)
    rec.flush()
    assert done.wait(10), "the closed week was not handed over"
    rec.stop()

    week_a, week_b = weeks.week_of(before[0][0]), weeks.week_of(after[0][0])
    assert (week_a, week_b) == ((2026, 52), (2026, 53))
    assert closed == [weeks.market_file(market, week_a)]
    assert backup.pending_market_weeks(market, week_b) == closed

    result = backup.backup_market_week(closed[0], backups)
    assert result.original_deleted and not closed[0].exists()
    assert result.backup.name == "market_2026_52.db.zst"
    assert result.backup_bytes < result.source_bytes
    # The backup decompresses to a database that passes integrity_check and holds the week.
    assert list(rawlog.iter_frames(result.backup)) == before
    plain = tmp_path / "check.db"
    rawlog.decompress_file(result.backup, plain)
    assert db.integrity_ok(plain) == (True, "ok")
    assert list(rawlog.iter_frames(weeks.market_file(market, week_b))) == after


def test_backup_refuses_a_corrupt_week_and_keeps_it(tmp_path: Path) -> None:
    path = tmp_path / "market_2026_01.db"
    conn = db.connect(path)
    db.migrate(conn, schema.MARKET_MIGRATIONS)
    conn.executemany(
        "INSERT INTO trades VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(i, i, "BTCUSDT", i, "1.0", "1", 0) for i in range(5000)],
    )
    conn.close()
    data = bytearray(path.read_bytes())
    data[4096 * 3 : 4096 * 3 + 512] = b"\xa5" * 512  # scribble over a b-tree page
    path.write_bytes(bytes(data))
    # Refused by the check before compression (the copy's own check would also fail, later).
    with pytest.raises(backup.BackupError, match="fails integrity_check before backup"):
        backup.backup_market_week(path, tmp_path / "backups")
    assert path.exists()
    assert not list((tmp_path / "backups").glob("*.zst"))


def test_full_database_stops_recording_with_alarm_and_no_corruption(tmp_path: Path) -> None:
    alarms: list[tuple[str, str, bool]] = []
    cfg = StoreConfig(batch_max=100, max_page_count=40, min_free_bytes=0)
    rec = Recorder(cfg, tmp_path, ManualClock(), on_alarm=lambda *a: alarms.append(a))
    rec.start()
    base = _ns("2026-11-18T12:00:00")
    payload = b"x" * 1500
    for i in range(3000):
        rec.frame(base + i, payload + str(i).encode())
        rec.trade((base + i, i, "BTCUSDT", i, "1.0", "1", 0))
    rec.stop()
    assert not rec.stats.recording
    assert "full" in rec.stats.stop_reason
    assert rec.stats.dropped_records > 0
    assert alarms and alarms[0][0] == "disk_full" and alarms[0][2] is True
    path = weeks.market_file(tmp_path, weeks.week_of(base))
    assert db.integrity_ok(path) == (True, "ok")
    # What was committed before the disk filled is intact and readable.
    committed = list(rawlog.iter_frames(path))
    assert 0 < len(committed) == rec.stats.frames


def test_free_space_reserve_stops_recording(tmp_path: Path) -> None:
    alarms: list[tuple[str, str, bool]] = []
    cfg = StoreConfig(min_free_bytes=1 << 62)  # more than any disk: the reserve is never met
    rec = Recorder(cfg, tmp_path, ManualClock(), on_alarm=lambda *a: alarms.append(a))
    rec.start()
    rec.frame(_ns("2026-11-18T12:00:00"), _frame(1))
    rec.stop()
    assert not rec.stats.recording
    assert "below the reserve" in rec.stats.stop_reason
    assert rec.stats.frames == 0 and rec.stats.dropped_records == 1
    assert [a[0] for a in alarms] == ["disk_full"]


def test_queue_overflow_sheds_load_instead_of_growing(tmp_path: Path) -> None:
    rec = Recorder(StoreConfig(batch_max=10, queue_max=25), tmp_path, ManualClock())
    # Writer not started: nothing drains the queue, as when the disk stalls.
    for i in range(100):
        rec.frame(_ns("2026-11-18T12:00:00") + i, _frame(i))
    assert rec.stats.dropped_records == 80
    assert rec.stats.dropped_batches == 8
