"""Schema migrations, the daily archive's copy of the trading database, and retention on real
files."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.store import archive, backup, db, schema, trading
from app.store.archive import Layout


def test_migrations_apply_once_and_refuse_newer(tmp_path: Path) -> None:
    conn = db.connect(tmp_path / "t.db")
    assert db.migrate(conn, schema.TRADING_MIGRATIONS) == len(schema.TRADING_MIGRATIONS)
    assert db.migrate(conn, schema.TRADING_MIGRATIONS) == len(schema.TRADING_MIGRATIONS)
    extra = [*schema.TRADING_MIGRATIONS, "CREATE TABLE later (x INTEGER);"]
    assert db.migrate(conn, extra) == len(extra)
    with pytest.raises(RuntimeError, match="newer"):
        db.migrate(conn, schema.TRADING_MIGRATIONS)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_failed_migration_leaves_previous_version(tmp_path: Path) -> None:
    conn = db.connect(tmp_path / "t.db")
    broken = [*schema.TRADING_MIGRATIONS, "CREATE TABLE a (x); CREATE TABLE journal (y);"]
    with pytest.raises(sqlite3.OperationalError):
        db.migrate(conn, broken)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(schema.TRADING_MIGRATIONS)
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'a'").fetchone() is None
    conn.close()


def test_the_daily_archive_holds_the_trading_database(tmp_path: Path) -> None:
    """The daily backup is a ``scheduled`` archive (app.engine.backups), no longer a
    ``trading_<day>.db.zst`` of its own."""
    path = tmp_path / "trading.db"
    conn = db.connect(path, synchronous="FULL")
    db.migrate(conn, schema.TRADING_MIGRATIONS)
    trading.journal(conn, 1, "test", "pause", {}, True, {"state": "paused"})
    trading.set_setting(conn, "engine.flags", {"halted": True}, 2)
    ts = int(datetime(2026, 11, 22, 8, tzinfo=UTC).timestamp()) * 10**9
    # Taken while the engine's connection is open (its WAL not yet checkpointed).
    info = archive.create(Layout(tmp_path, tmp_path), ts, label="scheduled")
    assert trading.get_setting(conn, "engine.flags") == {"halted": True}  # live one untouched
    conn.close()
    assert info.path.name == "appliance_20261122T080000Z_scheduled.tar.zst"
    assert not list((tmp_path / "backups").glob("trading_*"))
    out = tmp_path / "out"
    archive.verify(info.path, into=out, known=archive.SCHEMAS)
    copy = sqlite3.connect(out / "trading.db")
    assert trading.get_setting(copy, "engine.flags") == {"halted": True}
    assert trading.recent_journal(copy)[0]["cmd"] == "pause"
    copy.close()


def test_prune_keeps_recent_backups(tmp_path: Path) -> None:
    for name in (
        "market_2026_01.db.zst",
        "market_2026_46.db.zst",
        "trading_2026-10-01.db.zst",
        "trading_2026-11-20.db.zst",
        "unrelated.zst",
    ):
        (tmp_path / name).write_bytes(b"x")
    now = int(datetime(2026, 11, 22, tzinfo=UTC).timestamp()) * 10**9
    # Old daily trading_*.db.zst copies (made before the archive replaced them) still go.
    removed = backup.prune(tmp_path, now, market_weeks=12, old_daily_days=14)
    assert sorted(p.name for p in removed) == ["market_2026_01.db.zst", "trading_2026-10-01.db.zst"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "market_2026_46.db.zst",
        "trading_2026-11-20.db.zst",
        "unrelated.zst",
    ]
