"""REST endpoints in Binance's shapes (``/fapi/v1/...``) and the simulator's own (``/_sim/...``).

Errors are Binance's ``{"code": ..., "msg": ...}`` with HTTP 400. The signed trading endpoints
(``/fapi/v1/order`` and friends) are in :mod:`app.sim.trading_rest`. Handlers are module-level
functions that find the simulator in the lifespan state (:func:`~app.sim.state.sim_of`).
"""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from app.sim.apierror import ApiError
from app.sim.exchange_info import RATE_LIMITS, exchange_info
from app.sim.klines import INTERVALS_MS, KlineQuery
from app.sim.state import SimState, sim_of

__all__ = ["ROUTES", "ApiError", "api_error_handler", "json_response"]

DEPTH_LIMITS = frozenset({5, 10, 20, 50, 100, 500, 1000})
MAX_KLINES = 1500


def json_response(body: object, status: int = 200) -> Response:
    return Response(msgspec.json.encode(body), status_code=status, media_type="application/json")


async def api_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return json_response({"code": exc.code, "msg": exc.msg}, exc.status)


def _mandatory(request: Request, name: str) -> str:
    value = request.query_params.get(name, "")
    if not value:
        raise ApiError(
            -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
        )
    return value


def _int_param(request: Request, name: str) -> int | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        return None
    if not value.isdigit() or len(value) > 20:
        raise ApiError(
            -1100,
            f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.",
        )
    return int(value)


def _bad_value(name: str) -> ApiError:
    return ApiError(-1130, f"Data sent for parameter '{name}' is not valid.")


def _symbol_of(request: Request, state: SimState) -> str:
    symbol = _mandatory(request, "symbol").upper()
    if symbol not in state.specs and symbol not in state.snapshots:
        raise ApiError(-1121, "Invalid symbol.")
    return symbol


async def ping(request: Request) -> Response:
    return json_response({})


async def server_time(request: Request) -> Response:
    state = sim_of(request)
    return json_response({"serverTime": state.server_time_ms()})


async def get_exchange_info(request: Request) -> Response:
    state = sim_of(request)
    if state.exchange_info_body is not None:
        body = dict(state.exchange_info_body)
        body["serverTime"] = state.now_ms()
        return json_response(body)
    body = exchange_info(state.specs.values(), state.now_ms())
    # The weight limit in force (``--weight-limit``), which clients budget against.
    body["rateLimits"] = [
        {**limit, "limit": state.config.trading.weight_limit}
        if limit["rateLimitType"] == "REQUEST_WEIGHT"
        else limit
        for limit in RATE_LIMITS
    ]
    return json_response(body)


async def depth(request: Request) -> Response:
    state = sim_of(request)
    symbol = _symbol_of(request, state)
    limit = _int_param(request, "limit")
    limit = 500 if limit is None else limit
    if limit not in DEPTH_LIMITS:
        raise _bad_value("limit")
    market = state.markets.get(symbol)
    if market is not None:
        return json_response(market.depth(limit))
    snapshot = state.snapshots.get(symbol)
    if snapshot is None:
        raise ApiError(-1121, "Invalid symbol.")
    body = dict(snapshot)
    body["bids"] = snapshot.get("bids", [])[:limit]
    body["asks"] = snapshot.get("asks", [])[:limit]
    return json_response(body)


async def klines(request: Request) -> Response:
    state = sim_of(request)
    symbol = _symbol_of(request, state)
    interval = _mandatory(request, "interval")
    interval_ms = INTERVALS_MS.get(interval)
    if interval_ms is None:
        raise ApiError(-1120, "Invalid interval.")
    limit = _int_param(request, "limit")
    limit = 500 if limit is None else limit
    if not 1 <= limit <= MAX_KLINES:
        raise _bad_value("limit")
    start = _int_param(request, "startTime")
    end = _int_param(request, "endTime")
    if start is not None and end is not None and start > end:
        raise ApiError(-1023, "Start time is greater than end time.")
    market = state.markets.get(symbol)
    if market is None:
        # Replay mode serves no klines: the recording's own kline streams are the source.
        return json_response([])
    query = KlineQuery(interval_ms, start, end, limit)
    return json_response(market.klines.query(query, market.last_event_ms))


async def get_faults(request: Request) -> Response:
    state = sim_of(request)
    return json_response(state.faults.as_dict())


async def post_faults(request: Request) -> Response:
    state = sim_of(request)
    try:
        changes = msgspec.json.decode(await request.body())
    except msgspec.DecodeError as exc:
        raise ApiError(-1130, f"body is not JSON: {exc}") from exc
    if not isinstance(changes, dict):
        raise ApiError(-1130, "body must be a JSON object")
    try:
        state.faults.apply(changes)
    except ValueError as exc:
        raise ApiError(-1130, str(exc)) from exc
    return json_response(state.faults.as_dict())


async def stats(request: Request) -> Response:
    state = sim_of(request)
    body = state.hub.stats()
    body["mode"] = "live" if state.replay is None else "replay"
    if state.replay is not None:
        body["replay"] = state.replay.as_dict()
    body["faults"] = state.faults.as_dict()
    body["user_streams"] = state.user_streams.stats()
    body["rate_limits"] = state.limiter.stats()
    return json_response(body)


ROUTES: list[BaseRoute] = [
    Route("/fapi/v1/ping", ping, name="ping"),
    Route("/fapi/v1/time", server_time, name="time"),
    Route("/fapi/v1/exchangeInfo", get_exchange_info, name="exchange_info"),
    Route("/fapi/v1/depth", depth, name="depth"),
    Route("/fapi/v1/klines", klines, name="klines"),
    Route("/_sim/faults", get_faults, methods=["GET"], name="faults_get"),
    Route("/_sim/faults", post_faults, methods=["POST"], name="faults_post"),
    Route("/_sim/stats", stats, name="stats"),
]
