"""One pooled HTTP session to Binance USD-M REST, and the one place its failures become errors.

Both clients are a :class:`RestTransport`: :class:`~app.binance.public.PublicRest` (market data)
and :class:`~app.binance.signed.SignedRest` (the account). What they share lives here:

* **Time.** Signed requests carry ``timestamp`` = our clock + ``offset_ms``, the server's clock
  minus ours as measured by :meth:`RestTransport.sync_time` (the midpoint of the round trip). A
  -1021 (outside recvWindow) resyncs the offset and retries the request once; a second -1021 is
  raised.
* **Weight.** Every answer carries ``X-MBX-USED-WEIGHT-1M``; before a request we add its weight
  (:mod:`app.binance.weights`) to the last figure and, past ``weight_soft_fraction`` of the limit,
  wait for the next minute window (at most ``max_budget_wait_s``, else
  :class:`~app.errors.RateLimitedError` at once), so we slow down *before* the exchange says 429.
* **429/418.** A 429 blocks every request until its ``Retry-After``; a 418 (IP ban) likewise, for
  the ban's length. While blocked, calls fail locally with no request sent.
* **Failures**, translated once (:func:`transport_failure`, :func:`refusal`, :func:`decode_answer`)
  into :mod:`app.errors`: no answer is :class:`~app.errors.ExchangeApiError` (a write that may have
  left is :class:`~app.errors.UnknownStateError`: query it before any retry); -1022/-2014/-2015 are
  :class:`~app.errors.ApiKeyError` (an operator must fix the keys); an order the exchange refuses
  is :class:`~app.errors.OrderRejectedError`; a 5xx or -1006/-1007 on an order is
  :class:`~app.errors.UnknownStateError`; anything else, an HTTP status, a ``{code, msg}`` body or
  a body of the wrong shape, is :class:`~app.errors.ExchangeApiError`. Retrying is the caller's
  business (it knows whether the call can wait).

Nothing here logs a key, a secret or a signature.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self

import httpx
import msgspec

from app.binance.signing import Credentials, encode_params, signed_payload
from app.binance.weights import request_weight
from app.clock import Clock
from app.errors import (
    ApiKeyError,
    ExchangeApiError,
    IpBannedError,
    OrderRejectedError,
    RateLimitedError,
    UnknownStateError,
)

log = logging.getLogger(__name__)

MINUTE_MS = 60_000
DEFAULT_WEIGHT_LIMIT = 2400
_KEY_CODES = frozenset({-1022, -2014, -2015})
_UNKNOWN_CODES = frozenset({-1007, -1006})
_ORDER_PATHS = frozenset({"/fapi/v1/order", "/fapi/v1/batchOrders"})

Params = dict[str, str | int]


class RestSettings(Protocol):
    """What a transport needs to know (:class:`~app.config.LiveConfig` is one)."""

    @property
    def timeout_s(self) -> float: ...
    @property
    def recv_window_ms(self) -> int: ...
    @property
    def weight_soft_fraction(self) -> float: ...
    @property
    def max_budget_wait_s(self) -> float: ...


@dataclass(frozen=True)
class RestLimits:
    """:class:`RestSettings` for a client without a config section of its own (market data):
    the same figures as the live side's defaults."""

    timeout_s: float = 10.0
    recv_window_ms: int = 5000
    weight_soft_fraction: float = 0.8
    max_budget_wait_s: float = 5.0


DEFAULT_LIMITS = RestLimits()


class _ServerTime(msgspec.Struct):
    serverTime: int


_TIME = msgspec.json.Decoder(_ServerTime)
_JSON = msgspec.json.Decoder()
_INFO = msgspec.json.Decoder(dict[str, Any])


# -- the translation ---------------------------------------------------------------------------


def error_body(body: bytes) -> tuple[int | None, str]:
    """The exchange's ``{"code": ..., "msg": ...}`` in ``body``, or ``(None, "")``."""
    try:
        doc = msgspec.json.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None, ""
    if isinstance(doc, dict) and isinstance(doc.get("code"), int):
        return int(doc["code"]), str(doc.get("msg", ""))
    return None, ""


def transport_failure(
    method: str, path: str, exc: httpx.HTTPError, *, is_order: bool
) -> ExchangeApiError:
    """No answer. A failed connect sent nothing; anything later may have reached the exchange,
    which for an order means its state is unknown."""
    if is_order and not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return UnknownStateError(
            f"{method} {path}: {type(exc).__name__} after sending: state unknown"
        )
    return ExchangeApiError(f"{method} {path}: {type(exc).__name__}: {exc}")


