"""The one translation of REST failures into the error tree, and the budget both clients share
(driven through httpx's MockTransport: no sockets)."""

from __future__ import annotations

import httpx
import msgspec
import pytest

from app.binance.public import PublicRest
from app.binance.signed import SignedRest
from app.binance.signing import Credentials
from app.binance.transport import decode_answer, refusal, transport_failure
from app.binance.weights import request_weight
from app.clock import SystemClock
from app.config import LiveConfig
from app.errors import (
    ApiKeyError,
    ExchangeApiError,
    IpBannedError,
    OrderRejectedError,
    RateLimitedError,
    UnknownStateError,
)


@pytest.mark.parametrize(
    ("method", "path", "status", "code", "is_order", "expected"),
    [
        ("GET", "/fapi/v2/account", 418, -1003, False, IpBannedError),
        ("GET", "/fapi/v1/depth", 429, -1003, False, RateLimitedError),
        ("GET", "/fapi/v2/account", 401, -2015, False, ApiKeyError),
        ("GET", "/fapi/v2/account", 400, -1022, False, ApiKeyError),
        ("POST", "/fapi/v1/order", 503, -1007, True, UnknownStateError),
        ("POST", "/fapi/v1/order", 502, None, True, UnknownStateError),
        ("POST", "/fapi/v1/order", 400, -2019, True, OrderRejectedError),
        ("DELETE", "/fapi/v1/order", 400, -2011, True, ExchangeApiError),
        ("GET", "/fapi/v1/depth", 400, -1121, False, ExchangeApiError),
        ("GET", "/fapi/v1/klines", 502, None, False, ExchangeApiError),
    ],
)
def test_refusals_say_who_must_act(
    method: str, path: str, status: int, code: int | None, is_order: bool, expected: type
) -> None:
    err = refusal(method, path, status, code, "why", is_order=is_order, retry_at_ms=7)
    assert type(err) is expected
    if isinstance(err, ExchangeApiError):
        assert (err.status, err.code) == (status, code)
    if isinstance(err, RateLimitedError):
        assert err.retry_at_ms == 7


def test_no_answer_is_unknown_only_for_an_order_that_may_have_left() -> None:
    request = httpx.Request("POST", "http://x/fapi/v1/order")
    refused = httpx.ConnectError("refused", request=request)
    timed_out = httpx.ReadTimeout("slow", request=request)
    assert type(transport_failure("POST", "/fapi/v1/order", refused, is_order=True)) is (
        ExchangeApiError
    )
    assert type(transport_failure("POST", "/fapi/v1/order", timed_out, is_order=True)) is (
        UnknownStateError
    )
    assert type(transport_failure("GET", "/fapi/v1/depth", timed_out, is_order=False)) is (
        ExchangeApiError
    )


def test_a_body_of_the_wrong_shape_is_an_exchange_error() -> None:
    decoder = msgspec.json.Decoder(list[int])
    with pytest.raises(ExchangeApiError, match="code -1121: Invalid symbol") as caught:
        decode_answer("GET", "/x", decoder, b'{"code": -1121, "msg": "Invalid symbol."}')
    assert (caught.value.status, caught.value.code) == (200, -1121)
    with pytest.raises(ExchangeApiError, match="unexpected body"):
        decode_answer("GET", "/x", decoder, b"<html>")


def test_weights_follow_the_docs() -> None:
    assert request_weight("GET", "/fapi/v1/time") == 1
    assert request_weight("GET", "/fapi/v1/depth", {"symbol": "BTCUSDT", "limit": 1000}) == 20
    assert request_weight("GET", "/fapi/v1/depth", {"symbol": "BTCUSDT"}) == 10
    assert request_weight("GET", "/fapi/v1/klines", {"limit": 60}) == 1
    assert request_weight("GET", "/fapi/v1/markPriceKlines", {"limit": 1000}) == 5
    assert request_weight("GET", "/fapi/v1/aggTrades", {"limit": 1000}) == 20
    assert request_weight("GET", "/fapi/v2/account") == 5
    assert request_weight("GET", "/fapi/v1/openOrders") == 40
    assert request_weight("GET", "/fapi/v1/openOrders", {"symbol": "BTCUSDT"}) == 1


async def test_the_public_client_obeys_a_429_as_the_signed_one_does() -> None:
    calls: list[str] = []

    def exchange(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(
            429, json={"code": -1003, "msg": "Too many requests"}, headers={"Retry-After": "30"}
        )

    clock = SystemClock()
    public = PublicRest("http://x", clock, transport=httpx.MockTransport(exchange))
    signed = SignedRest(
        "http://x",
        Credentials("k", "s"),
        LiveConfig(),
        clock,
        transport=httpx.MockTransport(exchange),
    )
    async with public, signed:
        for client in (public, signed):
            with pytest.raises(RateLimitedError, match="HTTP 429 code -1003") as first:
                await client.server_time_ms()
            with pytest.raises(RateLimitedError, match="rate limited for") as second:
                await client.exchange_info()
            assert second.value.retry_at_ms == first.value.retry_at_ms
            assert (client.sent, client.refused_locally) == (1, 1)
    assert calls == ["/fapi/v1/time", "/fapi/v1/time"]
