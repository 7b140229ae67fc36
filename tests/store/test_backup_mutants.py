"""A closed market week's backup, to the byte: what is kept, what is refused and with which
message, what is deleted and when. Real week files, real zstd, no step of the backup replaced."""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.store import backup, db, rawlog, schema

DAY_NS = 86_400 * 10**9


def _ns(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) * 10**9


def _market_week(path: Path, trades: int = 300) -> None:
    """A closed week's file in WAL mode."""
    conn = db.connect(path)
    db.migrate(conn, schema.MARKET_MIGRATIONS)
    conn.executemany(
        "INSERT INTO trades VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(i, i, "BTCUSDT", i, f"6500{i % 10}.10", "0.002", 0) for i in range(trades)],
    )
    conn.close()


def _crashed_week(path: Path, scratch: Path) -> None:
    """A week file whose last rows are still in its WAL, as a recorder killed mid-week leaves it."""
    scratch.mkdir()
    _market_week(scratch / path.name)
    conn = db.connect(scratch / path.name)
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.executemany(
        "INSERT INTO trades VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(i, i, "ETHUSDT", i, "3000.01", "0.1", 1) for i in range(1000, 1100)],
    )
    for name in (path.name, path.name + "-wal"):
        (path.parent / name).write_bytes((scratch / name).read_bytes())
    conn.close()


