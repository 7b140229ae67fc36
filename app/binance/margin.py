"""Binance USD-M margin rules, once: brackets, margins, margin ratio, liquidation price and fee.

Used by the simulator (:mod:`app.sim`), the paper exchange and the risk gate, so that all three
agree on where a position dies. Everything is :class:`~decimal.Decimal`; nothing here rounds
(callers round to the exchange's 8 decimals or tick where they render).

The rules, as Binance documents them ("How to Calculate Liquidation Price of USDⓈ-M Futures
Contracts", binance.com/en/support/faq/b3c689c1f50a44cabb3a84e663b81d93, and
``GET /fapi/v1/leverageBracket``):

- **Brackets** (tiers) by position notional: ``[notionalFloor, notionalCap)``, the highest initial
  leverage allowed in the tier, its maintenance margin rate ``mmr`` and maintenance amount
  ``cum``. ``cum`` follows from the tiers: ``cum_n = floor_n × (mmr_n − mmr_(n−1)) + cum_(n−1)``
  (the FAQ: level 3 = 250,000 × (1 % − 0.5 %) + 50 = 1,300), so that the maintenance margin
  ``notional × mmr − cum`` is continuous across tiers.
- **Initial margin** ``notional / leverage``. The leverage allowed for a position is that of the
  bracket its notional falls in; a leverage L allows a notional up to the cap of the last bracket
  whose initial leverage is at least L (``maxNotionalValue``).
- **Margin ratio** ``maintenance margin / margin balance``; at 100 % the position is liquidated.
- **Liquidation price** (one-way mode, ``BOTH`` position)::

      LP = (WB − TMM + UPNL + cum − side × qty × EP) / (qty × mmr − side × qty)

  with ``side`` +1 long / −1 short, ``qty`` the absolute size, ``EP`` the entry price. Cross:
  ``WB`` is the cross wallet balance, ``TMM``/``UPNL`` the maintenance margin and unrealised PnL
  of every *other* cross position. Isolated: ``WB`` is the position's isolated wallet and
  ``TMM = UPNL = 0``. ``mmr``/``cum`` are those of the bracket the notional *at the liquidation
  price* falls in, so each bracket is tried until the result lands in it. A result ≤ 0 means the
  position cannot be liquidated (the UI shows "--"): :func:`liquidation_price` returns None.
- **Liquidation** happens at the mark price when the margin balance (isolated: wallet + the
  position's unrealised PnL; cross: cross wallet + all cross unrealised PnL) is at or below the
  maintenance margin. The exchange closes the position and charges the liquidation clearance
  fee, ``notional × liquidationFee`` (exchangeInfo's per-symbol ``liquidationFee``: 1.2 % for
  BTCUSDT in the recorded 2021 exchangeInfo), out of what margin is left: never more than
  remains (the insurance fund takes the rest, and covers a shortfall).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

ZERO = Decimal(0)
ONE = Decimal(1)
# Binance renders the last bracket's cap as the largest signed 64-bit integer.
UNCAPPED = Decimal(9_223_372_036_854_775_807)
# exchangeInfo "liquidationFee" of BTCUSDT (reference/market-data, recorded 2021-07-22).
DEFAULT_LIQUIDATION_FEE = Decimal("0.012")


@dataclass(frozen=True, slots=True)
class Bracket:
    """One notional tier of ``GET /fapi/v1/leverageBracket``."""

    bracket: int
    initial_leverage: int
    notional_floor: Decimal
    notional_cap: Decimal
    maint_margin_ratio: Decimal
    cum: Decimal

    def as_json(self) -> dict[str, object]:
        """The tier in Binance's response shape (numbers, as Binance sends them)."""
        return {
            "bracket": self.bracket,
            "initialLeverage": self.initial_leverage,
            "notionalCap": _number(self.notional_cap),
            "notionalFloor": _number(self.notional_floor),
            "maintMarginRatio": _number(self.maint_margin_ratio),
            "cum": _number(self.cum),
        }


Brackets = tuple[Bracket, ...]


def _number(value: Decimal) -> int | float:
    # Binance sends these as JSON numbers; integers stay integers so caps are exact.
    return int(value) if value == value.to_integral_value() else float(value)


def ladder(tiers: Sequence[tuple[int | str, int | str, int, str]]) -> Brackets:
    """Brackets from ``(floor, cap, max leverage, mmr)`` rows, ``cum`` by Binance's formula."""
    out: list[Bracket] = []
    cum = ZERO
    prev_mmr = ZERO
    for n, (floor, cap, leverage, mmr_text) in enumerate(tiers, start=1):
        mmr = Decimal(mmr_text)
        cum = Decimal(floor) * (mmr - prev_mmr) + cum
        if cum == cum.to_integral_value():
            cum = Decimal(int(cum))  # 1300, not 1300.000: it is rendered as Binance sends it
        out.append(Bracket(n, leverage, Decimal(floor), Decimal(cap), mmr, cum))
        prev_mmr = mmr
    return tuple(out)


