"""Each of a backup's proofs refuses what it exists to refuse: the pre-backup integrity check, the
SHA-256 of the decompressed copy, and the integrity check of the copy in an archive. The corrupt
inputs here get past every earlier step, so only the step under test can stop them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import zstandard

from app.store import archive, backup, db, rawlog, schema
from app.store.archive import ArchiveError, Layout

PRICE = b"12345.678"  # one trade's price: a non-indexed TEXT value
ALTERED = b"12345.679"  # same length and type: the page stays well-formed


def _market_week(path: Path) -> None:
    conn = db.connect(path)
    db.migrate(conn, schema.MARKET_MIGRATIONS)
    rows = [(i, i, "BTCUSDT", i, "1.0", "1", 0) for i in range(2000)]
    rows[1000] = (1000, 1000, "BTCUSDT", 1000, PRICE.decode(), "1", 0)
    conn.executemany("INSERT INTO trades VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    conn.close()


def _altering_compressor(src: Path, dst: Path) -> None:
    """A compressor that silently changes one value: a valid zstd archive of a valid database
    that is not the source (as a bit flip in RAM during compression would leave)."""
    data = src.read_bytes()
    assert data.count(PRICE) == 1
    dst.write_bytes(zstandard.ZstdCompressor().compress(data.replace(PRICE, ALTERED)))


def _no_backup_made(backups: Path) -> None:
    assert not list(backups.glob("*.zst"))
    assert not list(backups.glob("*.tmp"))


def test_a_copy_that_differs_from_the_source_is_refused_and_the_week_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    week = tmp_path / "market_2026_01.db"
    _market_week(week)
    assert db.integrity_ok(week) == (True, "ok")  # the source passes the pre-check
    # The altered archive is itself a sound database: only the SHA-256 comparison can tell.
    probe, plain = tmp_path / "probe.zst", tmp_path / "probe.db"
    _altering_compressor(week, probe)
    rawlog.decompress_file(probe, plain)
    assert db.integrity_ok(plain) == (True, "ok")
    monkeypatch.setattr(rawlog, "compress_file", _altering_compressor)
    backups = tmp_path / "backups"
    with pytest.raises(backup.BackupError, match="decompressed copy differs from the source"):
        backup.backup_market_week(week, backups)
    assert week.exists()
    _no_backup_made(backups)


def _trading_db_with_a_corrupt_index(path: Path) -> None:
    """A database whose table is intact but whose index has one entry changed: readable, and
    copied page by page by SQLite's online backup, but ``integrity_check`` fails."""
    conn = sqlite3.connect(path)
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


def test_a_copy_that_fails_integrity_check_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "trading.db"
    _trading_db_with_a_corrupt_index(source)
    ok, message = db.integrity_ok(source)
    assert not ok and "fills_ref" in message
    backups = tmp_path / "backups"
    # No pre-check on the online copy: every member's SHA-256 matches its snapshot, so the
    # integrity check of the archived copy is what refuses it.
    with pytest.raises(ArchiveError, match=r"trading\.db fails integrity_check: .*fills_ref"):
        archive.create(Layout(tmp_path, tmp_path), 1_767_225_600 * 10**9, label="scheduled")
    assert source.exists()
    _no_backup_made(backups)


def test_a_sound_trading_database_is_backed_up_and_verified(tmp_path: Path) -> None:
    source = tmp_path / "trading.db"
    conn = sqlite3.connect(source)
    conn.execute("CREATE TABLE fills (id INTEGER PRIMARY KEY, ref TEXT NOT NULL)")
    conn.execute("CREATE INDEX fills_ref ON fills (ref)")
    conn.executemany("INSERT INTO fills (ref) VALUES (?)", [(f"ref-{i:05d}",) for i in range(50)])
    conn.commit()
    conn.close()
    info = archive.create(Layout(tmp_path, tmp_path), 1_767_225_600 * 10**9, label="scheduled")
    assert info.path.name == "appliance_20260101T000000Z_scheduled.tar.zst"
    out = tmp_path / "out"
    archive.verify(info.path, into=out)
    plain = out / "trading.db"
    assert db.integrity_ok(plain) == (True, "ok")
    restored = sqlite3.connect(plain)
    try:
        assert restored.execute("SELECT COUNT(*) FROM fills").fetchone() == (50,)
    finally:
        restored.close()