def _corrupt_index(path: Path) -> None:
    """One entry of an index changed: the file opens and reads, ``integrity_check`` fails."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.execute("CREATE TABLE fills (id INTEGER PRIMARY KEY, ref TEXT NOT NULL)")
    conn.execute("CREATE INDEX fills_ref ON fills (ref)")
    conn.executemany("INSERT INTO fills (ref) VALUES (?)", [(f"ref-{i:05d}",) for i in range(50)])
    conn.commit()
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'fills_ref'").fetchone()[0]
    conn.close()
    data = bytearray(path.read_bytes())
    start = (root - 1) * page_size
    at = data.index(b"ref-00007", start, start + page_size)
    data[at : at + 9] = b"ref-0000X"
    path.write_bytes(bytes(data))


def _rows(path: Path) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT * FROM trades ORDER BY agg_id").fetchall()
    finally:
        conn.close()


def test_a_week_is_backed_up_whole_verified_and_then_deleted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    market = tmp_path / "market"
    market.mkdir()
    week = market / "market_2026_01.db"
    _crashed_week(week, tmp_path / "scratch")
    assert (market / "market_2026_01.db-wal").exists()
    rows = _rows(tmp_path / "scratch" / week.name)
    assert len(rows) == 400  # 100 of them only in the WAL: reading the week would fold them in
    backups = tmp_path / "a" / "b" / "backups"  # made with its parents
    with caplog.at_level(logging.INFO, logger="app.store.backup"):
        result = backup.backup_market_week(week, backups)
    assert result.backup == backups / "market_2026_01.db.zst"
    assert result.source == week
    assert result.original_deleted is True
    assert sorted(p.name for p in backups.iterdir()) == ["market_2026_01.db.zst"]
    assert sorted(p.name for p in market.iterdir()) == []  # no -wal, no -shm left either
    assert result.backup_bytes == result.backup.stat().st_size
    plain = tmp_path / "plain.db"
    rawlog.decompress_file(result.backup, plain)
    assert result.source_bytes == plain.stat().st_size
    assert result.sha256 == hashlib.sha256(plain.read_bytes()).hexdigest()
    assert _rows(plain) == rows  # the WAL's rows are in the one file backed up
    conn = sqlite3.connect(plain)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    finally:
        conn.close()
    assert caplog.messages == [
        f"backed up market_2026_01.db: {result.source_bytes} -> {result.backup_bytes} bytes, "
        "original deleted"
    ]


def test_a_second_week_goes_into_the_existing_backup_directory(tmp_path: Path) -> None:
    backups = tmp_path / "backups"
    for name in ("market_2026_01.db", "market_2026_02.db"):
        _market_week(tmp_path / name, trades=10)
        backup.backup_market_week(tmp_path / name, backups)
    assert sorted(p.name for p in backups.iterdir()) == [
        "market_2026_01.db.zst",
        "market_2026_02.db.zst",
    ]


def test_a_file_that_is_not_a_market_week_is_refused_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "trading.db"
    _market_week(path, trades=10)
    with pytest.raises(backup.BackupError, match=r"^.*/trading\.db is not a market file$"):
        backup.backup_market_week(path, tmp_path / "backups")
    assert path.exists()
    assert not (tmp_path / "backups").exists()


def test_a_corrupt_week_is_refused_before_the_backup_and_kept(tmp_path: Path) -> None:
    week = tmp_path / "market_2026_01.db"
    _corrupt_index(week)
    before = week.read_bytes()
    backups = tmp_path / "backups"
    with pytest.raises(
        backup.BackupError,
        match=r"^market_2026_01\.db fails integrity_check before backup: .*fills_ref",
    ):
        backup.backup_market_week(week, backups)
    assert week.read_bytes() == before
    assert not backups.exists()


def test_a_copy_that_fails_integrity_check_is_refused_and_nothing_is_left(
    tmp_path: Path,
) -> None:
    """The proof of the compressed copy on its own: a file that damaged is never renamed in."""
    plain = tmp_path / "market_2026_01.db"
    _corrupt_index(plain)
    backups = tmp_path / "backups"
    with pytest.raises(
        backup.BackupError,
        match=r"^market_2026_01\.db\.zst: integrity_check failed on the copy: .*fills_ref",
    ):
        backup._compress_verified(plain, backups / "market_2026_01.db.zst")
    assert plain.exists()
    assert list(backups.iterdir()) == []


def test_a_verified_copy_leaves_its_source_to_the_caller(tmp_path: Path) -> None:
    plain = tmp_path / "market_2026_01.db"
    _market_week(plain, trades=10)
    conn = db.connect(plain)
    conn.execute("PRAGMA journal_mode = DELETE").fetchone()
    conn.close()
    dst = tmp_path / "backups" / "market_2026_01.db.zst"
    result = backup._compress_verified(plain, dst)
    assert result.original_deleted is False
    assert plain.exists()
    assert (result.source, result.backup) == (plain, dst)
    assert list(dst.parent.iterdir()) == [dst]


def test_pending_weeks_are_the_closed_ones_oldest_first(tmp_path: Path) -> None:
    for name in (
        "market_2026_03.db",
        "market_2025_52.db",
        "market_2026_01.db",
        "market_2026_02.db",  # the current week: still being recorded
        "market_2026_04.db",
        "market_2026_1.db",  # not a market file's name
        "trading.db",
    ):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in backup.pending_market_weeks(tmp_path, (2026, 2))] == [
        "market_2025_52.db",
        "market_2026_01.db",
    ]
    assert backup.pending_market_weeks(tmp_path, (2025, 52)) == []


def test_prune_deletes_week_backups_past_their_retention_to_the_day(tmp_path: Path) -> None:
    # Week 2026-02 starts Monday 2026-01-05; 4 weeks of retention keep it for 28 days.
    for name in ("market_2026_01.db.zst", "market_2026_02.db.zst", "market_2026_03.db.zst"):
        (tmp_path / name).write_bytes(b"")
    now = _ns("2026-02-02T12:00:00")  # week 02 is 28.5 days old, week 01 35.5
    assert backup.prune(tmp_path, now, market_weeks=4, old_daily_days=1) == [
        tmp_path / "market_2026_01.db.zst"
    ]
    assert backup.prune(tmp_path, now + DAY_NS // 2 - 10**9, 4, 1) == []
    assert backup.prune(tmp_path, now + DAY_NS // 2, 4, 1) == [tmp_path / "market_2026_02.db.zst"]
    assert [p.name for p in tmp_path.iterdir()] == ["market_2026_03.db.zst"]


def test_prune_deletes_old_daily_copies_and_keeps_everything_else(tmp_path: Path) -> None:
    names = [
        "appliance_20251201T000000Z_scheduled.tar.zst",  # an archive: archive.prune's
        "market_2026_1.db.zst",  # not a week's name
        "notes.zst",
        "trading_0000-00-00.db.zst",  # not a date
        "trading_2026-01-01.db.zst",
        "trading_2026-01-02.db.zst",
        "trading_2026-01-03.db.zst",
        "trading_2026-01-03.db",  # not compressed: not a backup
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    now = _ns("2026-01-10T23:59:59")  # 2026-01-03 is 7 days old, 2026-01-02 8
    removed = backup.prune(tmp_path, now, market_weeks=52, old_daily_days=7)
    assert removed == [
        tmp_path / "trading_2026-01-01.db.zst",
        tmp_path / "trading_2026-01-02.db.zst",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        set(names) - {p.name for p in removed}
    )


def test_a_week_still_being_written_and_read_is_refused_by_name_and_kept(tmp_path: Path) -> None:
    """Rows still in the WAL and a reader inside a transaction on them: the checkpoint cannot fold
    them in, so the one file compressed would not be the whole week. Nothing is backed up, nothing
    deleted."""
    week = tmp_path / "market_2026_01.db"
    _market_week(week, trades=10)
    writer = db.connect(week)
    reader = sqlite3.connect(week, isolation_level=None)
    try:
        writer.executemany(
            "INSERT INTO trades VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(i, i, "ETHUSDT", i, "3000.01", "0.1", 1) for i in range(10, 15)],
        )
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM trades").fetchone() == (15,)
        with pytest.raises(
            backup.BackupError, match=r"^market_2026_01\.db is still in use: cannot checkpoint$"
        ):
            backup.backup_market_week(week, tmp_path / "backups")
        assert reader.execute("SELECT count(*) FROM trades").fetchone() == (15,)
    finally:
        reader.close()
        writer.close()
    assert len(_rows(week)) == 15
    assert not (tmp_path / "backups").exists()


def test_a_stale_shared_memory_file_goes_with_the_week(tmp_path: Path) -> None:
    """A week in rollback mode with a ``-shm`` left from its WAL days: SQLite never opens it (there
    is no WAL), so only the backup's own clean-up removes it with the week."""
    market = tmp_path / "market"
    market.mkdir()
    week = market / "market_2026_01.db"
    _market_week(week, trades=10)
    conn = sqlite3.connect(week)
    assert conn.execute("PRAGMA journal_mode = DELETE").fetchone() == ("delete",)
    conn.close()
    assert sorted(p.name for p in market.iterdir()) == ["market_2026_01.db"]
    (market / "market_2026_01.db-shm").write_bytes(bytes(32768))
    result = backup.backup_market_week(week, tmp_path / "backups")
    assert result.original_deleted is True
    assert list(market.iterdir()) == []


