"""Shadow mode: a candidate model runs beside the active one on the same market data, paper only.

While a shadow runs, two :class:`~app.models.sandbox.Sandbox` es are fed every market event the
live trader sees: the candidate's, and a mirror of the active model's. Each has its own private
paper account started at the same moment with the same balance, so their PnL since the shadow
began is comparable; neither can reach the live venue (a sandbox's orders exist only inside its
own paper exchange). The live trader is untouched.

Recorded for the panel (tables in :data:`app.store.schema.SHADOW_MIGRATION`): one ``shadow_runs``
row per run, both models' signals at every decision (``model_signals``), and each one's paper
account (``shadow_pnl``, the latest figures per run and role). Rows are buffered on the hot path and
written by :meth:`ShadowRunner.flush` on the trading database's writer thread.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from app.binance.filters import SymbolFilters
from app.clock import Clock
from app.config import PaperConfig, RiskConfig
from app.engine.book import OrderBook
from app.engine.events import Event
from app.engine.inference import LoadedModel
from app.engine.orders import transaction
from app.engine.trader import Signal, Trader
from app.models.agreement import Agreement
from app.models.sandbox import Sandbox, adopt_risk, make_sandbox

Submit = Callable[[Callable[[sqlite3.Connection], Any]], Any]

# The lead appends this to ``schema.TRADING_MIGRATIONS``. Money is exact decimal text.

ROLES = ("active", "shadow")
_SignalRow = tuple[int, int, int, str, str, str, float, str, float, str]


@dataclass(frozen=True)
class ShadowRun:
    """The run in progress: its id (its start time in ns) and the two models."""

    run_id: int
    active: LoadedModel
    shadow: LoadedModel


class ShadowRunner:
    """Runs a candidate (and a mirror of the active model) in sandboxes beside the live trader.

    ``books`` are the engine's live books (read only); ``submit`` runs a function on the trading
    database's writer thread without waiting (``DbWriter.submit``).
    """

    def __init__(
        self,
        symbols: tuple[str, ...],
        clock: Clock,
        filters: Mapping[str, SymbolFilters],
        books: Mapping[str, OrderBook],
        submit: Submit,
        paper: PaperConfig | None = None,
        risk: RiskConfig | None = None,
    ) -> None:
        self.symbols = tuple(s.upper() for s in symbols)
        self._clock = clock
        self._filters = filters
        self._books = books
        self._submit = submit
        self._paper = paper
        self._risk = risk
        self._run: ShadowRun | None = None
        self._boxes: tuple[Sandbox, Sandbox] | None = None
        self._rows: list[_SignalRow] = []
        self.agreement = Agreement()

    @property
    def run(self) -> ShadowRun | None:
        """The run in progress, or None."""
        return self._run

    def start(self, active: LoadedModel, shadow: LoadedModel, live: Trader | None = None) -> int:
        """Start a run (ending any previous one as ``replaced``); returns its id.

        ``live`` (the engine's trader) lends its warmed-up 1-minute ATR, so the sandboxes can
        size entries at once.
        """
        if self._run is not None:
            self.stop("replaced")
        now = self._clock.time_ns()
        boxes = tuple(
            make_sandbox(
                m, self.symbols, self._clock, self._filters, self._books, self._paper, self._risk
            )
            for m in (active, shadow)
        )
        if live is not None:
            for box in boxes:
                adopt_risk(box.trader, live)
        self._boxes = (boxes[0], boxes[1])
        self.agreement = Agreement()
        run = self._run = ShadowRun(now, active, shadow)
        a, s = active, shadow
        self._submit(
            lambda conn: _insert_run(
                conn,
                run.run_id,
                a.sha256,
                a.contract.model_version,
                s.sha256,
                s.contract.model_version,
            )
        )
        return run.run_id

    def stop(self, outcome: str) -> int | None:
        """End the run in progress (``outcome``: stopped, promoted, replaced...); its id."""
        run = self._run
        if run is None:
            return None
        self.flush()
        self._run = None
        self._boxes = None
        now = self._clock.time_ns()
        self._submit(lambda conn: _end_run(conn, run.run_id, now, outcome))
        return run.run_id

    # -- hot path ------------------------------------------------------------------------------

    def on_event(self, ts_recv_ns: int, ev: Event) -> None:
        """Feed one market event to both sandboxes (nothing to do when no shadow runs)."""
        boxes = self._boxes
        if boxes is None:
            return
        calls: list[str | None] = []
        for role, box in zip(ROLES, boxes, strict=True):
            signal = box.on_event(ts_recv_ns, ev)
            if signal is not None:
                self._record(role, box, ev.symbol, signal, ts_recv_ns)
            calls.append(None if signal is None else signal.direction)
        active, shadow = calls
        if active is not None and shadow is not None:  # both decided on this bar
            self.agreement.add(ts_recv_ns, active, shadow)

    def _record(self, role: str, box: Sandbox, symbol: str, s: Signal, ts_ns: int) -> None:
        run = self._run
        assert run is not None
        self._rows.append(
            (
                run.run_id,
                ts_ns,
                s.ts_ms,
                symbol,
                role,
                box.model.contract.model_version,
                s.prob,
                s.direction,
                s.confidence,
                s.action,
            )
        )

    # -- persistence ---------------------------------------------------------------------------

    def flush(self) -> None:
        """Hand the buffered signals and both accounts' figures to the database writer."""
        run, boxes = self._run, self._boxes
        if run is None or boxes is None:
            return
        rows, self._rows = self._rows, []
        now = self._clock.time_ns()
        pnl = [_pnl_row(run.run_id, role, box, now) for role, box in zip(ROLES, boxes, strict=True)]
        self._submit(lambda conn: _write(conn, rows, pnl))

    async def flush_loop(self, interval_s: float = 1.0) -> None:
        """Flush every ``interval_s`` (a supervised task in the engine)."""
        while True:
            await asyncio.sleep(interval_s)
            self.flush()

    def status(self) -> dict[str, Any]:
        """The run, and each sandbox's account, for ``status`` and the panel."""
        run, boxes = self._run, self._boxes
        if run is None or boxes is None:
            return {"running": False}
        now = self._clock.time_ns()
        out: dict[str, Any] = {"running": True, "run_id": run.run_id, **self.agreement.totals()}
        for role, box in zip(ROLES, boxes, strict=True):
            snap = box.exchange.snapshot(now)
            out[role] = {
                "sha256": box.model.sha256,
                "model_version": box.model.contract.model_version,
                "equity": str(snap.equity),
                "pnl": str(snap.equity - snap.balance),
                "fees": str(snap.fees),
                "orders": box.tally.orders,
                "trades": box.tally.trades,
                "decisions": box.trader.stats.decisions,
            }
        return out


def _pnl_row(run_id: int, role: str, box: Sandbox, ts_ns: int) -> tuple[Any, ...]:
    s = box.exchange.snapshot(ts_ns)
    return (
        run_id,
        role,
        ts_ns,
        str(s.equity),
        str(s.realized),
        str(s.unrealized),
        str(s.fees),
        str(s.funding),
        box.tally.orders,
        box.tally.trades,
    )


def _insert_run(
    conn: sqlite3.Connection, run_id: int, a_sha: str, a_ver: str, s_sha: str, s_ver: str
) -> None:
    with transaction(conn):
        conn.execute(
            "INSERT INTO shadow_runs (id, ts_started_ns, active_sha256, active_version, "
            "shadow_sha256, shadow_version) VALUES (?, ?, ?, ?, ?, ?)",
            (run_id, run_id, a_sha, a_ver, s_sha, s_ver),
        )


def _end_run(conn: sqlite3.Connection, run_id: int, ts_ns: int, outcome: str) -> None:
    with transaction(conn):
        conn.execute(
            "UPDATE shadow_runs SET ts_ended_ns = ?, outcome = ? WHERE id = ?",
            (ts_ns, outcome, run_id),
        )


def _write(conn: sqlite3.Connection, rows: list[_SignalRow], pnl: list[tuple[Any, ...]]) -> None:
    with transaction(conn):
        conn.executemany(
            "INSERT INTO model_signals (run_id, ts_ns, ts_bar_ms, symbol, role, model_version, "
            "prob, direction, confidence, action) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        conn.executemany(
            "INSERT INTO shadow_pnl (run_id, role, ts_ns, equity, realized, unrealized, fees, "
            "funding, orders, trades) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (run_id, role) DO UPDATE SET ts_ns = excluded.ts_ns, "
            "equity = excluded.equity, realized = excluded.realized, "
            "unrealized = excluded.unrealized, fees = excluded.fees, funding = excluded.funding, "
            "orders = excluded.orders, trades = excluded.trades",
            pnl,
        )