def refusal(
    method: str,
    path: str,
    status: int,
    code: int | None,
    msg: str,
    *,
    is_order: bool,
    retry_at_ms: int = 0,
) -> ExchangeApiError | ApiKeyError:
    """An answer other than 200, as the error that says who must act. ``retry_at_ms`` is when a
    429 or 418 ends."""
    where = f"{method} {path}: HTTP {status}" + (f" code {code}: {msg}" if code else "")
    if status == 418:
        return IpBannedError(where, retry_at_ms=retry_at_ms, status=status, code=code, msg=msg)
    if status == 429:
        return RateLimitedError(where, retry_at_ms=retry_at_ms, status=status, code=code, msg=msg)
    if code in _KEY_CODES:
        return ApiKeyError(f"{where} (check the API key, its secret and its permissions)", code)
    if is_order and (status >= 500 or code in _UNKNOWN_CODES):
        return UnknownStateError(where, status=status, code=code, msg=msg)
    if is_order and method == "POST" and 400 <= status < 500 and code is not None:
        return OrderRejectedError(where, status=status, code=code, msg=msg)
    return ExchangeApiError(where, status=status, code=code, msg=msg)


def decode_answer(method: str, path: str, decoder: msgspec.json.Decoder[Any], body: bytes) -> Any:
    """A 200 answer's body decoded; one of the wrong shape (an error body sent with 200, or
    anything else) is :class:`~app.errors.ExchangeApiError`."""
    try:
        return decoder.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        code, msg = error_body(body)
        if code is None:
            raise ExchangeApiError(f"{method} {path}: unexpected body: {exc}", status=200) from exc
        raise ExchangeApiError(
            f"{method} {path}: code {code}: {msg}", status=200, code=code, msg=msg
        ) from exc


def _retry_after_s(response: httpx.Response) -> int:
    text = response.headers.get("retry-after", "")
    return int(text) if text.isdigit() else 60


# -- the session -------------------------------------------------------------------------------