def test_nothing_has_the_backups_name_until_it_is_proven(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real compressor and decompressor, watched: the archive is written as ``<name>.tmp`` and
    proven from a ``verify-*`` copy beside it (the board's /tmp is RAM, too small for a week), and
    the final name appears only after the proof."""
    week = tmp_path / "market_2026_01.db"
    _market_week(week, trades=10)
    backups = tmp_path / "backups"
    final = backups / "market_2026_01.db.zst"
    seen: list[tuple[str, Path, bool]] = []
    compress, decompress = rawlog.compress_file, rawlog.decompress_file

    def watched_compress(src: Path, dst: Path) -> None:
        seen.append(("compress", dst, final.exists()))
        compress(src, dst)

    def watched_decompress(src: Path, dst: Path) -> None:
        seen.append(("decompress", src, final.exists()))
        seen.append(("copy", dst, dst.parent.parent == backups))
        decompress(src, dst)

    monkeypatch.setattr(rawlog, "compress_file", watched_compress)
    monkeypatch.setattr(rawlog, "decompress_file", watched_decompress)
    result = backup.backup_market_week(week, backups)
    tmp = backups / "market_2026_01.db.zst.tmp"
    assert seen[:2] == [("compress", tmp, False), ("decompress", tmp, False)]
    kind, copy, beside = seen[2]
    assert (kind, copy.name, beside) == ("copy", "market_2026_01.db", True)
    assert copy.parent.name.startswith("verify-")
    assert result.backup == final
    assert sorted(p.name for p in backups.iterdir()) == ["market_2026_01.db.zst"]


def test_the_proof_never_uses_the_system_temporary_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no usable system temporary directory the week is still backed up: its verification
    copy is made beside the backup, on the disk that holds the backups."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-directory"))
    week = tmp_path / "market_2026_01.db"
    _market_week(week, trades=10)
    result = backup.backup_market_week(week, tmp_path / "backups")
    assert result.original_deleted is True
    assert not (tmp_path / "no-such-directory").exists()
