"""Orders, fills and the exchange's filters: the types every execution path shares.

An :class:`Order` can be built by anyone, but only one carrying a valid ``seal`` is executed, and
only :class:`~app.engine.risk.RiskGate` holds the key that makes seals (an HMAC over the order's
fields with a per-process random key). Executors take an :class:`OrderAuthority` (the gate) and
refuse anything it does not verify, so no order reaches execution without passing the gate.

Client order ids are ``app-<boot>-<seq>``: ``boot`` is a counter persisted in the trading database
and bumped at every start (:func:`next_boot`), ``seq`` counts within the boot, so ids are
deterministic, never reused across restarts, and match Binance's ``^[\\.A-Z\\:/a-z0-9_-]{1,36}$``.

Filters follow Binance: quantities are rounded *down* to ``stepSize``; limit prices to
``tickSize`` (buys down, sells up, so rounding never makes a price worse for us); the rounded
order must still reach the minimum quantity and ``minNotional`` (reduce-only orders are exempt from
``minNotional``, as on the exchange). Every rejection carries a :class:`RejectCode`.

Everything that is money is :class:`~decimal.Decimal`; timestamps are ``ts_*_ns``.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from enum import StrEnum
from typing import Any, Protocol, TypeAlias

from app.binance.filters import SymbolFilters
from app.errors import OperatorError

Submit: TypeAlias = Callable[[Callable[[sqlite3.Connection], Any]], Any]
"""Runs a function on the trading database's writer thread (``DbWriter.submit``)."""

CLIENT_ID_RE = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
ZERO = Decimal(0)


