"""Numbers as a trader reads them: a price to its symbol's tick, a quantity to its step, money in
the account's currency to the cent.

One function, :func:`fmt_number`, behind the templates' one filter ``num``::

    {{ fill.price|num("price", fill.symbol) }}   43,123.1      (BTCUSDT's tick is 0.10)
    {{ fill.qty|num("qty", fill.symbol) }}       0.015         (its step is 0.001)
    {{ trip.pnl|num("pnl") }}                    +12.30        (signed: a gain or a loss)
    {{ equity|num("money") }}                    10,012.34

The tick and step sizes are the exchange's (``exchangeInfo``), which the engine reports in
``status`` (:class:`app.contract.SymbolRules`); the filter reads them from the page's ``engine``
reply, which every logged-in page has. A symbol the engine does not report (the engine is down,
an old fill of a symbol no longer traded) falls back to the digits the value carries, trimmed.
Values stay :class:`~decimal.Decimal` until they are text.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Literal

from jinja2 import pass_context
from jinja2.runtime import Context

from app import contract

# USD-M futures: the account (margin, PnL, fees, funding) is in USDT.
ACCOUNT_CURRENCY = "USDT"
MONEY_PLACES = 2
NONE = "—"

Kind = Literal["price", "qty", "money", "pnl"]
KINDS: tuple[Kind, ...] = ("price", "qty", "money", "pnl")


def places_of(step: Decimal) -> int:
    """Decimals a grid needs: 0.10 -> 1, 0.001 -> 3, 1 -> 0, 10 -> 0."""
    exp = step.normalize().as_tuple().exponent
    return max(0, -exp) if isinstance(exp, int) else 0


def _decimal(value: object) -> Decimal | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        dec = value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return dec if dec.is_finite() else None


def _fixed(dec: Decimal, places: int) -> str:
    text = f"{dec.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP):,}"
    # Zero after rounding is neither a gain nor a loss: never "-0.00".
    return text.lstrip("-") if text.strip("-0.,") == "" else text


def _carried_places(dec: Decimal, low: int, high: int) -> int:
    """Without a grid: the digits the value carries (trailing zeros dropped), within bounds."""
    exp = dec.normalize().as_tuple().exponent
    return min(max(-exp if isinstance(exp, int) else 0, low), high)


def fmt_number(value: object, kind: Kind, rules: contract.SymbolRules | None = None) -> str:
    """``value`` as ``kind`` (see the module docstring); ``rules``: the symbol's grid, if known."""
    dec = _decimal(value)
    if dec is None:
        return NONE
    if kind == "money":
        return _fixed(dec, MONEY_PLACES)
    if kind == "pnl":
        text = _fixed(dec, MONEY_PLACES)
        return text if text.startswith("-") or text.strip("0.,") == "" else "+" + text
    if kind == "price":
        if rules is not None:
            return _fixed(dec, places_of(rules.tick_size))
        size = abs(dec)
        return _fixed(dec, _carried_places(dec, 2, 2 if size >= 100 else 4 if size >= 1 else 8))
    if kind == "qty":
        if rules is not None:
            return _fixed(dec, places_of(rules.step_size))
        return _fixed(dec, _carried_places(dec, 0, 8))
    raise ValueError(f"unknown number kind {kind!r}; one of {', '.join(KINDS)}")


def rules_in(context: Mapping[str, Any] | Context) -> Mapping[str, contract.SymbolRules]:
    """The symbols' rules from the page's ``engine`` reply (empty when the engine is down)."""
    engine = context.get("engine")
    status = getattr(engine, "result", None)
    rules: Mapping[str, contract.SymbolRules] = getattr(status, "rules", None) or {}
    return rules


@pass_context
def num_filter(context: Context, value: object, kind: Kind, symbol: str = "") -> str:
    """The templates' ``num`` filter: :func:`fmt_number` with the symbol's rules looked up."""
    rules = rules_in(context).get(str(symbol).upper()) if symbol else None
    return fmt_number(value, kind, rules)
