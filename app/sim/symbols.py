"""Symbol specifications (precision, tick and step sizes, starting price) and number rendering.

Prices and quantities are integers in units of ``10**-precision``; the market works in whole ticks
and steps and renders Binance's decimal strings only when a frame is built.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

SYMBOL_RE = re.compile(r"^[a-z0-9]{2,30}$")
_QUOTES = ("USDT", "USDC", "BUSD")


def fmt_fixed(value: int, precision: int) -> str:
    """Render ``value * 10**-precision`` with exactly ``precision`` decimals."""
    if precision == 0:
        return str(value)
    sign = "-" if value < 0 else ""
    whole, frac = divmod(abs(value), 10**precision)
    return f"{sign}{whole}.{frac:0{precision}d}"


@dataclass(frozen=True)
class SymbolSpec:
    """One contract. ``tick``/``step``/``start_price`` are in units of ``10**-precision``."""

    symbol: str
    price_precision: int
    qty_precision: int
    tick: int
    step: int
    start_price: int
    min_notional: int = 5
    max_qty: int = 1_000_000
    market_max_qty: int = 100_000

    @property
    def stream_prefix(self) -> str:
        return self.symbol.lower()

    @property
    def base_asset(self) -> str:
        for quote in _QUOTES:
            if self.symbol.endswith(quote) and len(self.symbol) > len(quote):
                return self.symbol[: -len(quote)]
        return self.symbol

    @property
    def quote_asset(self) -> str:
        return self.symbol[len(self.base_asset) :] or "USDT"

    @property
    def start_ticks(self) -> int:
        return self.start_price // self.tick

    def price_str(self, ticks: int) -> str:
        return fmt_fixed(ticks * self.tick, self.price_precision)

    def qty_str(self, steps: int) -> str:
        return fmt_fixed(steps * self.step, self.qty_precision)

    @property
    def tick_str(self) -> str:
        return fmt_fixed(self.tick, self.price_precision)

    @property
    def step_str(self) -> str:
        return fmt_fixed(self.step, self.qty_precision)


KNOWN: dict[str, SymbolSpec] = {
    "btcusdt": SymbolSpec("BTCUSDT", 2, 3, 10, 1, 6_500_000, 100, 1000, 120),
    "ethusdt": SymbolSpec("ETHUSDT", 2, 3, 1, 1, 350_000, 20, 10_000, 2000),
}


def spec_for(symbol: str) -> SymbolSpec:
    """The spec of ``symbol`` (lower case): a known one, or one derived from the name's hash.

    Derived specs give five significant digits of price (tick = one unit of the last digit) and
    fewer quantity decimals for cheaper coins, roughly as Binance lists them.
    """
    if not SYMBOL_RE.match(symbol):
        raise ValueError(f"invalid symbol {symbol!r}: use lower-case letters and digits")
    known = KNOWN.get(symbol)
    if known is not None:
        return known
    digest = int.from_bytes(hashlib.sha256(symbol.encode()).digest()[:8], "big")
    exponent = digest % 6 - 2  # price magnitude 10**-2 .. 10**3
    mantissa_milli = 1000 + (digest >> 8) % 9000  # 1.000 .. 9.999
    price_precision = 4 - exponent
    qty_precision = max(0, min(3, exponent))
    return SymbolSpec(
        symbol=symbol.upper(),
        price_precision=price_precision,
        qty_precision=qty_precision,
        tick=1,
        step=1,
        start_price=mantissa_milli * 10,
    )