class OrderNotApprovedError(OperatorError):
    """An order without a valid gate seal reached an executor: a bug, never retried."""


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def sign(self) -> int:
        """+1 for a buy, -1 for a sell: the sign of the position change."""
        return 1 if self is Side.BUY else -1

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(StrEnum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"


class OrderStatus(StrEnum):
    """Binance's order statuses (the subset paper trading produces)."""

    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    EXPIRED = "EXPIRED"
    REJECTED = "REJECTED"

    @property
    def done(self) -> bool:
        return self in _DONE


_DONE = frozenset(
    {OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.EXPIRED, OrderStatus.REJECTED}
)


class Liquidity(StrEnum):
    MAKER = "maker"
    TAKER = "taker"


class RejectCode(StrEnum):
    """Why an order was not made or not executed: stable codes for the journal and the panel."""

    KILL_SWITCH = "kill_switch"
    DAILY_LOSS = "daily_loss"
    DRAWDOWN = "drawdown"
    COOLDOWN = "cooldown"
    BAD_INTENT = "bad_intent"
    STALE_INTENT = "stale_intent"
    NO_EDGE = "no_edge"
    RISK_PER_TRADE = "risk_per_trade"
    NO_EQUITY = "no_equity"
    MAX_POSITION_NOTIONAL = "max_position_notional"
    MAX_LEVERAGE = "max_leverage"
    LIQUIDATION_BUFFER = "liquidation_buffer"
    NOTHING_TO_REDUCE = "nothing_to_reduce"
    QTY_BELOW_MIN = "qty_below_min"
    NOTIONAL_BELOW_MIN = "notional_below_min"
    PRICE_OFF_TICK = "price_off_tick"
    QTY_OFF_STEP = "qty_off_step"
    UNKNOWN_SYMBOL = "unknown_symbol"
    DUPLICATE_ID = "duplicate_client_id"


@dataclass(frozen=True, slots=True)
class Order:
    """An order the gate approved. ``price`` is the limit price (None for market orders);
    ``stop_price``/``take_profit`` are the protective exits the gate attached to an entry."""

    client_id: str
    symbol: str
    side: Side
    type: OrderType
    qty: Decimal
    price: Decimal | None
    reduce_only: bool
    stop_price: Decimal | None
    take_profit: Decimal | None
    ts_created_ns: int
    model_version: str
    purpose: str  # "entry", "reduce", "exit:stop", "exit:take_profit", "kill"
    seal: bytes = field(repr=False, compare=False)

    def payload(self) -> bytes:
        """The canonical bytes the seal covers: every field but the seal."""
        return "|".join(
            (
                self.client_id,
                self.symbol,
                self.side,
                self.type,
                str(self.qty),
                str(self.price),
                "1" if self.reduce_only else "0",
                str(self.stop_price),
                str(self.take_profit),
                str(self.ts_created_ns),
                self.model_version,
                self.purpose,
            )
        ).encode()


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution against one price level (or one trade): exact price, quantity and fee."""

    client_id: str
    symbol: str
    side: Side
    price: Decimal
    qty: Decimal
    fee: Decimal
    liquidity: Liquidity
    ts_ns: int


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """An order's state after an event: what the journal, the panel and the strategy see."""

    order: Order
    status: OrderStatus
    filled_qty: Decimal
    avg_price: Decimal | None
    fees: Decimal
    ts_ns: int
    reason: str = ""


class OrderAuthority(Protocol):
    """What an executor needs from the gate: check seals, and make exits it can execute."""

    def verify(self, order: Order) -> bool:
        """True when ``order`` carries a seal this authority made and is unchanged since."""
        ...

    def exit_order(
        self, symbol: str, position_qty: Decimal, purpose: str, ts_ns: int
    ) -> Order | None:
        """A sealed reduce-only market order that closes ``position_qty`` (signed), or None."""
        ...


# -- client order ids ---------------------------------------------------------------------------


class ClientOrderIds:
    """``app-<boot>-<seq>``: unique across restarts because ``boot`` is persisted and bumped."""

    __slots__ = ("_prefix", "_seq")

    def __init__(self, boot: int, start_seq: int = 0) -> None:
        if boot < 0:
            raise ValueError("boot must be >= 0")
        self._prefix = f"app-{boot}-"
        self._seq = start_seq

    def next(self) -> str:
        """The next id; raises ``ValueError`` if it would break Binance's length limit."""
        self._seq += 1
        client_id = f"{self._prefix}{self._seq}"
        if not CLIENT_ID_RE.match(client_id):
            raise ValueError(f"client order id {client_id!r} breaks Binance's format")
        return client_id


# -- filters ------------------------------------------------------------------------------------


def round_qty(qty: Decimal, step: Decimal) -> Decimal:
    """``qty`` rounded down to a multiple of ``step`` (never more than asked for)."""
    return (qty / step).to_integral_value(rounding=ROUND_FLOOR) * step


def round_price(price: Decimal, tick: Decimal, side: Side) -> Decimal:
    """A limit price on the tick grid: a buy rounds down, a sell up (never a worse price)."""
    rounding = ROUND_FLOOR if side is Side.BUY else ROUND_CEILING
    return (price / tick).to_integral_value(rounding=rounding) * tick


def on_grid(value: Decimal, unit: Decimal) -> bool:
    """True when ``value`` is an exact multiple of ``unit``."""
    return value % unit == 0


def min_qty(filters: SymbolFilters) -> Decimal:
    """The smallest order quantity. ``SymbolFilters`` has no ``minQty``; on USD-M it equals the
    step size for every symbol of the reference exchangeInfo, so the step stands in for it."""
    return filters.step_size


def check_filters(
    filters: SymbolFilters, qty: Decimal, price: Decimal, *, reduce_only: bool
) -> tuple[RejectCode, str] | None:
    """Why an order of ``qty`` at ``price`` breaks the exchange's filters, or None when it passes.

    ``price`` is the limit price, or for a market order the reference price the notional is
    judged at.
    """
    sym = filters.symbol
    if not on_grid(qty, filters.step_size):
        return RejectCode.QTY_OFF_STEP, f"{sym}: qty {qty} is not a multiple of {filters.step_size}"
    if qty < min_qty(filters):
        return RejectCode.QTY_BELOW_MIN, f"{sym}: qty {qty} < minimum {min_qty(filters)}"
    if not on_grid(price, filters.tick_size):
        return (
            RejectCode.PRICE_OFF_TICK,
            f"{sym}: price {price} is not a multiple of {filters.tick_size}",
        )
    notional = qty * price
    if not reduce_only and notional < filters.min_notional:
        return (
            RejectCode.NOTIONAL_BELOW_MIN,
            f"{sym}: notional {notional} < minNotional {filters.min_notional}",
        )
    return None


# -- persistence (the tables are in store.schema.TRADING_MIGRATIONS) ----------------------------


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (or ``ROLLBACK`` on any error) on an autocommit conn."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def next_boot(conn: sqlite3.Connection, ts_ns: int) -> int:
    """Record a start of the engine and return its boot number (1, 2, …) for client order ids."""
    with transaction(conn):
        cursor = conn.execute("INSERT INTO boots (ts_ns) VALUES (?)", (ts_ns,))
    return int(cursor.lastrowid or 0)


def save_order_update(conn: sqlite3.Connection, update: OrderUpdate) -> None:
    """Insert or update the order row for ``update`` (idempotent on the client order id)."""
    o = update.order
    with transaction(conn):
        conn.execute(
            "INSERT INTO orders (client_id, ts_created_ns, ts_updated_ns, symbol, side, type, "
            "qty, price, reduce_only, stop_price, take_profit, model_version, purpose, status, "
            "filled_qty, avg_price, fees, reason) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (client_id) DO UPDATE SET ts_updated_ns = excluded.ts_updated_ns, "
            "status = excluded.status, filled_qty = excluded.filled_qty, "
            "avg_price = excluded.avg_price, fees = excluded.fees, reason = excluded.reason",
            (
                o.client_id,
                o.ts_created_ns,
                update.ts_ns,
                o.symbol,
                str(o.side),
                str(o.type),
                str(o.qty),
                _text(o.price),
                int(o.reduce_only),
                _text(o.stop_price),
                _text(o.take_profit),
                o.model_version,
                o.purpose,
                str(update.status),
                str(update.filled_qty),
                _text(update.avg_price),
                str(update.fees),
                update.reason,
            ),
        )


def save_fills(conn: sqlite3.Connection, fills: list[tuple[Fill, Decimal]]) -> None:
    """Append fills, each with the realised PnL it produced, in one transaction."""
    with transaction(conn):
        conn.executemany(
            "INSERT INTO fills (ts_ns, client_id, symbol, side, price, qty, fee, liquidity, "
            "realized_pnl) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    f.ts_ns,
                    f.client_id,
                    f.symbol,
                    str(f.side),
                    str(f.price),
                    str(f.qty),
                    str(f.fee),
                    str(f.liquidity),
                    str(pnl),
                )
                for f, pnl in fills
            ],
        )


