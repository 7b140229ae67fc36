"""A symbol's trading rules from ``GET /fapi/v1/exchangeInfo``: tick size, step size, minimum
notional and the precisions an order's numbers are written with.

Every side that prices or sizes an order reads them from here: the risk gate, the paper and live
venues, the backtest and the shadow sandboxes.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any


@dataclass(frozen=True)
class SymbolFilters:
    """A symbol's trading rules from ``exchangeInfo``: prices are multiples of ``tick_size``,
    quantities of ``step_size``, and an order's notional must reach ``min_notional``."""

    symbol: str
    tick_size: Decimal
    step_size: Decimal
    min_notional: Decimal
    price_precision: int
    quantity_precision: int


def parse_symbol_filters(exchange_info: dict[str, Any]) -> dict[str, SymbolFilters]:
    """``exchangeInfo``'s ``symbols`` → :class:`SymbolFilters` by symbol (upper case).

    Symbols lacking one of PRICE_FILTER, LOT_SIZE, MIN_NOTIONAL are left out (nothing sensible
    can be traded on them).
    """
    result: dict[str, SymbolFilters] = {}
    for entry in exchange_info.get("symbols", ()):
        filters = {f.get("filterType"): f for f in entry.get("filters", ())}
        try:
            result[entry["symbol"]] = SymbolFilters(
                symbol=entry["symbol"],
                tick_size=Decimal(filters["PRICE_FILTER"]["tickSize"]),
                step_size=Decimal(filters["LOT_SIZE"]["stepSize"]),
                # USD-M calls it "notional"; spot's older filter called it "minNotional".
                min_notional=Decimal(
                    filters["MIN_NOTIONAL"].get("notional")
                    or filters["MIN_NOTIONAL"]["minNotional"]
                ),
                price_precision=int(entry.get("pricePrecision", 8)),
                quantity_precision=int(entry.get("quantityPrecision", 8)),
            )
        except (KeyError, ArithmeticError, TypeError, ValueError):
            continue
    return result
