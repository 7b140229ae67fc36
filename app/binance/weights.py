"""The request weight Binance USD-M charges per REST call, once for every side that counts it.

The client budgets against it (:mod:`app.binance.transport`), the history download paces itself by
it (:mod:`app.models.download`) and the simulator charges it (:mod:`app.sim.ratelimit`): one table,
so the three cannot drift apart. Figures from Binance's USD-M docs; anything not listed weighs 1.
"""

from __future__ import annotations

from collections.abc import Mapping

_WEIGHTS: dict[tuple[str, str], int] = {
    ("GET", "/fapi/v2/account"): 5,
    ("GET", "/fapi/v2/balance"): 5,
    ("GET", "/fapi/v2/positionRisk"): 5,
    ("GET", "/fapi/v1/userTrades"): 5,
    ("GET", "/fapi/v1/income"): 30,
    ("GET", "/fapi/v1/positionSide/dual"): 30,
    ("GET", "/fapi/v1/aggTrades"): 20,
}
_KLINE_PATHS = frozenset(
    {"/fapi/v1/klines", "/fapi/v1/markPriceKlines", "/fapi/v1/indexPriceKlines"}
)
# (largest limit, weight) for GET /fapi/v1/depth; the default limit is 500.
_DEPTH_WEIGHTS = ((50, 2), (100, 5), (500, 10), (1000, 20))
_DEFAULT_LIMIT = 500


def _limit(params: Mapping[str, str | int]) -> int:
    text = str(params.get("limit", ""))
    return int(text) if text.isdigit() else _DEFAULT_LIMIT


def request_weight(method: str, path: str, params: Mapping[str, str | int] | None = None) -> int:
    """The weight of one request (depth and klines by ``limit``; openOrders without a
    ``symbol`` weighs 40)."""
    weight = _WEIGHTS.get((method, path))
    if weight is not None:
        return weight
    params = params or {}
    if path == "/fapi/v1/depth":
        limit = _limit(params)
        return next((w for top, w in _DEPTH_WEIGHTS if limit <= top), 20)
    if path in _KLINE_PATHS:
        limit = _limit(params)
        return 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10
    if path == "/fapi/v1/openOrders" and method == "GET" and "symbol" not in params:
        return 40
    return 1