def expire_open_orders(conn: sqlite3.Connection, ts_ns: int, reason: str) -> int:
    """Mark every open order EXPIRED (paper orders live in memory and die with the process);
    returns how many there were."""
    with transaction(conn):
        cursor = conn.execute(
            "UPDATE orders SET status = 'EXPIRED', ts_updated_ns = ?, reason = ? "
            "WHERE status IN ('NEW', 'PARTIALLY_FILLED')",
            (ts_ns, reason),
        )
    return cursor.rowcount


_ORDER_COLUMNS = (
    "SELECT client_id, ts_created_ns, ts_updated_ns, symbol, side, type, qty, price, "
    "reduce_only, stop_price, take_profit, model_version, purpose, status, filled_qty, "
    "avg_price, fees, reason FROM orders "
)
_ALL_ORDERS = _ORDER_COLUMNS + "ORDER BY ts_created_ns, client_id"
_OPEN_ORDERS = (
    _ORDER_COLUMNS + "WHERE status IN ('NEW', 'PARTIALLY_FILLED') ORDER BY ts_created_ns, client_id"
)


def load_orders(conn: sqlite3.Connection, *, open_only: bool = False) -> list[dict[str, object]]:
    """Order rows, oldest first (``open_only``: those not yet filled, cancelled or expired)."""
    cursor = conn.execute(_OPEN_ORDERS if open_only else _ALL_ORDERS)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def load_fills(conn: sqlite3.Connection, client_id: str | None = None) -> list[dict[str, object]]:
    """Fill rows in execution order, all or one order's."""
    sql = (
        "SELECT ts_ns, client_id, symbol, side, price, qty, fee, liquidity, realized_pnl FROM fills"
    )
    params: tuple[str, ...] = ()
    if client_id is not None:
        sql += " WHERE client_id = ?"
        params = (client_id,)
    cursor = conn.execute(sql + " ORDER BY id", params)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
