"""Round trips (flat → position → flat) rebuilt from the engine's fills, and their summaries.

The engine records fills and the orders they belong to (``app/engine/orders.py``: each order's
``purpose`` says why it was sent); a round trip is every fill of one symbol from the moment the
position leaves zero until it is back at zero. A fill that flips the position (long 1 → short 1)
closes one trip and opens the next with the quantity beyond zero. Funding paid or received while
the trip was open is added to it. Everything stays ``Decimal``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

ZERO = Decimal(0)
HUNDRED = Decimal(100)

# Order purpose -> why the trip ended, as the trader reads it.
EXIT_REASONS = {
    "reduce": "signal",
    "entry": "signal",  # an opposite entry that flipped the position
    "exit:stop": "stop",
    "exit:take_profit": "take-profit",
    "kill": "kill",
    "liquidation": "liquidation",
}


@dataclass(frozen=True)
class Fill:
    ts_ns: int
    symbol: str
    side: str  # BUY or SELL
    price: Decimal
    qty: Decimal
    fee: Decimal
    realized: Decimal
    purpose: str
    model_version: str


@dataclass(frozen=True)
class Funding:
    ts_ns: int
    symbol: str
    amount: Decimal


@dataclass
class RoundTrip:
    symbol: str
    direction: str  # long or short
    model_version: str
    ts_open_ns: int
    qty: Decimal = ZERO  # the largest size held
    entry_notional: Decimal = ZERO
    entry_qty: Decimal = ZERO
    exit_notional: Decimal = ZERO
    exit_qty: Decimal = ZERO
    gross: Decimal = ZERO
    fees: Decimal = ZERO
    funding: Decimal = ZERO
    ts_close_ns: int | None = None
    reason: str = ""
    fills: int = 0

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

    @property
    def pnl_pct(self) -> Decimal:
        """Net PnL over the notional entered (not over margin: leverage would inflate it)."""
        return self.pnl / self.entry_notional * HUNDRED if self.entry_notional else ZERO

    def duration_s(self, now_ns: int) -> float:
        end = self.ts_close_ns if self.ts_close_ns is not None else now_ns
        return max(0.0, (end - self.ts_open_ns) / 1e9)


def _sign(side: str) -> int:
    return 1 if side.upper() == "BUY" else -1


def build(fills: Iterable[Fill], funding: Sequence[Funding] = ()) -> list[RoundTrip]:
    """Round trips from ``fills`` (oldest first), oldest first; the last of a symbol may be open."""
    trips: list[RoundTrip] = []
    open_trip: dict[str, RoundTrip] = {}
    position: dict[str, Decimal] = {}
    for f in fills:
        pos = position.get(f.symbol, ZERO)
        signed = f.qty * _sign(f.side)
        remaining = f.qty
        trip = open_trip.get(f.symbol)
        if trip is not None and pos * signed < 0:
            # Reduces (and may flip): the part up to zero closes this trip.
            closing = min(remaining, abs(pos))
            share = closing / f.qty if f.qty else ZERO
            trip.exit_notional += closing * f.price
            trip.exit_qty += closing
            trip.gross += f.realized
            trip.fees += f.fee * share
            trip.fills += 1
            pos += closing * _sign(f.side)
            remaining -= closing
            if pos == 0:
                trip.ts_close_ns = f.ts_ns
                trip.reason = EXIT_REASONS.get(f.purpose, f.purpose or "signal")
                del open_trip[f.symbol]
            fee_left = f.fee - f.fee * share
        else:
            fee_left = f.fee
        if remaining > 0:
            trip = open_trip.get(f.symbol)
            if trip is None:
                trip = RoundTrip(
                    symbol=f.symbol,
                    direction="long" if _sign(f.side) > 0 else "short",
                    model_version=f.model_version,
                    ts_open_ns=f.ts_ns,
                )
                open_trip[f.symbol] = trip
                trips.append(trip)
            trip.entry_notional += remaining * f.price
            trip.entry_qty += remaining
            trip.fees += fee_left
            trip.fills += 1
            pos += remaining * _sign(f.side)
            trip.qty = max(trip.qty, abs(pos))
        position[f.symbol] = pos
    _add_funding(trips, funding)
    return trips


def _add_funding(trips: list[RoundTrip], funding: Sequence[Funding]) -> None:
    by_symbol: dict[str, list[RoundTrip]] = {}
    for t in trips:
        by_symbol.setdefault(t.symbol.upper(), []).append(t)
    for pay in funding:
        for t in by_symbol.get(pay.symbol.upper(), ()):
            end = t.ts_close_ns if t.ts_close_ns is not None else pay.ts_ns
            if t.ts_open_ns <= pay.ts_ns <= end:
                t.funding += pay.amount
                break


@dataclass
class Summary:
    """Figures over closed round trips of one symbol or one model."""

    key: str
    count: int = 0
    wins: int = 0
    gross_win: Decimal = ZERO
    gross_loss: Decimal = ZERO  # a positive number
    pnl: Decimal = ZERO
    fees: Decimal = ZERO
    funding: Decimal = ZERO
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def losses(self) -> int:
        return self.count - self.wins

    @property
    def hit_rate(self) -> Decimal | None:
        return Decimal(self.wins) / self.count * HUNDRED if self.count else None

    @property
    def profit_factor(self) -> Decimal | None:
        """Gross wins over gross losses; None without a loss (infinite) or without trips."""
        return self.gross_win / self.gross_loss if self.gross_loss else None

    @property
    def avg_win(self) -> Decimal | None:
        return self.gross_win / self.wins if self.wins else None

    @property
    def avg_loss(self) -> Decimal | None:
        return -self.gross_loss / self.losses if self.losses else None


def summarise(trips: Iterable[RoundTrip], by: str = "symbol") -> list[Summary]:
    """One :class:`Summary` per symbol (``by="symbol"``) or model (``by="model"``), plus "all"."""
    groups: dict[str, Summary] = {}
    total = Summary("all")
    for t in trips:
        if t.is_open:
            continue
        key = t.symbol if by == "symbol" else t.model_version
        for s in (groups.setdefault(key, Summary(key)), total):
            s.count += 1
            pnl = t.pnl
            if pnl > 0:
                s.wins += 1
                s.gross_win += pnl
            else:
                s.gross_loss -= pnl
            s.pnl += pnl
            s.fees += t.fees
            s.funding += t.funding
            s.reasons[t.reason] = s.reasons.get(t.reason, 0) + 1
    out = [groups[k] for k in sorted(groups)]
    return [*out, total] if len(out) > 1 else out
