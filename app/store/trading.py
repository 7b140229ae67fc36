"""The trading-state database: journal, settings, alarms and job runs (orders come later).

Plain functions over a connection, run on the trading database's writer thread through
``DbWriter.call`` (writes) or on any read-only connection (reads).
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any


def _txn(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> int:
    conn.execute("BEGIN IMMEDIATE")
    try:
        cursor = conn.execute(sql, params)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return int(cursor.lastrowid or 0)


def journal(
    conn: sqlite3.Connection,
    ts_ns: int,
    actor: str,
    cmd: str,
    args: dict[str, Any],
    ok: bool,
    result: Any,
) -> int:
    """Record a command and its outcome; returns the journal row id."""
    return _txn(
        conn,
        "INSERT INTO journal (ts_ns, actor, cmd, args, ok, result) VALUES (?, ?, ?, ?, ?, ?)",
        (
            ts_ns,
            actor,
            cmd,
            json.dumps(args, default=str),
            int(ok),
            json.dumps(result, default=str),
        ),
    )


def recent_journal(conn: sqlite3.Connection, limit: int = 50) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT id, ts_ns, actor, cmd, args, ok, result FROM journal ORDER BY id DESC LIMIT ?",
        (limit,),
    ).fetchall()
    return [
        {
            "id": r[0],
            "ts_ns": r[1],
            "actor": r[2],
            "cmd": r[3],
            "args": json.loads(r[4]),
            "ok": bool(r[5]),
            "result": json.loads(r[6]),
        }
        for r in rows
    ]


def set_setting(conn: sqlite3.Connection, key: str, value: Any, ts_ns: int) -> None:
    _txn(
        conn,
        "INSERT INTO settings (key, value, ts_ns) VALUES (?, ?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value, ts_ns = excluded.ts_ns",
        (key, json.dumps(value), ts_ns),
    )


def get_setting(conn: sqlite3.Connection, key: str, default: Any = None) -> Any:
    row = conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
    return json.loads(row[0]) if row else default


def raise_alarm(conn: sqlite3.Connection, kind: str, message: str, ts_ns: int) -> int:
    """Open an alarm of ``kind`` unless one is already open (then keep the first)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute(
            "SELECT id FROM alarms WHERE kind = ? AND ts_cleared_ns IS NULL", (kind,)
        ).fetchone()
        if row:
            conn.execute("COMMIT")
            return int(row[0])
        cursor = conn.execute(
            "INSERT INTO alarms (ts_ns, kind, message) VALUES (?, ?, ?)", (ts_ns, kind, message)
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return int(cursor.lastrowid or 0)


def clear_alarm(conn: sqlite3.Connection, kind: str, ts_ns: int) -> None:
    _txn(
        conn,
        "UPDATE alarms SET ts_cleared_ns = ? WHERE kind = ? AND ts_cleared_ns IS NULL",
        (ts_ns, kind),
    )


def open_alarms(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT id, ts_ns, kind, message FROM alarms WHERE ts_cleared_ns IS NULL ORDER BY id"
    ).fetchall()
    return [{"id": r[0], "ts_ns": r[1], "kind": r[2], "message": r[3]} for r in rows]


def record_task_run(
    conn: sqlite3.Connection,
    run_id: str,
    kind: str,
    ts_started_ns: int,
    ts_ended_ns: int | None,
    state: str,
    detail: str = "",
) -> None:
    _txn(
        conn,
        "INSERT INTO task_runs (id, kind, ts_started_ns, ts_ended_ns, state, detail) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
        "ts_ended_ns = excluded.ts_ended_ns, state = excluded.state, detail = excluded.detail",
        (run_id, kind, ts_started_ns, ts_ended_ns, state, detail),
    )
