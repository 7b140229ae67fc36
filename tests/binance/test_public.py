"""The public REST client against a real HTTP server on loopback serving Binance's shapes."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.binance.filters import parse_symbol_filters
from app.binance.public import PublicRest, RestKline
from app.clock import SystemClock
from app.errors import ExchangeApiError
from tests.engine.reference import MARKET

EXCHANGE_INFO = (
    (MARKET / "usdm_2021-07-22_exchangeInfo.txt").read_text().splitlines()[0].split(": ", 1)[1]
)
SNAPSHOT = next(
    line.split(": ", 1)[1]
    for line in (MARKET / "usdm_2021-07-22_rest_depth_snapshots.txt").read_text().splitlines()
    if "symbol=SUSHIUSDT" in line
)
KLINE_ROW = [
    1499040000000,
    "0.01634790",
    "0.80000000",
    "0.01575800",
    "0.01577100",
    "148976.11427815",
    1499644799999,
    "2434.19055334",
    308,
    "1756.87402397",
    "28.46694368",
    "0",
]


async def _time(request: Request) -> Response:
    return JSONResponse({"serverTime": 1626992741000})


async def _info(request: Request) -> Response:
    return Response(EXCHANGE_INFO, media_type="application/json")


async def _depth(request: Request) -> Response:
    if request.query_params.get("symbol") != "SUSHIUSDT":
        return JSONResponse({"code": -1121, "msg": "Invalid symbol."}, status_code=400)
    assert request.query_params.get("limit") == "1000"
    return Response(SNAPSHOT, media_type="application/json")


async def _klines(request: Request) -> Response:
    if request.query_params.get("interval") == "bad":
        return Response("<html>oops</html>", status_code=502, media_type="text/html")
    if request.query_params.get("interval") == "odd":
        return JSONResponse({"rows": []})
    assert request.query_params["startTime"] == "1499040000000"
    return JSONResponse([KLINE_ROW, KLINE_ROW])


APP = Starlette(
    routes=[
        Route("/fapi/v1/time", _time, name="time"),
        Route("/fapi/v1/exchangeInfo", _info, name="exchange_info"),
        Route("/fapi/v1/depth", _depth, name="depth"),
        Route("/fapi/v1/klines", _klines, name="klines"),
    ]
)


@pytest.fixture
async def rest_url() -> AsyncIterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(APP, log_level="warning", lifespan="off", ws="none", access_log=False)
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    async with asyncio.timeout(10):
        while not server.started:  # noqa: ASYNC110 - no event to await
            await asyncio.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await asyncio.wait_for(task, 10)
    sock.close()


async def test_time_depth_klines(rest_url: str) -> None:
    async with PublicRest(rest_url, SystemClock()) as rest:
        assert await rest.server_time_ms() == 1626992741000
        snap = await rest.depth("sushiusdt")
        assert snap.last_update_id == 600859605926
        assert snap.bids[0] == ("7.6110", "6")
        assert len(snap.bids) >= 500
        klines = await rest.klines("btcusdt", "1m", start_ms=1499040000000)
        row = RestKline(
            1499040000000,
            "0.01634790",
            "0.80000000",
            "0.01575800",
            "0.01577100",
            "148976.11427815",
            1499644799999,
            "2434.19055334",
            308,
            "1756.87402397",
            "28.46694368",
        )
        assert klines == [row, row]


async def test_exchange_info_filters(rest_url: str) -> None:
    async with PublicRest(rest_url, SystemClock()) as rest:
        filters = await rest.symbol_filters()
    sushi = filters["SUSHIUSDT"]
    assert sushi.tick_size == Decimal("0.0010")
    assert sushi.step_size == Decimal("1")
    assert sushi.min_notional == Decimal("5")
    assert (sushi.price_precision, sushi.quantity_precision) == (4, 0)
    btc = filters["BTCUSDT"]
    assert (btc.tick_size, btc.step_size) == (Decimal("0.01"), Decimal("0.001"))
    assert len(filters) > 100
    with pytest.raises(AttributeError):
        btc.tick_size = Decimal(1)  # type: ignore[misc]


def test_parse_symbol_filters_skips_incomplete_symbols() -> None:
    info = json.loads(EXCHANGE_INFO)
    info["symbols"] = [
        {"symbol": "X", "filters": [{"filterType": "PRICE_FILTER", "tickSize": "0.1"}]},
        {
            "symbol": "Y",
            "filters": [
                {"filterType": "PRICE_FILTER", "tickSize": "0.1"},
                {"filterType": "LOT_SIZE", "stepSize": "0.01"},
                {"filterType": "MIN_NOTIONAL", "minNotional": "10"},
            ],
        },
    ]
    assert list(parse_symbol_filters(info)) == ["Y"]
    assert parse_symbol_filters(info)["Y"].min_notional == Decimal("10")


async def test_exchange_errors_become_exchange_api_error(rest_url: str) -> None:
    async with PublicRest(rest_url, SystemClock()) as rest:
        with pytest.raises(ExchangeApiError, match="Invalid symbol") as caught:
            await rest.depth("NOPE")
        assert (caught.value.status, caught.value.code) == (400, -1121)
        assert caught.value.msg == "Invalid symbol."
        with pytest.raises(ExchangeApiError, match="HTTP 502") as caught:
            await rest.klines("btcusdt", "bad")
        assert (caught.value.status, caught.value.code) == (502, None)
        with pytest.raises(ExchangeApiError, match="unexpected body"):
            await rest.klines("btcusdt", "odd")


async def test_unreachable_exchange_is_exchange_api_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with PublicRest(f"http://127.0.0.1:{port}", SystemClock()) as rest:
        with pytest.raises(ExchangeApiError, match="ConnectError") as caught:
            await rest.server_time_ms()
    assert caught.value.status is None
