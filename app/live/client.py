"""The signed USD-M REST client: time offset, weight budget, 429/418 obedience, typed failures.

One :class:`RestExchange` per engine, behind the :class:`ExchangeClient` protocol (so a client on
Binance's WebSocket API can replace it without touching the venue).

* **Time.** Signed requests carry ``timestamp`` = our clock + ``offset_ms``, the server's clock
  minus ours as measured by :meth:`RestExchange.sync_time` (the midpoint of the round trip). A
  -1021 (outside recvWindow) resyncs the offset and retries the request once; a second -1021 is
  raised.
* **Weight.** Every answer carries ``X-MBX-USED-WEIGHT-1M``; before a request we add its weight to
  the last figure and, past ``weight_soft_fraction`` of the limit, wait for the next minute
  window (at most ``max_budget_wait_s``, else :class:`~app.errors.RateLimitedError` at once), so
  we slow down *before* the exchange says 429.
* **429/418.** A 429 blocks every request until its ``Retry-After``; a 418 (IP ban) likewise, for
  the ban's length. While blocked, calls fail locally with no request sent.
* **Failures.** -1022/-2014/-2015 are :class:`~app.errors.ApiKeyError` (an operator must fix the
  keys); an order the exchange refuses is :class:`~app.errors.OrderRejectedError`; a timeout or
  5xx on an order is :class:`~app.errors.UnknownStateError` (query it before any retry).

Nothing here logs a key, a secret or a signature.
"""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal
from typing import Any, Protocol

import httpx
import msgspec

from app.binance.margin import Brackets, parse_brackets
from app.clock import Clock
from app.config import LiveConfig
from app.errors import (
    ApiKeyError,
    ExchangeApiError,
    IpBannedError,
    OrderRejectedError,
    RateLimitedError,
    UnknownStateError,
)
from app.live.signing import Credentials, encode_params, signed_payload

log = logging.getLogger(__name__)

MINUTE_MS = 60_000
DEFAULT_WEIGHT_LIMIT = 2400
_KEY_CODES = frozenset({-1022, -2014, -2015})
_UNKNOWN_CODES = frozenset({-1007, -1006})
_ORDER_PATHS = frozenset({"/fapi/v1/order", "/fapi/v1/batchOrders"})
# Weights from Binance's USD-M docs (the simulator charges the same); everything else weighs 1.
_WEIGHTS: dict[tuple[str, str], int] = {
    ("GET", "/fapi/v2/account"): 5,
    ("GET", "/fapi/v2/balance"): 5,
    ("GET", "/fapi/v2/positionRisk"): 5,
    ("GET", "/fapi/v1/userTrades"): 5,
    ("GET", "/fapi/v1/income"): 30,
    ("GET", "/fapi/v1/positionSide/dual"): 30,
    ("GET", "/fapi/v1/exchangeInfo"): 1,
}

Params = dict[str, str | int]


class ExchangeClient(Protocol):
    """What the live side needs from the exchange. Bodies are Binance's JSON, decoded."""

    @property
    def offset_ms(self) -> int: ...

    async def sync_time(self) -> int: ...
    async def exchange_info(self) -> dict[str, Any]: ...
    async def leverage_brackets(self) -> dict[str, Brackets]: ...
    async def new_order(self, params: Params) -> dict[str, Any]: ...
    async def query_order(self, symbol: str, client_id: str) -> dict[str, Any] | None: ...
    async def cancel_order(self, symbol: str, client_id: str) -> dict[str, Any]: ...
    async def cancel_all(self, symbol: str) -> None: ...
    async def open_orders(self, symbol: str | None = None) -> list[dict[str, Any]]: ...
    async def account(self) -> dict[str, Any]: ...
    async def balance(self) -> list[dict[str, Any]]: ...
    async def position_risk(self) -> list[dict[str, Any]]: ...
    async def user_trades(
        self, symbol: str, from_id: int | None = None
    ) -> list[dict[str, Any]]: ...
    async def income(self, start_ms: int | None = None) -> list[dict[str, Any]]: ...
    async def set_leverage(self, symbol: str, leverage: int) -> dict[str, Any]: ...
    async def set_margin_type(self, symbol: str, margin_type: str) -> None: ...
    async def position_mode(self) -> bool: ...
    async def set_position_mode(self, dual: bool) -> None: ...
    async def new_listen_key(self) -> str: ...
    async def keepalive_listen_key(self) -> str: ...
    async def close_listen_key(self) -> None: ...
    async def aclose(self) -> None: ...


def weight_of(method: str, path: str, params: Params | None = None) -> int:
    """The request weight Binance charges (openOrders without a symbol weighs 40)."""
    if path == "/fapi/v1/openOrders" and method == "GET" and not (params or {}).get("symbol"):
        return 40
    return _WEIGHTS.get((method, path), 1)


def _retry_after_s(response: httpx.Response) -> int:
    text = response.headers.get("retry-after", "")
    return int(text) if text.isdigit() else 60


