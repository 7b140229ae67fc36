"""Binance's historical market-data endpoints, served from the simulated market's past.

``GET /fapi/v1/aggTrades`` (by ``fromId`` or a time window of at most an hour),
``GET /fapi/v1/fundingRate``, ``GET /fapi/v1/markPriceKlines`` and ``GET /fapi/v1/indexPriceKlines``
(``pair``), with Binance's parameters, limits and errors. The data is :mod:`app.sim.history`'s;
replay mode has no market and answers empty lists, as its ``klines`` does. Handlers are
module-level functions that find the simulator in the lifespan state
(:func:`~app.sim.state.sim_of`).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from app.sim.apierror import ApiError
from app.sim.history import SymbolHistory
from app.sim.klines import INTERVALS_MS, KlineQuery
from app.sim.rest import MAX_KLINES, _bad_value, _int_param, _mandatory, json_response
from app.sim.state import SimState, sim_of

MAX_AGG_TRADES = 1000
MAX_FUNDING = 1000
_HOUR_MS = 3_600_000


def _history_of(request: Request, state: SimState, param: str = "symbol") -> SymbolHistory | None:
    symbol = _mandatory(request, param).upper()
    if symbol not in state.specs:
        raise ApiError(-1121, "Invalid symbol.")
    market = state.markets.get(symbol)
    if market is None:
        return None
    found = state.histories.get(symbol)
    if found is None:
        found = state.histories[symbol] = SymbolHistory(market, state.config.seed)
    return found


def _limit_of(request: Request, default: int, maximum: int) -> int:
    limit = _int_param(request, "limit")
    limit = default if limit is None else limit
    if not 1 <= limit <= maximum:
        raise _bad_value("limit")
    return limit


def _window_of(request: Request) -> tuple[int | None, int | None]:
    start = _int_param(request, "startTime")
    end = _int_param(request, "endTime")
    if start is not None and end is not None and start > end:
        raise ApiError(-1023, "Start time is greater than end time.")
    return start, end


async def agg_trades(request: Request) -> Response:
    history = _history_of(request, sim_of(request))
    limit = _limit_of(request, 500, MAX_AGG_TRADES)
    from_id = _int_param(request, "fromId")
    start, end = _window_of(request)
    if start is not None and end is not None and end - start > _HOUR_MS:
        raise ApiError(-1127, "More than 1 hours between startTime and endTime.")
    if history is None:
        return json_response([])
    rows = history.agg_trades(from_id, start, end, limit)
    return json_response([history.render_trade(t) for t in rows])


async def funding_rate(request: Request) -> Response:
    state = sim_of(request)
    history = _history_of(request, state)
    limit = _limit_of(request, 100, MAX_FUNDING)
    start, end = _window_of(request)
    if history is None:
        return json_response([])
    interval = state.config.funding_interval_s * 1000
    return json_response(history.funding(start, end, limit, interval))


async def _price_klines(request: Request, kind: str, param: str) -> Response:
    history = _history_of(request, sim_of(request), param)
    interval_ms = INTERVALS_MS.get(_mandatory(request, "interval"))
    if interval_ms is None:
        raise ApiError(-1120, "Invalid interval.")
    limit = _limit_of(request, 500, MAX_KLINES)
    start, end = _window_of(request)
    if history is None:
        return json_response([])
    query = KlineQuery(interval_ms, start, end, limit)
    return json_response(history.price_klines(kind, query, history.market.last_event_ms))


async def mark_price_klines(request: Request) -> Response:
    return await _price_klines(request, "mark", "symbol")


async def index_price_klines(request: Request) -> Response:
    return await _price_klines(request, "index", "pair")


ROUTES: list[BaseRoute] = [
    Route("/fapi/v1/aggTrades", agg_trades, name="agg_trades"),
    Route("/fapi/v1/fundingRate", funding_rate, name="funding_rate"),
    Route("/fapi/v1/markPriceKlines", mark_price_klines, name="mark_klines"),
    Route("/fapi/v1/indexPriceKlines", index_price_klines, name="index_klines"),
]
