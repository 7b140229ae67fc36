"""The write-ahead order ledger: ``<data-dir>/orders.db``, WAL, ``synchronous=FULL``.

Rule: an order's *intent* (client id, symbol, side, qty, price, reason, model version) is
committed, and the order path has awaited that commit, before its request leaves. Every answer
and every user-data event is appended to ``events`` as received, and the order row follows the
exchange's state. So after a crash (even a power cut) every order the exchange may know of has a
row here, and reconciliation resolves each row still short of a final state by querying the
exchange by its client id.

Tables: ``orders`` (one row per client id, ``stage``: ``intent`` → ``open``/``done``/
``rejected``/``not_sent``/``unknown``), ``events`` (append-only), ``fills`` (keyed by the
exchange's trade id, so the stream and ``userTrades`` recovery can both insert without double
counting), ``income`` (keyed by ``tranId``: commissions, realised PnL, funding),
``discrepancies`` (what reconciliation found and how it was resolved) and ``live_state`` (the
persisted mode, the live halt, the reconciliation baseline).

One writer thread (:class:`~app.store.writer.DbWriter`); callers ``await`` its commits.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from app.engine.orders import Order, transaction
from app.store.writer import DbWriter

MIGRATIONS: list[str] = [
    """
    CREATE TABLE orders (
        client_id TEXT PRIMARY KEY,
        ts_created_ns INTEGER NOT NULL,
        ts_updated_ns INTEGER NOT NULL,
        symbol TEXT NOT NULL,
        side TEXT NOT NULL,
        type TEXT NOT NULL,
        qty TEXT NOT NULL,
        price TEXT,
        stop_price TEXT,
        take_profit TEXT,
        reduce_only INTEGER NOT NULL,
        purpose TEXT NOT NULL,
        reason TEXT NOT NULL,
        model_version TEXT NOT NULL,
        parent_id TEXT,
        stage TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT '',
        order_id INTEGER,
        filled_qty TEXT NOT NULL DEFAULT '0',
        avg_price TEXT,
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX orders_stage ON orders (stage);
    CREATE INDEX orders_order_id ON orders (order_id);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        ts_ns INTEGER NOT NULL,
        client_id TEXT,
        kind TEXT NOT NULL,
        body TEXT NOT NULL
    );
    CREATE TABLE fills (
        symbol TEXT NOT NULL,
        trade_id INTEGER NOT NULL,
        order_id INTEGER NOT NULL,
        client_id TEXT,
        side TEXT NOT NULL,
        price TEXT NOT NULL,
        qty TEXT NOT NULL,
        commission TEXT NOT NULL,
        commission_asset TEXT NOT NULL,
        realized_pnl TEXT NOT NULL,
        maker INTEGER NOT NULL,
        ts_ms INTEGER NOT NULL,
        source TEXT NOT NULL,
        PRIMARY KEY (symbol, trade_id)
    );
    CREATE TABLE income (
        tran_id INTEGER PRIMARY KEY,
        symbol TEXT NOT NULL,
        income_type TEXT NOT NULL,
        amount TEXT NOT NULL,
        asset TEXT NOT NULL,
        ts_ms INTEGER NOT NULL,
        trade_id TEXT NOT NULL
    );
    CREATE TABLE discrepancies (
        id INTEGER PRIMARY KEY,
        ts_ns INTEGER NOT NULL,
        kind TEXT NOT NULL,
        symbol TEXT NOT NULL,
        detail TEXT NOT NULL,
        resolved_ts_ns INTEGER,
        resolution TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE live_state (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        ts_ns INTEGER NOT NULL
    );
    """,
]

# Stages of an order row.
INTENT = "intent"  # committed; the request may or may not have left
OPEN = "open"  # the exchange has it, working (NEW / PARTIALLY_FILLED)
DONE = "done"  # final at the exchange: FILLED, CANCELED, EXPIRED
REJECTED = "rejected"  # the exchange refused it: it never existed there
NOT_SENT = "not_sent"  # resolved: the exchange does not know it (never arrived)
UNKNOWN = "unknown"  # a query could not settle it yet: trading halts until it does
UNSETTLED = (INTENT, OPEN, UNKNOWN)
_FINAL_STATUSES = frozenset({"FILLED", "CANCELED", "EXPIRED", "REJECTED"})


@dataclass(frozen=True, slots=True)
class LedgerFill:
    """One execution as the exchange reported it (stream or ``userTrades``)."""

    symbol: str
    trade_id: int
    order_id: int
    client_id: str | None
    side: str
    price: Decimal
    qty: Decimal
    commission: Decimal
    commission_asset: str
    realized_pnl: Decimal
    maker: bool
    ts_ms: int
    source: str  # "stream", "response", "userTrades"

    @property
    def signed_qty(self) -> Decimal:
        return self.qty if self.side == "BUY" else -self.qty


def stage_of(status: str) -> str:
    """The ledger stage for an exchange order status."""
    return (
        DONE
        if status in _FINAL_STATUSES - {"REJECTED"}
        else (REJECTED if status == "REJECTED" else OPEN)
    )


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


# -- functions run on the writer thread ---------------------------------------------------------


def _insert_intent(
    conn: sqlite3.Connection, order: Order, reason: str, parent_id: str | None, ts_ns: int
) -> None:
    with transaction(conn):
        conn.execute(
            "INSERT INTO orders (client_id, ts_created_ns, ts_updated_ns, symbol, side, type, qty, "
            "price, stop_price, take_profit, reduce_only, purpose, reason, model_version, "
            "parent_id, stage) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                order.client_id,
                ts_ns,
                ts_ns,
                order.symbol,
                str(order.side),
                str(order.type),
                str(order.qty),
                _text(order.price),
                _text(order.stop_price),
                _text(order.take_profit),
                int(order.reduce_only),
                order.purpose,
                reason,
                order.model_version,
                parent_id,
                INTENT,
            ),
        )
        conn.execute(
            "INSERT INTO events (ts_ns, client_id, kind, body) VALUES (?, ?, 'intent', ?)",
            (ts_ns, order.client_id, json.dumps({"reason": reason, "purpose": order.purpose})),
        )


def _apply_update(
    conn: sqlite3.Connection,
    client_id: str,
    kind: str,
    body: object,
    ts_ns: int,
    stage: str | None,
    status: str,
    order_id: int | None,
    filled_qty: str | None,
    avg_price: str | None,
    detail: str,
) -> None:
    with transaction(conn):
        conn.execute(
            "INSERT INTO events (ts_ns, client_id, kind, body) VALUES (?, ?, ?, ?)",
            (ts_ns, client_id, kind, json.dumps(body, default=str)),
        )
        if stage is None:
            return
        conn.execute(
            "UPDATE orders SET ts_updated_ns = ?, stage = ?, status = ?, "
            "order_id = COALESCE(?, order_id), filled_qty = COALESCE(?, filled_qty), "
            "avg_price = COALESCE(?, avg_price), detail = ? WHERE client_id = ?",
            (ts_ns, stage, status, order_id, filled_qty, avg_price, detail, client_id),
        )


def _insert_fills(conn: sqlite3.Connection, fills: Sequence[LedgerFill]) -> list[LedgerFill]:
    """Insert fills not yet known; return those that were new (in order)."""
    new: list[LedgerFill] = []
    with transaction(conn):
        for f in fills:
            client_id = f.client_id
            if client_id is None:
                row = conn.execute(
                    "SELECT client_id FROM orders WHERE order_id = ?", (f.order_id,)
                ).fetchone()
                client_id = row[0] if row else None
            cursor = conn.execute(
                "INSERT OR IGNORE INTO fills (symbol, trade_id, order_id, client_id, side, price, "
                "qty, commission, commission_asset, realized_pnl, maker, ts_ms, source) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    f.symbol,
                    f.trade_id,
                    f.order_id,
                    client_id,
                    f.side,
                    str(f.price),
                    str(f.qty),
                    str(f.commission),
                    f.commission_asset,
                    str(f.realized_pnl),
                    int(f.maker),
                    f.ts_ms,
                    f.source,
                ),
            )
            if cursor.rowcount:
                new.append(f)
    return new


def _insert_income(conn: sqlite3.Connection, rows: Iterable[dict[str, Any]]) -> int:
    added = 0
    with transaction(conn):
        for r in rows:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO income (tran_id, symbol, income_type, amount, asset, ts_ms, "
                "trade_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    int(r["tranId"]),
                    str(r.get("symbol", "")),
                    str(r["incomeType"]),
                    str(r["income"]),
                    str(r.get("asset", "")),
                    int(r["time"]),
                    str(r.get("tradeId", "")),
                ),
            )
            added += cursor.rowcount
    return added


def _rows(
    conn: sqlite3.Connection, sql: str, params: Sequence[object] = ()
) -> list[dict[str, Any]]:
    cursor = conn.execute(sql, params)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _set_state(conn: sqlite3.Connection, key: str, value: object, ts_ns: int) -> None:
    with transaction(conn):
        conn.execute(
            "INSERT INTO live_state (key, value, ts_ns) VALUES (?, ?, ?) ON CONFLICT (key) "
            "DO UPDATE SET value = excluded.value, ts_ns = excluded.ts_ns",
            (key, json.dumps(value, default=str), ts_ns),
        )


def _get_state(conn: sqlite3.Connection, key: str, default: Any) -> Any:
    row = conn.execute("SELECT value FROM live_state WHERE key = ?", (key,)).fetchone()
    return json.loads(row[0]) if row else default


def _record_discrepancy(
    conn: sqlite3.Connection, kind: str, symbol: str, detail: str, ts_ns: int
) -> int:
    with transaction(conn):
        cursor = conn.execute(
            "INSERT INTO discrepancies (ts_ns, kind, symbol, detail) VALUES (?, ?, ?, ?)",
            (ts_ns, kind, symbol, detail),
        )
    return int(cursor.lastrowid or 0)


def _resolve_discrepancies(conn: sqlite3.Connection, resolution: str, ts_ns: int) -> int:
    with transaction(conn):
        cursor = conn.execute(
            "UPDATE discrepancies SET resolved_ts_ns = ?, resolution = ? "
            "WHERE resolved_ts_ns IS NULL",
            (ts_ns, resolution),
        )
    return cursor.rowcount


class OrderLedger:
    """The ledger's API: every write is awaited until committed (``synchronous=FULL``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = DbWriter(path, MIGRATIONS, synchronous="FULL")

    def close(self) -> None:
        self._db.close()

    # -- orders --------------------------------------------------------------------------------

    async def record_intent(
        self, order: Order, reason: str, ts_ns: int, parent_id: str | None = None
    ) -> None:
        """Commit ``order``'s intent; return only once it is on disk."""
        await self._db.call(lambda c: _insert_intent(c, order, reason, parent_id, ts_ns))

    async def record(
        self,
        client_id: str,
        kind: str,
        body: object,
        ts_ns: int,
        *,
        stage: str | None = None,
        status: str = "",
        order_id: int | None = None,
        filled_qty: str | None = None,
        avg_price: str | None = None,
        detail: str = "",
    ) -> None:
        """Append an answer or event (``kind``: "response", "query", "stream", "error", ...) and,
        with ``stage``, move the order row to it."""
        await self._db.call(
            lambda c: _apply_update(
                c,
                client_id,
                kind,
                body,
                ts_ns,
                stage,
                status,
                order_id,
                filled_qty,
                avg_price,
                detail,
            )
        )

    async def record_exchange_order(self, body: dict[str, Any], kind: str, ts_ns: int) -> None:
        """Move an order row to the state of an exchange order body (REST shape)."""
        status = str(body.get("status", ""))
        await self.record(
            str(body["clientOrderId"]),
            kind,
            body,
            ts_ns,
            stage=stage_of(status),
            status=status,
            order_id=int(body["orderId"]),
            filled_qty=str(body.get("executedQty", "0")),
            avg_price=str(body.get("avgPrice", "0")),
        )

    async def orders(self, stages: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Order rows (in the given stages), oldest first."""
        if stages:
            marks = ",".join("?" * len(stages))
            sql = f"SELECT * FROM orders WHERE stage IN ({marks}) ORDER BY ts_created_ns"  # noqa: S608
            return await self._db.call(lambda c: _rows(c, sql, tuple(stages)))
        return await self._db.call(
            lambda c: _rows(c, "SELECT * FROM orders ORDER BY ts_created_ns")
        )

    async def order(self, client_id: str) -> dict[str, Any] | None:
        rows = await self._db.call(
            lambda c: _rows(c, "SELECT * FROM orders WHERE client_id = ?", (client_id,))
        )
        return rows[0] if rows else None

    async def events(self, client_id: str | None = None) -> list[dict[str, Any]]:
        if client_id is None:
            return await self._db.call(lambda c: _rows(c, "SELECT * FROM events ORDER BY id"))
        return await self._db.call(
            lambda c: _rows(c, "SELECT * FROM events WHERE client_id = ? ORDER BY id", (client_id,))
        )

    # -- fills and income ----------------------------------------------------------------------

    async def add_fills(self, fills: Sequence[LedgerFill]) -> list[LedgerFill]:
        """Insert fills; returns the ones not seen before (apply only those to the books)."""
        if not fills:
            return []
        return await self._db.call(lambda c: _insert_fills(c, fills))

    async def fills(self, symbol: str | None = None) -> list[dict[str, Any]]:
        if symbol is None:
            return await self._db.call(
                lambda c: _rows(c, "SELECT * FROM fills ORDER BY ts_ms, trade_id")
            )
        return await self._db.call(
            lambda c: _rows(
                c, "SELECT * FROM fills WHERE symbol = ? ORDER BY ts_ms, trade_id", (symbol,)
            )
        )

    async def last_trade_id(self, symbol: str) -> int | None:
        row = await self._db.call(
            lambda c: c.execute(
                "SELECT MAX(trade_id) FROM fills WHERE symbol = ?", (symbol,)
            ).fetchone()
        )
        return int(row[0]) if row and row[0] is not None else None

    async def add_income(self, rows: Sequence[dict[str, Any]]) -> int:
        """Insert income rows (``GET /fapi/v1/income`` shape); returns how many were new."""
        if not rows:
            return 0
        return await self._db.call(lambda c: _insert_income(c, rows))

    async def income(self) -> list[dict[str, Any]]:
        return await self._db.call(lambda c: _rows(c, "SELECT * FROM income ORDER BY tran_id"))

    async def last_income_ms(self) -> int | None:
        row = await self._db.call(lambda c: c.execute("SELECT MAX(ts_ms) FROM income").fetchone())
        return int(row[0]) if row and row[0] is not None else None

    async def position_since(self, symbol: str, after_trade_id: int) -> Decimal:
        """Σ signed fill quantity of ``symbol`` with trade id > ``after_trade_id``."""
        rows = await self._db.call(
            lambda c: c.execute(
                "SELECT side, qty FROM fills WHERE symbol = ? AND trade_id > ?",
                (symbol, after_trade_id),
            ).fetchall()
        )
        total = Decimal(0)
        for side, qty in rows:
            total += Decimal(qty) if side == "BUY" else -Decimal(qty)
        return total

    async def income_since(self, after_tran_id: int) -> tuple[Decimal, int]:
        """Σ income (USDT) with tranId > ``after_tran_id``, and the highest tranId seen."""
        rows = await self._db.call(
            lambda c: c.execute(
                "SELECT tran_id, amount FROM income WHERE tran_id > ? AND asset IN ('USDT', '')",
                (after_tran_id,),
            ).fetchall()
        )
        total = sum((Decimal(a) for _, a in rows), Decimal(0))
        top = max((int(t) for t, _ in rows), default=after_tran_id)
        return total, top

    # -- state and discrepancies ---------------------------------------------------------------

    async def set_state(self, key: str, value: object, ts_ns: int) -> None:
        await self._db.call(lambda c: _set_state(c, key, value, ts_ns))

    async def get_state(self, key: str, default: Any = None) -> Any:
        return await self._db.call(lambda c: _get_state(c, key, default))

    def get_state_sync(self, key: str, default: Any = None) -> Any:
        """For start-up, before the event loop runs."""
        return self._db.call_sync(lambda c: _get_state(c, key, default))

    async def add_discrepancy(self, kind: str, symbol: str, detail: str, ts_ns: int) -> int:
        return await self._db.call(lambda c: _record_discrepancy(c, kind, symbol, detail, ts_ns))

    async def open_discrepancies(self) -> list[dict[str, Any]]:
        return await self._db.call(
            lambda c: _rows(
                c, "SELECT * FROM discrepancies WHERE resolved_ts_ns IS NULL ORDER BY id"
            )
        )

    async def discrepancies(self) -> list[dict[str, Any]]:
        return await self._db.call(lambda c: _rows(c, "SELECT * FROM discrepancies ORDER BY id"))

    async def resolve_discrepancies(self, resolution: str, ts_ns: int) -> int:
        return await self._db.call(lambda c: _resolve_discrepancies(c, resolution, ts_ns))
