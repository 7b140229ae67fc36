"""A backtest's round trips (flat → position → flat) from its fills, with why each began and ended.

The same rules as the panel's round trips (``app/admin/roundtrips.py``, which this layer may not
import: the models never load the admin side): a trip is every fill of one symbol from the moment
the position leaves zero until it is back at zero; a fill that flips the position closes one trip
and opens the next with the quantity beyond zero; funding paid or received while a trip was open is
added to it. The exit reason comes from the closing order's purpose; the entry reason is the
decision that sent the opening order (its direction and ``prob_up``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from app.engine.portfolio import FundingPayment
from app.models.sandbox import FillRecord

ZERO = Decimal(0)

# Order purpose -> why the trip ended.
EXIT_REASONS = {
    "reduce": "signal",
    "entry": "signal",  # an opposite entry that flipped the position
    "exit:stop": "stop",
    "exit:take_profit": "take-profit",
    "kill": "kill",
    "liquidation": "liquidation",
}


@dataclass
class Trip:
    symbol: str
    side: str  # long or short
    ts_open_ns: int
    entry_reason: str = "signal"
    qty: Decimal = ZERO  # the largest size held
    entry_notional: Decimal = ZERO
    entry_qty: Decimal = ZERO
    exit_notional: Decimal = ZERO
    exit_qty: Decimal = ZERO
    gross: Decimal = ZERO
    fees: Decimal = ZERO
    funding: Decimal = ZERO
    slippage: Decimal = ZERO
    ts_close_ns: int | None = None
    exit_reason: str = ""

    @property
    def is_open(self) -> bool:
        return self.ts_close_ns is None

    @property
    def entry_price(self) -> Decimal:
        return self.entry_notional / self.entry_qty if self.entry_qty else ZERO

    @property
    def exit_price(self) -> Decimal | None:
        return self.exit_notional / self.exit_qty if self.exit_qty else None

    @property
    def pnl(self) -> Decimal:
        """Net: realised price PnL minus fees plus funding."""
        return self.gross - self.fees + self.funding


def _slip(f: FillRecord, qty: Decimal) -> Decimal:
    return ZERO if f.reference is None else (f.price - f.reference) * qty * f.side.sign


def build(fills: Iterable[FillRecord], funding: Sequence[FundingPayment] = ()) -> list[Trip]:
    """Round trips from ``fills`` (oldest first), oldest first; the last of a symbol may be open."""
    trips: list[Trip] = []
    open_trip: dict[str, Trip] = {}
    position: dict[str, Decimal] = {}
    for f in fills:
        pos = position.get(f.symbol, ZERO)
        sign = f.side.sign
        remaining = f.qty
        fee_left = f.fee
        trip = open_trip.get(f.symbol)
        if trip is not None and pos * sign < 0:
            # Reduces (and may flip): the part up to zero closes this trip.
            closing = min(remaining, abs(pos))
            fee = f.fee * closing / f.qty if f.qty else ZERO
            trip.exit_notional += closing * f.price
            trip.exit_qty += closing
            trip.gross += f.realized
            trip.fees += fee
            trip.slippage += _slip(f, closing)
            pos += closing * sign
            remaining -= closing
            fee_left -= fee
            if pos == 0:
                trip.ts_close_ns = f.ts_ns
                trip.exit_reason = EXIT_REASONS.get(f.purpose, f.purpose or "signal")
                del open_trip[f.symbol]
        if remaining > 0:
            trip = open_trip.get(f.symbol)
            if trip is None:
                trip = Trip(f.symbol, "long" if sign > 0 else "short", f.ts_ns)
                open_trip[f.symbol] = trip
                trips.append(trip)
            trip.entry_notional += remaining * f.price
            trip.entry_qty += remaining
            trip.fees += fee_left
            trip.slippage += _slip(f, remaining)
            pos += remaining * sign
            trip.qty = max(trip.qty, abs(pos))
        position[f.symbol] = pos
    for pay in funding:
        for t in trips:
            end = t.ts_close_ns if t.ts_close_ns is not None else pay.ts_ns
            if t.symbol == pay.symbol and t.ts_open_ns <= pay.ts_ns <= end:
                t.funding += pay.amount
                break
    return trips