class RestTransport:
    """One ``httpx.AsyncClient`` to ``base_url`` with the clock offset, the weight budget and
    the 429/418 blocks (see the module docstring). ``credentials`` sign requests sent with
    ``signed=True``. Use as ``async with`` or call :meth:`aclose`."""

    def __init__(
        self,
        base_url: str,
        settings: RestSettings,
        clock: Clock,
        *,
        credentials: Credentials | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._creds = credentials
        headers = {"Accept": "application/json"}
        if credentials is not None:
            headers["X-MBX-APIKEY"] = credentials.api_key
        self._http = httpx.AsyncClient(
            base_url=base_url, timeout=settings.timeout_s, transport=transport, headers=headers
        )
        self._offset_ms = 0
        self.weight_limit = DEFAULT_WEIGHT_LIMIT
        self._used = 0
        self._window = -1
        self._blocked_until_ms = 0
        self._banned_until_ms = 0
        # Counters for status and tests.
        self.sent = 0
        self.refused_locally = 0
        self.resyncs = 0
        self.budget_waits = 0

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    # -- time ----------------------------------------------------------------------------------

    @property
    def offset_ms(self) -> int:
        """The server's clock minus ours, ms, as last measured."""
        return self._offset_ms

    def _local_ms(self) -> int:
        return self._clock.time_ns() // 1_000_000

    def server_now_ms(self) -> int:
        """Our estimate of the exchange's clock."""
        return self._local_ms() + self._offset_ms

    async def server_time_ms(self) -> int:
        """``GET /fapi/v1/time``: the exchange's clock, in ms."""
        path = "/fapi/v1/time"
        answer: _ServerTime = decode_answer("GET", path, _TIME, await self._request("GET", path))
        return answer.serverTime

    async def sync_time(self) -> int:
        """Measure the offset against ``GET /fapi/v1/time``; returns it (ms)."""
        before = self._local_ms()
        server_ms = await self.server_time_ms()
        after = self._local_ms()
        self._offset_ms = server_ms - (before + after) // 2
        return self._offset_ms

    async def exchange_info(self) -> dict[str, Any]:
        """``GET /fapi/v1/exchangeInfo``, as decoded JSON; also adopts its REQUEST_WEIGHT
        limit as the budget's."""
        path = "/fapi/v1/exchangeInfo"
        info: dict[str, Any] = decode_answer("GET", path, _INFO, await self._request("GET", path))
        for limit in info.get("rateLimits", ()):
            if limit.get("rateLimitType") == "REQUEST_WEIGHT" and limit.get("interval") == "MINUTE":
                self.weight_limit = int(limit["limit"]) // max(1, int(limit.get("intervalNum", 1)))
        return info

    # -- budget --------------------------------------------------------------------------------

    @property
    def blocked_until_ms(self) -> int:
        """Our clock's ms before which nothing is sent (429 or 418), 0 when free."""
        return max(self._blocked_until_ms, self._banned_until_ms)

    @property
    def used_weight(self) -> int:
        return self._used if self._window == self.server_now_ms() // MINUTE_MS else 0

    async def wait_ready(self) -> None:
        """Sleep until a 429's Retry-After or a 418's ban has passed."""
        delay_ms = self.blocked_until_ms - self._local_ms()
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000)

    async def _admit(self, weight: int) -> None:
        now = self._local_ms()
        if self._banned_until_ms > now:
            self.refused_locally += 1
            raise IpBannedError(
                f"IP banned by the exchange for {(self._banned_until_ms - now) / 1000:.1f} s more",
                retry_at_ms=self._banned_until_ms,
                status=418,
            )
        if self._blocked_until_ms > now:
            self.refused_locally += 1
            raise RateLimitedError(
                f"rate limited for {(self._blocked_until_ms - now) / 1000:.1f} s more",
                retry_at_ms=self._blocked_until_ms,
                status=429,
            )
        server_now = self.server_now_ms()
        window = server_now // MINUTE_MS
        if window != self._window:
            self._window, self._used = window, 0
        soft = int(self.weight_limit * self._settings.weight_soft_fraction)
        if self._used + weight <= soft:
            return
        wait_ms = (window + 1) * MINUTE_MS - server_now + 50
        if wait_ms > self._settings.max_budget_wait_s * 1000:
            self.refused_locally += 1
            raise RateLimitedError(
                f"request weight {self._used}/{self.weight_limit} this minute: waiting for the "
                "next window",
                retry_at_ms=now + wait_ms,
            )
        self.budget_waits += 1
        await asyncio.sleep(wait_ms / 1000)
        self._window, self._used = (self.server_now_ms()) // MINUTE_MS, 0

    def _note_weight(self, response: httpx.Response) -> None:
        text = response.headers.get("x-mbx-used-weight-1m", "")
        if text.isdigit():
            self._window = self.server_now_ms() // MINUTE_MS
            self._used = int(text)

    def _note_block(self, status: int, response: httpx.Response, msg: str) -> int:
        """Stop sending until the 418's ban or the 429's Retry-After ends; returns when."""
        until = self._local_ms() + _retry_after_s(response) * 1000
        if status == 418:
            self._banned_until_ms = until
            log.warning("exchange: IP banned until %d (%s)", until, msg)
        else:
            self._blocked_until_ms = until
            log.warning("exchange: rate limited until %d (%s)", until, msg)
        return until

    # -- requests ------------------------------------------------------------------------------

    def _encode(
        self, method: str, path: str, params: Params | None, signed: bool
    ) -> tuple[str, bytes | None, dict[str, str]]:
        """The URL, body and headers: parameters go in the form body of a POST or PUT, in the
        query string otherwise; signed ones get ``recvWindow``, ``timestamp`` and the
        ``signature`` over exactly the string sent."""
        sent: Params = dict(params or {})
        if signed:
            # Only a client built with credentials (SignedRest) asks for a signature.
            assert self._creds is not None, f"{method} {path}: signed without credentials"
            sent["recvWindow"] = self._settings.recv_window_ms
            sent["timestamp"] = self.server_now_ms()
            text = signed_payload(sent, self._creds.api_secret)
        else:
            text = encode_params(sent)
        if method in ("POST", "PUT") and text:
            return path, text.encode(), {"Content-Type": "application/x-www-form-urlencoded"}
        return (f"{path}?{text}" if text else path), None, {}

    async def _request(
        self,
        method: str,
        path: str,
        params: Params | None = None,
        *,
        signed: bool = False,
        timeout_s: float | None = None,
        retry_time: bool = True,
    ) -> bytes:
        """Send one request within the budget; the body of a 200 answer, else the error."""
        await self._admit(request_weight(method, path, params))
        is_order = path in _ORDER_PATHS and method in ("POST", "DELETE")
        url, content, headers = self._encode(method, path, params, signed)
        timeout = timeout_s if timeout_s is not None else self._settings.timeout_s
        self.sent += 1
        try:
            response = await self._http.request(
                method, url, content=content, headers=headers, timeout=timeout
            )
        except httpx.HTTPError as exc:
            raise transport_failure(method, path, exc, is_order=is_order) from exc
        self._note_weight(response)
        status = response.status_code
        if status == 200:
            return response.content
        code, msg = error_body(response.content)
        retry_at_ms = 0
        if status in (418, 429):
            retry_at_ms = self._note_block(status, response, msg)
        elif code == -1021 and retry_time:
            self.resyncs += 1
            await self.sync_time()
            log.info("exchange: -1021, clock offset now %d ms; retrying once", self._offset_ms)
            return await self._request(
                method, path, params, signed=signed, timeout_s=timeout_s, retry_time=False
            )
        raise refusal(method, path, status, code, msg, is_order=is_order, retry_at_ms=retry_at_ms)

    async def _json(
        self,
        method: str,
        path: str,
        params: Params | None = None,
        *,
        signed: bool = False,
        timeout_s: float | None = None,
    ) -> Any:
        """:meth:`_request`, its answer decoded as JSON."""
        body = await self._request(method, path, params, signed=signed, timeout_s=timeout_s)
        return decode_answer(method, path, _JSON, body)
