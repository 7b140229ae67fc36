"""``GET /fapi/v1/exchangeInfo`` bodies in Binance's shape, synthesized from symbol specs."""

from __future__ import annotations

from collections.abc import Iterable

from app.sim.symbols import SymbolSpec, fmt_fixed

RATE_LIMITS: list[dict[str, object]] = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400},
    {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
]
_ONBOARD_MS = 1569398400000
_PERPETUAL_DELIVERY_MS = 4133404800000


def symbol_entry(spec: SymbolSpec) -> dict[str, object]:
    """One ``symbols[]`` entry, keys in Binance's order."""
    tick = spec.tick_str
    step = spec.step_str
    min_price = fmt_fixed(
        max(spec.tick, spec.start_price // 100 // spec.tick * spec.tick), spec.price_precision
    )
    max_price = str(max(1, spec.start_price * 100 // 10**spec.price_precision))
    return {
        "symbol": spec.symbol,
        "pair": spec.symbol,
        "contractType": "PERPETUAL",
        "deliveryDate": _PERPETUAL_DELIVERY_MS,
        "onboardDate": _ONBOARD_MS,
        "status": "TRADING",
        "maintMarginPercent": "2.5000",
        "requiredMarginPercent": "5.0000",
        "baseAsset": spec.base_asset,
        "quoteAsset": spec.quote_asset,
        "marginAsset": spec.quote_asset,
        "pricePrecision": spec.price_precision,
        "quantityPrecision": spec.qty_precision,
        "baseAssetPrecision": 8,
        "quotePrecision": 8,
        "underlyingType": "COIN",
        "underlyingSubType": [],
        "settlePlan": 0,
        "triggerProtect": "0.0500",
        "liquidationFee": "0.012500",
        "marketTakeBound": "0.05",
        "filters": [
            {
                "minPrice": min_price,
                "maxPrice": max_price,
                "filterType": "PRICE_FILTER",
                "tickSize": tick,
            },
            {
                "stepSize": step,
                "filterType": "LOT_SIZE",
                "maxQty": str(spec.max_qty),
                "minQty": step,
            },
            {
                "stepSize": step,
                "filterType": "MARKET_LOT_SIZE",
                "maxQty": str(spec.market_max_qty),
                "minQty": step,
            },
            {"limit": 200, "filterType": "MAX_NUM_ORDERS"},
            {"limit": 10, "filterType": "MAX_NUM_ALGO_ORDERS"},
            {"notional": str(spec.min_notional), "filterType": "MIN_NOTIONAL"},
            {
                "multiplierDown": "0.9500",
                "multiplierUp": "1.0500",
                "multiplierDecimal": "4",
                "filterType": "PERCENT_PRICE",
            },
        ],
        "orderTypes": [
            "LIMIT",
            "MARKET",
            "STOP",
            "STOP_MARKET",
            "TAKE_PROFIT",
            "TAKE_PROFIT_MARKET",
            "TRAILING_STOP_MARKET",
        ],
        "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
    }


def exchange_info(specs: Iterable[SymbolSpec], server_time_ms: int) -> dict[str, object]:
    """The whole body for ``specs``."""
    symbols = [symbol_entry(s) for s in specs]
    assets = sorted({str(s["marginAsset"]) for s in symbols} | {"USDT"})
    return {
        "timezone": "UTC",
        "serverTime": server_time_ms,
        "futuresType": "U_MARGINED",
        "rateLimits": RATE_LIMITS,
        "exchangeFilters": [],
        "assets": [
            {"asset": a, "marginAvailable": True, "autoAssetExchange": "-10000"} for a in assets
        ],
        "symbols": symbols,
    }
