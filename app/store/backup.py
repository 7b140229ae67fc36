"""Verified zstd backups of closed market weeks (the recordings), and their retention.

A backup counts only once it is proven: the compressed file is decompressed again, its SHA-256
compared with the source, and ``PRAGMA integrity_check`` run on the copy. Only then is the backup
renamed into place and the original deleted. A crash at any point leaves either the original or a
complete verified backup, never neither.

The state (journals, settings, models, the panel's files) is backed up daily as one archive
(``app.store.archive``, scheduled by ``app.engine.backups``); the daily ``trading_<day>.db.zst``
copies this module made before are only pruned now.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from app.store import db, rawlog, weeks
from app.store.files import fsync_dir, sha256_file

log = logging.getLogger(__name__)


class BackupError(Exception):
    """A backup could not be made or did not verify; the original is left in place."""


@dataclass(frozen=True)
class BackupResult:
    source: Path
    backup: Path
    source_bytes: int
    backup_bytes: int
    sha256: str
    original_deleted: bool


def _compress_verified(plain: Path, dst: Path) -> BackupResult:
    """Compress ``plain`` to ``dst`` and prove the result before it appears under its name."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    expected = sha256_file(plain)
    rawlog.compress_file(plain, tmp)
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    with tempfile.TemporaryDirectory(prefix="verify-", dir=dst.parent) as scratch:
        copy = Path(scratch) / plain.name
        rawlog.decompress_file(tmp, copy)
        actual = sha256_file(copy)
        if actual != expected:
            tmp.unlink(missing_ok=True)
            raise BackupError(f"{dst.name}: decompressed copy differs from the source")
        ok, message = db.integrity_ok(copy)
        if not ok:
            tmp.unlink(missing_ok=True)
            raise BackupError(f"{dst.name}: integrity_check failed on the copy: {message}")
    tmp.replace(dst)
    fsync_dir(dst.parent)
    return BackupResult(plain, dst, plain.stat().st_size, dst.stat().st_size, expected, False)


def backup_market_week(path: Path, backup_dir: Path) -> BackupResult:
    """Back up a closed week's market file, verify it, then delete the original."""
    if weeks.parse_market_file(path) is None:
        raise BackupError(f"{path} is not a market file")
    # Fold the WAL into the main file so the single file we compress is the whole database.
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            raise BackupError(f"{path.name} is still in use: cannot checkpoint")
        conn.execute("PRAGMA journal_mode = DELETE")
    finally:
        conn.close()
    ok, message = db.integrity_ok(path)
    if not ok:
        raise BackupError(f"{path.name} fails integrity_check before backup: {message}")
    result = _compress_verified(path, backup_dir / (path.name + ".zst"))
    path.unlink()
    for suffix in ("-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    fsync_dir(path.parent)
    log.info(
        "backed up %s: %d -> %d bytes, original deleted",
        path.name,
        result.source_bytes,
        result.backup_bytes,
    )
    return BackupResult(
        result.source, result.backup, result.source_bytes, result.backup_bytes, result.sha256, True
    )


def pending_market_weeks(market_dir: Path, current: tuple[int, int]) -> list[Path]:
    """Market files of weeks before ``current`` that still await their backup."""
    return sorted(
        path
        for path in market_dir.glob("market_*.db")
        if (week := weeks.parse_market_file(path)) is not None and week < current
    )


def prune(backup_dir: Path, now_ns: int, market_weeks: int, old_daily_days: int) -> list[Path]:
    """Delete week backups older than ``market_weeks`` and the old daily ``trading_*.db.zst``
    copies older than ``old_daily_days`` (the archives' retention); return what was deleted."""
    removed: list[Path] = []
    now = datetime.fromtimestamp(now_ns / 1e9, UTC)
    for path in sorted(backup_dir.glob("*.zst")):
        name = path.name.removesuffix(".zst")
        week = weeks.parse_market_file(Path(name))
        if week is not None:
            age_days = (
                now - datetime.fromisocalendar(week[0], week[1], 1).replace(tzinfo=UTC)
            ).days
            limit = market_weeks * 7
        elif name.startswith("trading_"):
            try:
                day = datetime.strptime(name[8:18], "%Y-%m-%d").replace(tzinfo=UTC)
            except ValueError:
                continue
            age_days, limit = (now - day).days, old_daily_days
        else:
            continue
        if age_days > limit:
            path.unlink()
            removed.append(path)
    return removed
