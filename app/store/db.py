"""SQLite connections and versioned schema migrations.

Every database is in WAL mode so that readers (the panel, `appliance ctl`, tests) never block the
single writer. Migrations are numbered by position in a list and tracked in ``PRAGMA user_version``:
migration *i* runs when ``user_version <= i``, inside one transaction with the version bump, so a
crash mid-migration leaves the previous version intact.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

Synchronous = Literal["OFF", "NORMAL", "FULL"]


def connect(
    path: Path,
    *,
    synchronous: Synchronous = "NORMAL",
    readonly: bool = False,
    max_page_count: int = 0,
) -> sqlite3.Connection:
    """Open ``path`` in WAL mode with autocommit off-by-default semantics made explicit.

    ``isolation_level=None`` hands transaction control to the caller (``BEGIN``/``COMMIT``), which
    is what a batching writer needs. ``synchronous=FULL`` is for state that must survive a power
    cut (trading); ``NORMAL`` in WAL mode survives a killed process, which suffices for market data.
    """
    if readonly:
        conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA busy_timeout = 5000")
        return conn
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA foreign_keys = ON")
    if max_page_count:
        conn.execute(f"PRAGMA max_page_count = {int(max_page_count)}")
    return conn


def migrate(conn: sqlite3.Connection, migrations: Sequence[str]) -> int:
    """Apply the migrations not yet applied; return the resulting schema version."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > len(migrations):
        raise RuntimeError(
            f"database schema version {version} is newer than this program knows "
            f"({len(migrations)}): refusing to touch it"
        )
    for index in range(version, len(migrations)):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(migrations[index]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {index + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return len(migrations)


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (executescript would commit on its own)."""
    statements: list[str] = []
    current = ""
    for piece in script.split(";"):
        current += piece + ";"
        if sqlite3.complete_statement(current):
            if current.strip() != ";":
                statements.append(current.strip())
            current = ""
    current = current.removesuffix(";")
    if current.strip():
        raise ValueError(f"incomplete SQL statement in migration: {current.strip()[:80]!r}")
    return statements


def integrity_ok(path: Path) -> tuple[bool, str]:
    """Run ``PRAGMA integrity_check`` on a file; return (ok, first message)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = conn.execute("PRAGMA integrity_check").fetchone()
    except sqlite3.DatabaseError as exc:
        return False, str(exc)
    finally:
        conn.close()
    message = str(row[0]) if row else "no answer"
    return message == "ok", message


def is_disk_full(exc: BaseException) -> bool:
    """True when SQLite reports SQLITE_FULL (disk full or ``max_page_count`` reached)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (int(code) & 0xFF) == sqlite3.SQLITE_FULL
    return "database or disk is full" in str(exc)
