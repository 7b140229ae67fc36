"""The simulated USD-M account: wallet, positions, fills, income, and the sums USD-M derives.

Money is :class:`~decimal.Decimal`, never float. Fills follow USD-M's arithmetic: commission is
the fill's notional times the taker (0.04 %) or maker (0.02 %) rate, in USDT, rounded to 8
decimals; adding to a position moves its entry price to the quantity-weighted average; reducing it
realizes ``closed qty * (fill price - entry) * direction``; unrealized PnL is
``amount * (mark - entry)``; initial margin is ``notional / leverage`` at the mark price; funding
pays ``-amount * mark * rate`` at each funding time. Margin follows :mod:`app.engine.margin`
(the library the paper exchange and the risk gate use too): per-symbol leverage brackets
(BTCUSDT's published tiers), maintenance margin ``notional × mmr − cum`` at the mark, Binance's
liquidation price for isolated and cross positions, and liquidation at the mark price (see
:meth:`app.sim.orders.Exchange.liquidate`). An isolated position's wallet is
``|amount| × entry / leverage`` (no margin added or removed). Simplifications: one USDT asset;
hedge-mode positions use the one-way formula per side.

Everything lives in memory: a simulator restart starts a fresh account (engine disconnects do not).
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from app.binance import margin
from app.sim.config import TradingSettings
from app.sim.symbols import SymbolSpec

ASSET = "USDT"
TAKER_RATE = Decimal("0.0004")
MAKER_RATE = Decimal("0.0002")
ZERO = Decimal(0)
_E8 = Decimal("0.00000001")


def dec_str(value: Decimal, places: int) -> str:
    """``value`` with exactly ``places`` decimals (half up), never ``-0``."""
    q = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    if q == 0:
        q = abs(q)
    return f"{q:f}"


def money(value: Decimal) -> str:
    """A USDT amount as Binance renders balances: 8 decimals."""
    return dec_str(value, 8)


def round8(value: Decimal) -> Decimal:
    return value.quantize(_E8, rounding=ROUND_HALF_UP)


@dataclass
class Position:
    """One position: ``side`` BOTH (one-way) or LONG/SHORT (hedge); ``amt`` signed."""

    symbol: str
    side: str
    amt: Decimal = ZERO
    entry: Decimal = ZERO
    realized: Decimal = ZERO
    update_time: int = 0


@dataclass
class SymbolSettings:
    leverage: int
    isolated: bool = False


@dataclass(frozen=True)
class Fill:
    """One execution of one of our orders."""

    trade_id: int
    order_id: int
    client_order_id: str
    symbol: str
    side: str
    position_side: str
    price: Decimal
    qty: Decimal
    quote: Decimal
    commission: Decimal
    realized_pnl: Decimal
    maker: bool
    time: int
    price_precision: int
    qty_precision: int

    def user_trade(self) -> dict[str, object]:
        """``GET /fapi/v1/userTrades`` entry."""
        return {
            "buyer": self.side == "BUY",
            "commission": money(self.commission),
            "commissionAsset": ASSET,
            "id": self.trade_id,
            "maker": self.maker,
            "orderId": self.order_id,
            "price": dec_str(self.price, self.price_precision),
            "qty": dec_str(self.qty, self.qty_precision),
            "quoteQty": money(self.quote),
            "realizedPnl": money(self.realized_pnl),
            "side": self.side,
            "positionSide": self.position_side,
            "symbol": self.symbol,
            "time": self.time,
        }

    def sim_view(self) -> dict[str, object]:
        """``GET /_sim/fills`` entry."""
        body = self.user_trade()
        body["clientOrderId"] = self.client_order_id
        return body


@dataclass(frozen=True)
class Income:
    tran_id: int
    symbol: str
    income_type: str
    amount: Decimal
    time: int
    trade_id: str = ""

    def as_dict(self) -> dict[str, object]:
        """``GET /fapi/v1/income`` entry."""
        return {
            "symbol": self.symbol,
            "incomeType": self.income_type,
            "income": money(self.amount),
            "asset": ASSET,
            "info": self.income_type,
            "time": self.time,
            "tranId": self.tran_id,
            "tradeId": self.trade_id,
        }


@dataclass
class Account:
    """Balances, positions and history of the one simulated account."""

    specs: dict[str, SymbolSpec]
    settings_: TradingSettings
    seed: int
    wallet: Decimal = ZERO
    dual: bool = False
    update_time: int = 0
    positions: dict[tuple[str, str], Position] = field(default_factory=dict)
    symbols: dict[str, SymbolSettings] = field(default_factory=dict)
    marks: dict[str, Decimal] = field(default_factory=dict)
    fills: list[Fill] = field(default_factory=list)
    income: list[Income] = field(default_factory=list)
    alias: str = ""
    brackets: dict[str, margin.Brackets] = field(default_factory=dict)
    _next_trade: int = 0
    _next_tran: int = 0

    def __post_init__(self) -> None:
        self.wallet = Decimal(self.settings_.balance_usdt)
        rng = random.Random(f"sim:{self.seed}:account")
        self._next_trade = rng.randrange(10**8, 10**9)
        self._next_tran = rng.randrange(10**9, 10**10)
        self.alias = "".join(rng.choice(string.ascii_letters) for _ in range(4))
        for symbol in self.specs:
            self.brackets.setdefault(symbol, margin.default_brackets(symbol))

    # -- lookups -------------------------------------------------------------------------------

    def settings(self, symbol: str) -> SymbolSettings:
        s = self.symbols.get(symbol)
        if s is None:
            s = self.symbols[symbol] = SymbolSettings(self.settings_.default_leverage)
        return s

    def sides(self) -> tuple[str, ...]:
        return ("LONG", "SHORT") if self.dual else ("BOTH",)

    def position(self, symbol: str, side: str) -> Position:
        key = (symbol, side)
        pos = self.positions.get(key)
        if pos is None:
            pos = self.positions[key] = Position(symbol, side)
        return pos

    def has_position(self, symbol: str | None = None) -> bool:
        return any(p.amt != 0 for p in self.positions.values() if symbol in (None, p.symbol))

    # -- derived sums --------------------------------------------------------------------------

    def mark(self, symbol: str) -> Decimal:
        return self.marks.get(symbol, ZERO)

    def unrealized(self, pos: Position) -> Decimal:
        if pos.amt == 0:
            return ZERO
        return pos.amt * (self.mark(pos.symbol) - pos.entry)

    def position_im(self, pos: Position) -> Decimal:
        return abs(pos.amt) * self.mark(pos.symbol) / self.settings(pos.symbol).leverage

    def isolated_wallet(self, pos: Position) -> Decimal:
        if pos.amt == 0 or not self.settings(pos.symbol).isolated:
            return ZERO
        return abs(pos.amt) * pos.entry / self.settings(pos.symbol).leverage

    def cross_totals(self) -> tuple[Decimal, Decimal, Decimal]:
        """(cross unrealized PnL, cross position initial margin, isolated wallets)."""
        upnl = im = iso = ZERO
        for pos in self.positions.values():
            if pos.amt == 0:
                continue
            if self.settings(pos.symbol).isolated:
                iso += self.isolated_wallet(pos)
            else:
                upnl += self.unrealized(pos)
                im += self.position_im(pos)
        return upnl, im, iso

    def available(self, open_order_im: Decimal) -> Decimal:
        """Available balance: what new positions may still use as initial margin."""
        upnl, im, iso = self.cross_totals()
        return self.wallet - iso + upnl - im - open_order_im

    def symbol_brackets(self, symbol: str) -> margin.Brackets:
        found = self.brackets.get(symbol)
        if found is None:
            found = self.brackets[symbol] = margin.default_brackets(symbol)
        return found

    def max_notional(self, symbol: str) -> Decimal:
        """``maxNotionalValue``: the largest position the symbol's leverage allows."""
        return margin.max_notional(self.symbol_brackets(symbol), self.settings(symbol).leverage)

    def maint(self, pos: Position) -> Decimal:
        """Maintenance margin of ``pos`` at the mark (its bracket's ``mmr`` and ``cum``)."""
        if pos.amt == 0:
            return ZERO
        notional = abs(pos.amt) * self.mark(pos.symbol)
        return margin.maintenance_margin(self.symbol_brackets(pos.symbol), notional)

    def holding(self, pos: Position) -> margin.Holding:
        return margin.Holding(
            pos.symbol, pos.amt, pos.entry, self.mark(pos.symbol), self.isolated_wallet(pos)
        )

    def liquidation_price(self, pos: Position) -> Decimal | None:
        """Binance's liquidation price of ``pos`` (None when flat or it cannot be liquidated)."""
        if pos.amt == 0:
            return None
        if self.settings(pos.symbol).isolated:
            return margin.isolated_liquidation_price(
                pos.amt, pos.entry, self.isolated_wallet(pos), self.symbol_brackets(pos.symbol)
            )
        _, _, iso = self.cross_totals()
        others = [
            self.holding(p)
            for p in self.positions.values()
            if p is not pos and p.amt != 0 and not self.settings(p.symbol).isolated
        ]
        brackets = {h.symbol: self.symbol_brackets(h.symbol) for h in others}
        brackets[pos.symbol] = self.symbol_brackets(pos.symbol)
        return margin.cross_liquidation_price(
            self.holding(pos), self.wallet - iso, others, brackets
        )

    def cross_maint(self) -> Decimal:
        return sum(
            (
                self.maint(p)
                for p in self.positions.values()
                if p.amt != 0 and not self.settings(p.symbol).isolated
            ),
            ZERO,
        )

    def total_maint(self) -> Decimal:
        return sum((self.maint(p) for p in self.positions.values()), ZERO)

    def to_liquidate(self) -> list[Position]:
        """Positions whose margin no longer covers their maintenance margin, at the marks now.

        An isolated position is judged alone (its wallet + its unrealised PnL); the cross
        positions together (cross wallet + every cross unrealised PnL), and go together.
        """
        doomed: list[Position] = []
        cross: list[Position] = []
        for pos in self.positions.values():
            if pos.amt == 0:
                continue
            if self.settings(pos.symbol).isolated:
                balance = self.isolated_wallet(pos) + self.unrealized(pos)
                if margin.should_liquidate(balance, self.maint(pos)):
                    doomed.append(pos)
            else:
                cross.append(pos)
        if cross:
            upnl, _, iso = self.cross_totals()
            if margin.should_liquidate(self.wallet - iso + upnl, self.cross_maint()):
                doomed.extend(cross)
        return doomed

    def remaining_margin(self, pos: Position, realized: Decimal) -> Decimal:
        """Margin left once ``pos`` is closed with ``realized`` PnL (before any fee)."""
        if self.settings(pos.symbol).isolated:
            return self.isolated_wallet(pos) + realized
        upnl, _, iso = self.cross_totals()
        return self.wallet - iso + upnl - self.unrealized(pos) + realized

    # -- changes -------------------------------------------------------------------------------

    def _add_income(self, symbol: str, kind: str, amount: Decimal, t: int, trade_id: str) -> None:
        self._next_tran += 1
        self.income.append(Income(self._next_tran, symbol, kind, amount, t, trade_id))

    def apply_fill(
        self,
        spec: SymbolSpec,
        order_id: int,
        client_order_id: str,
        side: str,
        position_side: str,
        price: Decimal,
        qty: Decimal,
        maker: bool,
        t: int,
        fee: Decimal | None = None,
        fee_income: str = "COMMISSION",
    ) -> Fill:
        """Book one fill: position, realized PnL, commission, wallet, income, trade history.

        ``fee`` replaces the maker/taker commission (a liquidation's clearance fee, booked as
        income of type ``fee_income``).
        """
        pos = self.position(spec.symbol, position_side)
        signed = qty if side == "BUY" else -qty
        realized = round8(_trade(pos, signed, price))
        quote = price * qty
        if fee is None:
            commission = round8(quote * (MAKER_RATE if maker else TAKER_RATE))
        else:
            commission = round8(fee)
        pos.realized += realized
        pos.update_time = t
        self.wallet += realized - commission
        self.update_time = t
        self._next_trade += 1
        fill = Fill(
            self._next_trade,
            order_id,
            client_order_id,
            spec.symbol,
            side,
            position_side,
            price,
            qty,
            quote,
            commission,
            realized,
            maker,
            t,
            spec.price_precision,
            spec.qty_precision,
        )
        self.fills.append(fill)
        if realized:
            self._add_income(spec.symbol, "REALIZED_PNL", realized, t, str(fill.trade_id))
        if commission:
            self._add_income(spec.symbol, fee_income, -commission, t, str(fill.trade_id))
        return fill

    def fund(self, symbol: str, rate: Decimal, t: int) -> list[Position]:
        """Settle funding for ``symbol`` at ``rate``; return the positions that paid or got paid."""
        paid: list[Position] = []
        mark = self.mark(symbol)
        for pos in self.positions.values():
            if pos.symbol != symbol or pos.amt == 0:
                continue
            fee = round8(-pos.amt * mark * rate)
            if not fee:
                continue
            self.wallet += fee
            self.update_time = t
            self._add_income(symbol, "FUNDING_FEE", fee, t, "")
            paid.append(pos)
        return paid


def _trade(pos: Position, signed: Decimal, price: Decimal) -> Decimal:
    """Apply a signed quantity at ``price`` to ``pos``; return the realized PnL (unrounded)."""
    amt = pos.amt
    if amt == 0 or (amt > 0) == (signed > 0):
        new = amt + signed
        pos.entry = (abs(amt) * pos.entry + abs(signed) * price) / abs(new)
        pos.amt = new
        return ZERO
    closed = min(abs(signed), abs(amt))
    direction = 1 if amt > 0 else -1
    realized = closed * (price - pos.entry) * direction
    new = amt + signed
    if new == 0:
        pos.entry = ZERO
    elif (new > 0) != (amt > 0):
        pos.entry = price
    pos.amt = new
    return realized