class RestExchange:
    """Signed and unsigned USD-M REST calls (see the module docstring)."""

    def __init__(
        self,
        base_url: str,
        credentials: Credentials,
        cfg: LiveConfig,
        clock: Clock,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._creds = credentials
        self._cfg = cfg
        self._clock = clock
        self._http = httpx.AsyncClient(
            base_url=base_url,
            timeout=cfg.timeout_s,
            transport=transport,
            headers={"Accept": "application/json", "X-MBX-APIKEY": credentials.api_key},
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

    async def sync_time(self) -> int:
        """Measure the offset against ``GET /fapi/v1/time``; returns it (ms)."""
        before = self._local_ms()
        body = await self._request("GET", "/fapi/v1/time", signed=False)
        after = self._local_ms()
        self._offset_ms = int(body["serverTime"]) - (before + after) // 2
        return self._offset_ms

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
        soft = int(self.weight_limit * self._cfg.weight_soft_fraction)
        if self._used + weight <= soft:
            return
        wait_ms = (window + 1) * MINUTE_MS - server_now + 50
        if wait_ms > self._cfg.max_budget_wait_s * 1000:
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

    # -- requests ------------------------------------------------------------------------------

    # Long on purpose: the one place retries, clock resync and error translation happen.
    async def _request(  # noqa: PLR0912, PLR0915
        self,
        method: str,
        path: str,
        params: Params | None = None,
        *,
        signed: bool = True,
        timeout_s: float | None = None,
        retry_time: bool = True,
    ) -> Any:
        weight = weight_of(method, path, params)
        await self._admit(weight)
        is_order = path in _ORDER_PATHS and method in ("POST", "DELETE")
        sent: Params = dict(params or {})
        if signed:
            sent["recvWindow"] = self._cfg.recv_window_ms
            sent["timestamp"] = self.server_now_ms()
            text = signed_payload(sent, self._creds.api_secret)
        else:
            text = encode_params(sent)
        url, content, headers = path, None, {}
        if method in ("POST", "PUT") and text:
            content = text.encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif text:
            url = f"{path}?{text}"
        timeout = timeout_s if timeout_s is not None else self._cfg.timeout_s
        self.sent += 1
        try:
            response = await self._http.request(
                method, url, content=content, headers=headers, timeout=timeout
            )
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            # Nothing reached the exchange.
            raise ExchangeApiError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        except httpx.HTTPError as exc:
            if is_order:
                raise UnknownStateError(
                    f"{method} {path}: {type(exc).__name__} after sending: state unknown"
                ) from exc
            raise ExchangeApiError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        self._note_weight(response)
        status = response.status_code
        if status == 200:
            return msgspec.json.decode(response.content)
        code, msg = _error_body(response.content)
        where = f"{method} {path}: HTTP {status}" + (f" code {code}: {msg}" if code else "")
        if status == 418:
            self._banned_until_ms = self._local_ms() + _retry_after_s(response) * 1000
            log.warning("exchange: IP banned until %d (%s)", self._banned_until_ms, msg)
            raise IpBannedError(
                where, retry_at_ms=self._banned_until_ms, status=status, code=code, msg=msg
            )
        if status == 429:
            self._blocked_until_ms = self._local_ms() + _retry_after_s(response) * 1000
            log.warning("exchange: rate limited until %d (%s)", self._blocked_until_ms, msg)
            raise RateLimitedError(
                where, retry_at_ms=self._blocked_until_ms, status=status, code=code, msg=msg
            )
        if code == -1021 and retry_time:
            self.resyncs += 1
            await self.sync_time()
            log.info("exchange: -1021, clock offset now %d ms; retrying once", self._offset_ms)
            return await self._request(
                method, path, params, signed=signed, timeout_s=timeout_s, retry_time=False
            )
        if code in _KEY_CODES:
            raise ApiKeyError(f"{where} (check the API key, its secret and its permissions)", code)
        if is_order and (status >= 500 or code in _UNKNOWN_CODES):
            raise UnknownStateError(where, status=status, code=code, msg=msg)
        if is_order and method == "POST" and 400 <= status < 500 and code is not None:
            raise OrderRejectedError(where, status=status, code=code, msg=msg)
        raise ExchangeApiError(where, status=status, code=code, msg=msg)

    # -- endpoints -----------------------------------------------------------------------------

    async def leverage_brackets(self) -> dict[str, Brackets]:
        """``GET /fapi/v1/leverageBracket`` (signed): every symbol's notional brackets."""
        body = await self._request("GET", "/fapi/v1/leverageBracket", signed=True)
        try:
            return parse_brackets(body)
        except ValueError as exc:
            raise ExchangeApiError(f"leverageBracket: {exc}") from exc

    async def exchange_info(self) -> dict[str, Any]:
        """``GET /fapi/v1/exchangeInfo``; also adopts its REQUEST_WEIGHT limit."""
        info: dict[str, Any] = await self._request("GET", "/fapi/v1/exchangeInfo", signed=False)
        for limit in info.get("rateLimits", ()):
            if limit.get("rateLimitType") == "REQUEST_WEIGHT" and limit.get("interval") == "MINUTE":
                self.weight_limit = int(limit["limit"]) // max(1, int(limit.get("intervalNum", 1)))
        return info

    async def new_order(self, params: Params) -> dict[str, Any]:
        """``POST /fapi/v1/order`` with ``newOrderRespType=RESULT``."""
        body: dict[str, Any] = await self._request(
            "POST",
            "/fapi/v1/order",
            {**params, "newOrderRespType": "RESULT"},
            timeout_s=self._cfg.order_timeout_s,
        )
        return body

    async def query_order(self, symbol: str, client_id: str) -> dict[str, Any] | None:
        """``GET /fapi/v1/order`` by ``origClientOrderId``; None when the exchange has no such
        order (-2013)."""
        try:
            body: dict[str, Any] = await self._request(
                "GET", "/fapi/v1/order", {"symbol": symbol, "origClientOrderId": client_id}
            )
        except ExchangeApiError as exc:
            if exc.code == -2013:
                return None
            raise
        return body

    async def cancel_order(self, symbol: str, client_id: str) -> dict[str, Any]:
        body: dict[str, Any] = await self._request(
            "DELETE", "/fapi/v1/order", {"symbol": symbol, "origClientOrderId": client_id}
        )
        return body

    async def cancel_all(self, symbol: str) -> None:
        await self._request("DELETE", "/fapi/v1/allOpenOrders", {"symbol": symbol})

    async def open_orders(self, symbol: str | None = None) -> list[dict[str, Any]]:
        params: Params = {"symbol": symbol} if symbol else {}
        rows: list[dict[str, Any]] = await self._request("GET", "/fapi/v1/openOrders", params)
        return rows

    async def account(self) -> dict[str, Any]:
        body: dict[str, Any] = await self._request("GET", "/fapi/v2/account")
        return body

    async def balance(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = await self._request("GET", "/fapi/v2/balance")
        return rows

    async def position_risk(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = await self._request("GET", "/fapi/v2/positionRisk")
        return rows

    async def user_trades(self, symbol: str, from_id: int | None = None) -> list[dict[str, Any]]:
        """``GET /fapi/v1/userTrades``: up to 1000 fills from trade id ``from_id`` (or the
        latest 1000)."""
        params: Params = {"symbol": symbol, "limit": 1000}
        if from_id is not None:
            params["fromId"] = from_id
        rows: list[dict[str, Any]] = await self._request("GET", "/fapi/v1/userTrades", params)
        return rows

    async def income(self, start_ms: int | None = None) -> list[dict[str, Any]]:
        """``GET /fapi/v1/income`` from ``start_ms`` (the exchange's default: the last 7 days)."""
        params: Params = {"limit": 1000}
        if start_ms is not None:
            params["startTime"] = start_ms
        rows: list[dict[str, Any]] = await self._request("GET", "/fapi/v1/income", params)
        return rows

    async def set_leverage(self, symbol: str, leverage: int) -> dict[str, Any]:
        body: dict[str, Any] = await self._request(
            "POST", "/fapi/v1/leverage", {"symbol": symbol, "leverage": leverage}
        )
        return body

    async def set_margin_type(self, symbol: str, margin_type: str) -> None:
        """Set ``ISOLATED``/``CROSSED``; "no need to change" (-4046) is success."""
        try:
            await self._request(
                "POST", "/fapi/v1/marginType", {"symbol": symbol, "marginType": margin_type}
            )
        except ExchangeApiError as exc:
            if exc.code != -4046:
                raise

    async def position_mode(self) -> bool:
        """True in hedge mode (``dualSidePosition``), False in one-way mode."""
        body = await self._request("GET", "/fapi/v1/positionSide/dual")
        return bool(body["dualSidePosition"])

    async def set_position_mode(self, dual: bool) -> None:
        """Set hedge (True) or one-way mode; "no need to change" (-4059) is success."""
        try:
            await self._request(
                "POST", "/fapi/v1/positionSide/dual", {"dualSidePosition": str(dual).lower()}
            )
        except ExchangeApiError as exc:
            if exc.code != -4059:
                raise

    async def new_listen_key(self) -> str:
        body = await self._request("POST", "/fapi/v1/listenKey", signed=False)
        return str(body["listenKey"])

    async def keepalive_listen_key(self) -> str:
        body = await self._request("PUT", "/fapi/v1/listenKey", signed=False)
        return str(body.get("listenKey", ""))

    async def close_listen_key(self) -> None:
        await self._request("DELETE", "/fapi/v1/listenKey", signed=False)

    async def aclose(self) -> None:
        await self._http.aclose()


def _error_body(body: bytes) -> tuple[int | None, str]:
    try:
        doc = msgspec.json.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None, ""
    if isinstance(doc, dict) and isinstance(doc.get("code"), int):
        return int(doc["code"]), str(doc.get("msg", ""))
    return None, ""


def dec(value: object) -> Decimal:
    """An exchange decimal string as :class:`Decimal` (``""``/None count as zero)."""
    return Decimal(str(value)) if value not in (None, "") else Decimal(0)
