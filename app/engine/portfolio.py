"""Positions, PnL and equity, exact; and the trading-database tables of orders, fills and risk.

One net position per symbol (Binance's one-way mode). A position keeps its signed quantity and its
signed cost (Σ quantity × price of the open part), so unrealised PnL is ``qty × mark − cost`` with
no division; closing part of a position releases a proportional share of the cost and realises the
difference. Fees are paid in the quote asset (USDT); funding is received (+) or paid (−) as
``−qty × mark × rate`` at each settlement.

Equity = starting balance + realised − fees + funding + unrealised: the figure the risk gate's
daily-loss and drawdown breakers watch, and the one the panel plots (:class:`EquitySampler` keeps
at most one point per interval).

A *trade* is a round trip from flat to flat (or to a flip): when it ends, :class:`TradeClosed`
carries its net result (realised + funding − fees), which feeds the losing-streak breaker.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from app.engine.orders import ZERO, Fill, transaction


# The decision loop's tables; the lead appends this to ``schema.TRADING_MIGRATIONS``. Money is
# TEXT (the exact decimal string), timestamps integer nanoseconds.
@dataclass(slots=True)
class Position:
    """One symbol's net position and its running totals (mutable; owned by :class:`Portfolio`).

    ``stop_price``/``take_profit`` are the protective exits of the entry that opened it.
    """

    symbol: str
    qty: Decimal = ZERO
    cost: Decimal = ZERO
    realized: Decimal = ZERO
    fees: Decimal = ZERO
    funding: Decimal = ZERO
    trade_pnl: Decimal = ZERO
    mark: Decimal | None = None
    stop_price: Decimal | None = None
    take_profit: Decimal | None = None

    @property
    def entry_price(self) -> Decimal | None:
        """The average entry price of the open quantity (None when flat)."""
        return self.cost / self.qty if self.qty else None

    @property
    def unrealized(self) -> Decimal:
        return self.qty * self.mark - self.cost if self.mark is not None and self.qty else ZERO

    @property
    def notional(self) -> Decimal:
        """``|qty| × mark`` (the entry price stands in until a mark is known)."""
        if not self.qty:
            return ZERO
        price = self.mark if self.mark is not None else self.cost / self.qty
        return abs(self.qty * price)


@dataclass(frozen=True, slots=True)
class TradeClosed:
    """A round trip ended: its net result (realised + funding − fees), for the streak breaker."""

    symbol: str
    pnl: Decimal
    ts_ns: int


@dataclass(frozen=True, slots=True)
class FillResult:
    """What one fill did to the books: PnL it realised, and the trade it closed, if any."""

    realized: Decimal
    closed: TradeClosed | None


@dataclass(frozen=True, slots=True)
class FundingPayment:
    ts_ns: int
    symbol: str
    rate: Decimal
    mark: Decimal
    position_qty: Decimal
    amount: Decimal


@dataclass(frozen=True, slots=True)
class PositionView:
    """A frozen copy of a position for the gate and the panel."""

    symbol: str
    qty: Decimal
    entry_price: Decimal | None
    mark: Decimal | None
    notional: Decimal
    unrealized: Decimal


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    """The account at one instant: the risk gate's view of equity and exposure."""

    ts_ns: int
    balance: Decimal
    equity: Decimal
    realized: Decimal
    unrealized: Decimal
    fees: Decimal
    funding: Decimal
    positions: Mapping[str, PositionView]

    @property
    def gross_notional(self) -> Decimal:
        return sum((p.notional for p in self.positions.values()), ZERO)

    def qty(self, symbol: str) -> Decimal:
        view = self.positions.get(symbol)
        return view.qty if view is not None else ZERO


@dataclass(frozen=True, slots=True)
class EquityPoint:
    ts_ns: int
    equity: Decimal
    realized: Decimal
    unrealized: Decimal
    fees: Decimal
    funding: Decimal


class Portfolio:
    """Every position, and the account totals derived from them."""

    def __init__(self, balance: Decimal, positions: Iterable[Position] = ()) -> None:
        self.balance = balance
        self._positions: dict[str, Position] = {p.symbol: p for p in positions}

    def position(self, symbol: str) -> Position:
        pos = self._positions.get(symbol)
        if pos is None:
            pos = self._positions[symbol] = Position(symbol)
        return pos

    def qty(self, symbol: str) -> Decimal:
        """The signed position in ``symbol``, 0 when there is none."""
        pos = self._positions.get(symbol)
        return pos.qty if pos is not None else ZERO

    def positions(self) -> list[Position]:
        return list(self._positions.values())

    def apply_fill(self, fill: Fill) -> FillResult:
        """Book ``fill``: fee, realised PnL of any part that closes, cost of any part that opens."""
        pos = self.position(fill.symbol)
        signed = fill.qty * fill.side.sign
        pos.fees += fill.fee
        pos.trade_pnl -= fill.fee
        realized = ZERO
        closed: TradeClosed | None = None
        if pos.qty and (pos.qty > 0) != (signed > 0):
            closing = min(abs(signed), abs(pos.qty))
            direction = 1 if pos.qty > 0 else -1
            released = pos.cost * closing / abs(pos.qty)
            realized = direction * closing * fill.price - released
            pos.realized += realized
            pos.trade_pnl += realized
            pos.cost -= released
            pos.qty += direction * -closing
            signed += direction * closing
            if not pos.qty:
                pos.cost = ZERO  # no residue from inexact division survives a flat position
                closed = TradeClosed(fill.symbol, pos.trade_pnl, fill.ts_ns)
                pos.trade_pnl = ZERO
                pos.stop_price = pos.take_profit = None
        if signed:
            pos.qty += signed
            pos.cost += signed * fill.price
        if pos.mark is None:
            pos.mark = fill.price
        return FillResult(realized, closed)

    def mark(self, symbol: str, price: Decimal) -> None:
        """Set the mark price unrealised PnL is valued at."""
        self.position(symbol).mark = price

    def apply_funding(
        self, symbol: str, rate: Decimal, mark: Decimal, ts_ns: int
    ) -> FundingPayment | None:
        """Settle funding on the open position: longs pay a positive rate, shorts receive it."""
        pos = self._positions.get(symbol)
        if pos is None or not pos.qty:
            return None
        amount = -pos.qty * mark * rate
        pos.funding += amount
        pos.trade_pnl += amount
        return FundingPayment(ts_ns, symbol, rate, mark, pos.qty, amount)

    def snapshot(self, ts_ns: int) -> AccountSnapshot:
        realized = fees = funding = unrealized = ZERO
        views: dict[str, PositionView] = {}
        for pos in self._positions.values():
            realized += pos.realized
            fees += pos.fees
            funding += pos.funding
            upnl = pos.unrealized
            unrealized += upnl
            if pos.qty:
                views[pos.symbol] = PositionView(
                    pos.symbol, pos.qty, pos.entry_price, pos.mark, pos.notional, upnl
                )
        equity = self.balance + realized - fees + funding + unrealized
        return AccountSnapshot(
            ts_ns, self.balance, equity, realized, unrealized, fees, funding, views
        )