# BTCUSDT's tiers as Binance's FAQ tabulates them (the FAQ's own examples: 264,000 USDT is in the
# 1 % tier; 500,000 USDT has maintenance amount 1,300).
BTCUSDT_BRACKETS: Brackets = ladder(
    (
        (0, 50_000, 125, "0.004"),
        (50_000, 250_000, 100, "0.005"),
        (250_000, 1_000_000, 50, "0.01"),
        (1_000_000, 5_000_000, 20, "0.025"),
        (5_000_000, 20_000_000, 10, "0.05"),
        (20_000_000, 50_000_000, 5, "0.1"),
        (50_000_000, 100_000_000, 4, "0.125"),
        (100_000_000, 200_000_000, 3, "0.15"),
        (200_000_000, 300_000_000, 2, "0.25"),
        (300_000_000, str(UNCAPPED), 1, "0.5"),
    )
)
# Every other symbol: the first tier of the docs' ETHUSDT example (75x, 10,000, 0.65 %), then a
# ladder of the same shape as BTCUSDT's. Illustrative, not a published table.
ALT_BRACKETS: Brackets = ladder(
    (
        (0, 10_000, 75, "0.0065"),
        (10_000, 100_000, 50, "0.01"),
        (100_000, 500_000, 25, "0.02"),
        (500_000, 1_000_000, 10, "0.05"),
        (1_000_000, 2_000_000, 5, "0.1"),
        (2_000_000, 5_000_000, 4, "0.125"),
        (5_000_000, 10_000_000, 3, "0.15"),
        (10_000_000, 20_000_000, 2, "0.25"),
        (20_000_000, str(UNCAPPED), 1, "0.5"),
    )
)


def default_brackets(symbol: str) -> Brackets:
    """The simulator's (and an unwired paper exchange's) brackets for ``symbol``."""
    return BTCUSDT_BRACKETS if symbol.upper() == "BTCUSDT" else ALT_BRACKETS


def parse_brackets(body: object) -> dict[str, Brackets]:
    """``GET /fapi/v1/leverageBracket`` (a list, or one object when a symbol was sent) by symbol.

    Raises ValueError on a body of the wrong shape.
    """
    rows = [body] if isinstance(body, dict) else body
    if not isinstance(rows, list):
        raise ValueError("leverageBracket: expected a list or an object")
    out: dict[str, Brackets] = {}
    for row in rows:
        if not isinstance(row, dict) or not isinstance(row.get("brackets"), list):
            raise ValueError(f"leverageBracket: bad row {row!r}")
        tiers = [
            Bracket(
                int(b["bracket"]),
                int(b["initialLeverage"]),
                Decimal(str(b["notionalFloor"])),
                Decimal(str(b["notionalCap"])),
                Decimal(str(b["maintMarginRatio"])),
                Decimal(str(b["cum"])),
            )
            for b in row["brackets"]
        ]
        tiers.sort(key=lambda b: b.notional_floor)
        if not tiers:
            raise ValueError(f"leverageBracket: {row.get('symbol')} has no brackets")
        out[str(row["symbol"])] = tuple(tiers)
    return out


def bracket_for(brackets: Brackets, notional: Decimal) -> Bracket:
    """The tier ``|notional|`` falls in (``floor <= n < cap``; the last tier beyond its cap)."""
    n = abs(notional)
    for b in brackets:
        if n < b.notional_cap:
            return b
    return brackets[-1]


def max_leverage(brackets: Brackets, notional: Decimal) -> int:
    """The highest initial leverage a position of ``notional`` may use."""
    return bracket_for(brackets, notional).initial_leverage


def max_notional(brackets: Brackets, leverage: int) -> Decimal:
    """The largest position notional ``leverage`` allows (Binance's ``maxNotionalValue``)."""
    allowed = [b.notional_cap for b in brackets if b.initial_leverage >= leverage]
    return max(allowed) if allowed else ZERO


def initial_margin(notional: Decimal, leverage: int) -> Decimal:
    return abs(notional) / leverage


def maintenance_margin(brackets: Brackets, notional: Decimal) -> Decimal:
    """``|notional| × mmr − cum`` of the tier the notional falls in."""
    b = bracket_for(brackets, notional)
    return abs(notional) * b.maint_margin_ratio - b.cum


