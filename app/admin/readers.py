"""Read-only queries of the engine's trading database (``trading.db``), for pages and charts.

Each query opens its own read-only connection (``mode=ro``: the panel can never write there) and
answers "nothing yet" when the database or a table does not exist yet: the engine may never have
run, or may not have created the decision loop's tables yet. Money stays ``Decimal``.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from app.admin.roundtrips import Fill, Funding
from app.store import db

T = TypeVar("T")
DAY_NS = 86_400 * 1_000_000_000
ZERO = Decimal(0)
OPEN_STATUSES = ("NEW", "PARTIALLY_FILLED")


@dataclass(frozen=True)
class EquityRow:
    ts_ns: int
    equity: Decimal
    realized: Decimal
    unrealized: Decimal
    fees: Decimal
    funding: Decimal


@dataclass(frozen=True)
class PnlSummary:
    equity: Decimal
    today: Decimal
    total: Decimal
    realized: Decimal
    unrealized: Decimal
    fees: Decimal
    funding: Decimal
    ts_ns: int


@dataclass(frozen=True)
class TradeFilter:
    symbol: str = ""
    side: str = ""
    since_ns: int = 0
    until_ns: int = 0


def _row(r: tuple[Any, ...]) -> EquityRow:
    return EquityRow(r[0], *(Decimal(str(v)) for v in r[1:6]))


class EngineReader:
    """Queries over ``<data-dir>/trading.db``, opened read-only per call."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "trading.db"

    def _query(self, fn: Callable[[sqlite3.Connection], T], default: T) -> T:
        if not self.path.exists():
            return default
        try:
            conn = db.connect(self.path, readonly=True)
        except sqlite3.Error:
            return default
        try:
            return fn(conn)
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return default
            raise
        finally:
            conn.close()

    # -- equity and PnL -----------------------------------------------------------------------

    def equity_series(self, since_ns: int = 0, max_points: int = 600) -> list[EquityRow]:
        """Equity points from ``since_ns``, at most ``max_points`` (last point of each bucket)."""

        def q(conn: sqlite3.Connection) -> list[EquityRow]:
            lo, hi, n = conn.execute(
                "SELECT min(ts_ns), max(ts_ns), count(*) FROM equity WHERE ts_ns >= ?", (since_ns,)
            ).fetchone()
            if not n:
                return []
            bucket = max(1, (hi - lo) // max_points + 1)
            rows = conn.execute(
                "SELECT max(ts_ns), equity, realized, unrealized, fees, funding FROM equity "
                "WHERE ts_ns >= ? GROUP BY (ts_ns - ?) / ? ORDER BY 1",
                (since_ns, lo, bucket),
            ).fetchall()
            return [_row(r) for r in rows]

        return self._query(q, [])

    def latest_equity(self, before_ns: int | None = None) -> EquityRow | None:
        def q(conn: sqlite3.Connection) -> EquityRow | None:
            sql = "SELECT ts_ns, equity, realized, unrealized, fees, funding FROM equity "
            if before_ns is None:
                r = conn.execute(sql + "ORDER BY ts_ns DESC LIMIT 1").fetchone()
            else:
                r = conn.execute(
                    sql + "WHERE ts_ns < ? ORDER BY ts_ns DESC LIMIT 1", (before_ns,)
                ).fetchone()
            return _row(r) if r else None

        return self._query(q, None)

    def first_equity(self, since_ns: int = 0) -> EquityRow | None:
        def q(conn: sqlite3.Connection) -> EquityRow | None:
            r = conn.execute(
                "SELECT ts_ns, equity, realized, unrealized, fees, funding FROM equity "
                "WHERE ts_ns >= ? ORDER BY ts_ns LIMIT 1",
                (since_ns,),
            ).fetchone()
            return _row(r) if r else None

        return self._query(q, None)

    def pnl_summary(self, now_ns: int) -> PnlSummary | None:
        """Equity now, today's PnL (since 00:00 UTC) and total PnL (equity minus the balance)."""
        last = self.latest_equity()
        if last is None:
            return None
        day_start = now_ns - now_ns % DAY_NS
        base = self.latest_equity(before_ns=day_start) or self.first_equity(day_start) or last
        total = last.realized - last.fees + last.funding + last.unrealized
        return PnlSummary(
            equity=last.equity,
            today=last.equity - base.equity,
            total=total,
            realized=last.realized,
            unrealized=last.unrealized,
            fees=last.fees,
            funding=last.funding,
            ts_ns=last.ts_ns,
        )

    def daily_pnl(self, days: int = 30) -> list[tuple[int, Decimal]]:
        """(UTC day number, PnL of that day) from each day's last equity point, oldest first."""

        def q(conn: sqlite3.Connection) -> list[tuple[int, Decimal]]:
            rows = conn.execute(
                "SELECT ts_ns / ? AS day, max(ts_ns), equity FROM equity GROUP BY day "
                "ORDER BY day DESC LIMIT ?",
                (DAY_NS, days + 1),
            ).fetchall()
            rows.reverse()
            if not rows:
                return []
            first = conn.execute("SELECT equity FROM equity ORDER BY ts_ns LIMIT 1").fetchone()
            out: list[tuple[int, Decimal]] = []
            prev = Decimal(first[0])
            for day, _, equity in rows:
                value = Decimal(equity)
                out.append((int(day), value - prev))
                prev = value
            return out[-days:]

        return self._query(q, [])

    # -- positions, orders, trades -----------------------------------------------------------

    def positions(self) -> list[dict[str, Any]]:
        def q(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            cur = conn.execute(
                "SELECT symbol, qty, cost, realized, fees, funding, mark, stop_price, "
                "take_profit, ts_ns FROM positions ORDER BY symbol"
            )
            names = [d[0] for d in cur.description]
            out = []
            for r in cur.fetchall():
                row = dict(zip(names, r, strict=True))
                qty = Decimal(row["qty"])
                if not qty:
                    continue
                cost = Decimal(row["cost"])
                mark = Decimal(row["mark"]) if row["mark"] is not None else None
                row["entry"] = (cost / qty).quantize(Decimal("0.00000001")) if qty else None
                row["unrealized"] = qty * mark - cost if mark is not None else None
                out.append(row)
            return out

        return self._query(q, [])

    def open_orders(self) -> list[dict[str, Any]]:
        def q(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            cur = conn.execute(
                "SELECT client_id, ts_created_ns, symbol, side, type, qty, price, filled_qty, "
                "status, model_version FROM orders WHERE status IN (?, ?) ORDER BY ts_created_ns",
                OPEN_STATUSES,
            )
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

        return self._query(q, [])

    def trades(
        self, flt: TradeFilter, offset: int = 0, limit: int = 50
    ) -> tuple[list[dict[str, Any]], int]:
        """Fills matching ``flt``, newest first, one page; and how many match in all."""
        where: list[str] = ["1 = 1"]
        params: list[Any] = []
        if flt.symbol:
            where.append("symbol = ?")
            params.append(flt.symbol)
        if flt.side:
            where.append("side = ?")
            params.append(flt.side)
        if flt.since_ns:
            where.append("ts_ns >= ?")
            params.append(flt.since_ns)
        if flt.until_ns:
            where.append("ts_ns < ?")
            params.append(flt.until_ns)
        clause = " AND ".join(where)

        def q(conn: sqlite3.Connection) -> tuple[list[dict[str, Any]], int]:
            # ``clause`` is built from fixed strings only; the values travel as parameters.
            count_sql = "SELECT count(*) FROM fills WHERE " + clause  # noqa: S608
            total = conn.execute(count_sql, params).fetchone()[0]
            page_sql = (
                "SELECT ts_ns, client_id, symbol, side, price, qty, fee, liquidity, realized_pnl "
                "FROM fills WHERE " + clause + " ORDER BY ts_ns DESC, id DESC LIMIT ? OFFSET ?"
            )
            cur = conn.execute(page_sql, [*params, limit, offset])
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()], int(total)

        empty: tuple[list[dict[str, Any]], int] = ([], 0)
        return self._query(q, empty)

    def fee_funding_totals(self) -> tuple[Decimal, Decimal]:
        """All fees paid and all funding received (+) or paid (−), from the fills and payments."""

        def q(conn: sqlite3.Connection) -> tuple[Decimal, Decimal]:
            fees = sum((Decimal(r[0]) for r in conn.execute("SELECT fee FROM fills")), ZERO)
            funding = ZERO
            with contextlib.suppress(sqlite3.OperationalError):
                funding = sum(
                    (Decimal(r[0]) for r in conn.execute("SELECT amount FROM funding_payments")),
                    ZERO,
                )
            return fees, funding

        return self._query(q, (ZERO, ZERO))

    def fills_for_round_trips(self, limit: int = 20_000) -> tuple[list[Fill], list[Funding]]:
        """The last ``limit`` fills (oldest first) with their order's purpose and model, and the
        funding payments since the first of them: what :func:`roundtrips.build` needs."""

        def q(conn: sqlite3.Connection) -> tuple[list[Fill], list[Funding]]:
            rows = conn.execute(
                "SELECT * FROM (SELECT f.ts_ns, f.id, f.symbol, f.side, f.price, f.qty, f.fee, "
                "f.realized_pnl, coalesce(o.purpose, ''), coalesce(o.model_version, '') "
                "FROM fills f LEFT JOIN orders o ON o.client_id = f.client_id "
                "ORDER BY f.ts_ns DESC, f.id DESC LIMIT ?) ORDER BY 1, 2",
                (limit,),
            ).fetchall()
            fills = [
                Fill(
                    ts_ns=int(r[0]),
                    symbol=str(r[2]),
                    side=str(r[3]),
                    price=Decimal(r[4]),
                    qty=Decimal(r[5]),
                    fee=Decimal(r[6]),
                    realized=Decimal(r[7]),
                    purpose=str(r[8]),
                    model_version=str(r[9]),
                )
                for r in rows
            ]
            funding: list[Funding] = []
            if fills:
                with contextlib.suppress(sqlite3.OperationalError):
                    funding = [
                        Funding(int(r[0]), str(r[1]), Decimal(r[2]))
                        for r in conn.execute(
                            "SELECT ts_ns, symbol, amount FROM funding_payments WHERE ts_ns >= ? "
                            "ORDER BY ts_ns",
                            (fills[0].ts_ns,),
                        )
                    ]
            return fills, funding

        empty: tuple[list[Fill], list[Funding]] = ([], [])
        return self._query(q, empty)

    def symbols_traded(self) -> list[str]:
        return self._query(
            lambda c: [r[0] for r in c.execute("SELECT DISTINCT symbol FROM fills ORDER BY 1")], []
        )

    # -- alarms, risk, journal -----------------------------------------------------------------

    def open_alarms(self) -> list[dict[str, Any]]:
        return self._query(
            lambda c: [
                {"id": r[0], "ts_ns": r[1], "kind": r[2], "message": r[3]}
                for r in c.execute(
                    "SELECT id, ts_ns, kind, message FROM alarms WHERE ts_cleared_ns IS NULL "
                    "ORDER BY id"
                )
            ],
            [],
        )

    def risk_events(self, kinds: tuple[str, ...] = (), limit: int = 50) -> list[dict[str, Any]]:
        def q(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            sql = "SELECT id, ts_ns, kind, code, symbol, message FROM risk_events "
            params: list[Any] = []
            if kinds:
                sql += f"WHERE kind IN ({', '.join('?' * len(kinds))}) "
                params.extend(kinds)
            rows = conn.execute(sql + "ORDER BY id DESC LIMIT ?", [*params, limit]).fetchall()
            names = ("id", "ts_ns", "kind", "code", "symbol", "message")
            return [dict(zip(names, r, strict=True)) for r in rows]

        return self._query(q, [])

    def journal(self, limit: int = 30) -> list[dict[str, Any]]:
        return self._query(
            lambda c: [
                {"ts_ns": r[0], "actor": r[1], "cmd": r[2], "ok": bool(r[3]), "result": r[4]}
                for r in c.execute(
                    "SELECT ts_ns, actor, cmd, ok, result FROM journal ORDER BY id DESC LIMIT ?",
                    (limit,),
                )
            ],
            [],
        )

    def setting(self, key: str) -> Any:
        def q(conn: sqlite3.Connection) -> Any:
            r = conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
            return json.loads(r[0]) if r else None

        return self._query(q, None)