class EquitySampler:
    """At most one equity point per ``interval_s`` for the panel's series."""

    def __init__(self, interval_s: float) -> None:
        self._interval_ns = int(interval_s * 1e9)
        self._next_ns = 0

    def due(self, ts_ns: int) -> bool:
        """True when a point at ``ts_ns`` would be kept (check before building a snapshot)."""
        return ts_ns >= self._next_ns

    def sample(self, snapshot: AccountSnapshot) -> EquityPoint | None:
        """The point for ``snapshot`` if one is due, else None."""
        if snapshot.ts_ns < self._next_ns:
            return None
        self._next_ns = snapshot.ts_ns + self._interval_ns
        s = snapshot
        return EquityPoint(s.ts_ns, s.equity, s.realized, s.unrealized, s.fees, s.funding)


# -- persistence --------------------------------------------------------------------------------


def _dec(value: object) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def save_positions(conn: sqlite3.Connection, positions: Iterable[Position], ts_ns: int) -> None:
    """Upsert the positions (flat ones too: they hold the symbol's realised totals)."""
    rows = [
        (
            p.symbol,
            str(p.qty),
            str(p.cost),
            str(p.realized),
            str(p.fees),
            str(p.funding),
            str(p.trade_pnl),
            None if p.mark is None else str(p.mark),
            None if p.stop_price is None else str(p.stop_price),
            None if p.take_profit is None else str(p.take_profit),
            ts_ns,
        )
        for p in positions
    ]
    with transaction(conn):
        conn.executemany(
            "INSERT INTO positions (symbol, qty, cost, realized, fees, funding, trade_pnl, mark, "
            "stop_price, take_profit, ts_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (symbol) DO UPDATE SET qty = excluded.qty, cost = excluded.cost, "
            "realized = excluded.realized, fees = excluded.fees, funding = excluded.funding, "
            "trade_pnl = excluded.trade_pnl, mark = excluded.mark, "
            "stop_price = excluded.stop_price, take_profit = excluded.take_profit, "
            "ts_ns = excluded.ts_ns",
            rows,
        )


def load_positions(conn: sqlite3.Connection) -> list[Position]:
    """The persisted positions, to rebuild a :class:`Portfolio` after a restart."""
    rows = conn.execute(
        "SELECT symbol, qty, cost, realized, fees, funding, trade_pnl, mark, stop_price, "
        "take_profit FROM positions ORDER BY symbol"
    ).fetchall()
    return [
        Position(
            symbol=r[0],
            qty=Decimal(r[1]),
            cost=Decimal(r[2]),
            realized=Decimal(r[3]),
            fees=Decimal(r[4]),
            funding=Decimal(r[5]),
            trade_pnl=Decimal(r[6]),
            mark=_dec(r[7]),
            stop_price=_dec(r[8]),
            take_profit=_dec(r[9]),
        )
        for r in rows
    ]


def save_funding(conn: sqlite3.Connection, payment: FundingPayment) -> None:
    with transaction(conn):
        conn.execute(
            "INSERT INTO funding_payments (ts_ns, symbol, rate, mark, position_qty, amount) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                payment.ts_ns,
                payment.symbol,
                str(payment.rate),
                str(payment.mark),
                str(payment.position_qty),
                str(payment.amount),
            ),
        )


def append_equity(conn: sqlite3.Connection, points: Iterable[EquityPoint]) -> None:
    """Append equity points (a point at an existing timestamp replaces it)."""
    rows = [
        (p.ts_ns, str(p.equity), str(p.realized), str(p.unrealized), str(p.fees), str(p.funding))
        for p in points
    ]
    with transaction(conn):
        conn.executemany(
            "INSERT OR REPLACE INTO equity (ts_ns, equity, realized, unrealized, fees, funding) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )


def equity_series(
    conn: sqlite3.Connection, since_ns: int = 0, limit: int = 10_000
) -> list[EquityPoint]:
    """Equity points from ``since_ns`` on, oldest first: the panel's chart."""
    rows = conn.execute(
        "SELECT ts_ns, equity, realized, unrealized, fees, funding FROM equity "
        "WHERE ts_ns >= ? ORDER BY ts_ns LIMIT ?",
        (since_ns, limit),
    ).fetchall()
    return [
        EquityPoint(r[0], Decimal(r[1]), Decimal(r[2]), Decimal(r[3]), Decimal(r[4]), Decimal(r[5]))
        for r in rows
    ]