def margin_ratio(maint: Decimal, margin_balance: Decimal) -> Decimal:
    """Maintenance margin over margin balance; ``Infinity`` when nothing is left to cover it."""
    if maint <= 0:
        return ZERO
    if margin_balance <= 0:
        return Decimal("Infinity")
    return maint / margin_balance


def liquidation_price(
    *,
    wallet: Decimal,
    qty: Decimal,
    entry: Decimal,
    brackets: Brackets,
    other_maint: Decimal = ZERO,
    other_upnl: Decimal = ZERO,
) -> Decimal | None:
    """Binance's one-way liquidation price for a position of signed ``qty`` at ``entry``.

    Cross: ``wallet`` is the cross wallet balance and ``other_*`` the other cross positions'.
    Isolated: ``wallet`` is the isolated wallet and ``other_*`` stay 0 (see
    :func:`isolated_liquidation_price`). None when flat or when it cannot be liquidated.
    """
    if not qty:
        return None
    side = 1 if qty > 0 else -1
    size = abs(qty)
    base = wallet - other_maint + other_upnl - side * size * entry
    candidates: list[Decimal] = []
    for b in brackets:
        denominator = size * b.maint_margin_ratio - side * size
        if not denominator:
            continue
        lp = (base + b.cum) / denominator
        candidates.append(lp)
        if lp > 0 and b.notional_floor <= size * lp < b.notional_cap:
            return lp
    # No tier agrees with its own result (e.g. the notional beyond every cap): the first
    # tier's answer, or none when even that is not positive.
    first = candidates[0] if candidates else ZERO
    return first if first > 0 else None


def isolated_wallet(qty: Decimal, entry: Decimal, leverage: int) -> Decimal:
    """The margin an isolated position holds when opened at ``leverage`` (no margin added)."""
    return abs(qty) * entry / leverage


def isolated_liquidation_price(
    qty: Decimal, entry: Decimal, wallet: Decimal, brackets: Brackets
) -> Decimal | None:
    """Liquidation price of an isolated position holding ``wallet`` of margin."""
    return liquidation_price(wallet=wallet, qty=qty, entry=entry, brackets=brackets)


def should_liquidate(margin_balance: Decimal, maint: Decimal) -> bool:
    """True when the margin balance no longer covers the maintenance margin."""
    return maint > 0 and margin_balance <= maint


def liquidation_fee(notional: Decimal, rate: Decimal, remaining: Decimal) -> Decimal:
    """The clearance fee: ``|notional| × rate``, but never more than the margin ``remaining``."""
    return max(ZERO, min(abs(notional) * rate, remaining))


@dataclass(frozen=True, slots=True)
class Holding:
    """One position as the account-level sums need it: signed qty, entry, mark, margin mode."""

    symbol: str
    qty: Decimal
    entry: Decimal
    mark: Decimal
    isolated_wallet: Decimal = ZERO  # > 0 only for an isolated position

    @property
    def notional(self) -> Decimal:
        return abs(self.qty) * self.mark

    @property
    def unrealized(self) -> Decimal:
        return self.qty * (self.mark - self.entry)


def cross_liquidation_price(
    holding: Holding,
    cross_wallet: Decimal,
    others: Iterable[Holding],
    brackets: Mapping[str, Brackets],
) -> Decimal | None:
    """Cross liquidation price of ``holding`` given the other cross positions ``others``."""
    tmm = upnl = ZERO
    for other in others:
        if other.isolated_wallet or not other.qty:
            continue
        tmm += maintenance_margin(brackets[other.symbol], other.notional)
        upnl += other.unrealized
    return liquidation_price(
        wallet=cross_wallet,
        qty=holding.qty,
        entry=holding.entry,
        brackets=brackets[holding.symbol],
        other_maint=tmm,
        other_upnl=upnl,
    )


@dataclass(frozen=True, slots=True)
class MarginSettings:
    """How an account is margined: one leverage and margin type for every symbol (as
    ``LiveConfig.leverage``/``margin_type`` set them), the brackets, the clearance fee rate."""

    leverage: int
    isolated: bool
    brackets: Mapping[str, Brackets]
    liquidation_fee: Decimal = DEFAULT_LIQUIDATION_FEE

    def for_symbol(self, symbol: str) -> Brackets:
        found = self.brackets.get(symbol)
        return found if found is not None else default_brackets(symbol)

    def leverage_problem(self, symbol: str) -> str | None:
        """Why the leverage cannot be used on ``symbol`` (Binance's -4028), or None."""
        top = self.for_symbol(symbol)[0].initial_leverage
        if not 1 <= self.leverage <= top:
            return f"leverage {self.leverage} is not valid for {symbol} (brackets allow 1..{top})"
        return None
