"""The panel's own small database: sessions, login throttling, login audit, panel settings.

Only the panel writes it (one process, one connection behind a lock: the writes are tiny). The
engine's databases are never opened for writing here (see ``readers``).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from app.store import db

T = TypeVar("T")

PANEL_MIGRATIONS: list[str] = [
    """
    CREATE TABLE sessions (
        id_hash TEXT PRIMARY KEY,
        user TEXT NOT NULL,
        client TEXT NOT NULL,
        user_agent TEXT NOT NULL,
        ts_created_ns INTEGER NOT NULL,
        ts_seen_ns INTEGER NOT NULL,
        ts_revoked_ns INTEGER
    );
    CREATE TABLE throttle (
        client TEXT PRIMARY KEY,
        failures INTEGER NOT NULL,
        ts_last_ns INTEGER NOT NULL,
        ts_next_ns INTEGER NOT NULL
    );
    CREATE TABLE login_audit (
        id INTEGER PRIMARY KEY,
        ts_ns INTEGER NOT NULL,
        client TEXT NOT NULL,
        user TEXT NOT NULL,
        outcome TEXT NOT NULL,
        user_agent TEXT NOT NULL
    );
    CREATE INDEX login_audit_ts ON login_audit (ts_ns);
    CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        ts_ns INTEGER NOT NULL
    );
    CREATE TABLE alerts_sent (
        key TEXT PRIMARY KEY,
        ts_ns INTEGER NOT NULL
    );
    """,
]


class PanelDb:
    """One connection to ``panel.db`` behind a lock (worker threads and the event loop share it)."""

    def __init__(self, path: Path) -> None:
        self._conn = db.connect(path, synchronous="NORMAL")
        path.chmod(0o600)
        db.migrate(self._conn, PANEL_MIGRATIONS)
        self._lock = threading.Lock()

    def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` with the connection, holding the lock."""
        with self._lock:
            return fn(self._conn)

    def atomic(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one write transaction (read-then-write decisions that must not race)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(self._conn)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            return result

    def write(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        """One statement in its own transaction; returns the rowcount."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                cursor = self._conn.execute(sql, params)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            return cursor.rowcount

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._conn.execute(sql, params).fetchall())

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- small typed helpers ------------------------------------------------------------------

    def get_setting(self, key: str, default: Any = None) -> Any:
        found = self.rows("SELECT value FROM settings WHERE key = ?", (key,))
        return json.loads(found[0][0]) if found else default

    def set_setting(self, key: str, value: Any, ts_ns: int) -> None:
        self.write(
            "INSERT INTO settings (key, value, ts_ns) VALUES (?, ?, ?) ON CONFLICT (key) "
            "DO UPDATE SET value = excluded.value, ts_ns = excluded.ts_ns",
            (key, json.dumps(value), ts_ns),
        )

    def audit_login(self, ts_ns: int, client: str, user: str, outcome: str, agent: str) -> None:
        self.write(
            "INSERT INTO login_audit (ts_ns, client, user, outcome, user_agent) "
            "VALUES (?, ?, ?, ?, ?)",
            (ts_ns, client, user, outcome, agent[:200]),
        )

    def recent_logins(self, limit: int = 20) -> list[dict[str, Any]]:
        rows = self.rows(
            "SELECT ts_ns, client, user, outcome, user_agent FROM login_audit "
            "ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        names = ("ts_ns", "client", "user", "outcome", "user_agent")
        return [dict(zip(names, r, strict=True)) for r in rows]

    def mark_alert_sent(self, key: str, ts_ns: int) -> bool:
        """Remember that alert ``key`` was posted; False when it already was."""
        return (
            self.write("INSERT OR IGNORE INTO alerts_sent (key, ts_ns) VALUES (?, ?)", (key, ts_ns))
            == 1
        )
