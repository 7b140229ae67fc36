"""The signed USD-M REST endpoints an account needs: orders, account, settings and the listen key.

One :class:`SignedRest` per live session, behind the :class:`ExchangeClient` protocol (so a client
on Binance's WebSocket API can replace it without touching the venue). Time, weight, 429/418 and
the translation of failures are the transport's (:mod:`app.binance.transport`); the signature is
:mod:`app.binance.signing`'s.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Protocol

import httpx

from app.binance.margin import Brackets, parse_brackets
from app.binance.signing import Credentials
from app.binance.transport import Params, RestSettings, RestTransport
from app.clock import Clock
from app.errors import ExchangeApiError


class SignedSettings(RestSettings, Protocol):
    """:class:`~app.binance.transport.RestSettings` plus the order timeout
    (:class:`~app.config.LiveConfig` is one)."""

    @property
    def order_timeout_s(self) -> float: ...


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


class SignedRest(RestTransport):
    """The account's USD-M REST calls, signed with ``credentials`` (see the module docstring)."""

    def __init__(
        self,
        base_url: str,
        credentials: Credentials,
        cfg: SignedSettings,
        clock: Clock,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, cfg, clock, credentials=credentials, transport=transport)
        self._order_timeout_s = cfg.order_timeout_s

    async def _signed(
        self,
        method: str,
        path: str,
        params: Params | None = None,
        *,
        timeout_s: float | None = None,
    ) -> Any:
        return await self._json(method, path, params, signed=True, timeout_s=timeout_s)

    async def leverage_brackets(self) -> dict[str, Brackets]:
        """``GET /fapi/v1/leverageBracket`` (signed): every symbol's notional brackets."""
        body = await self._signed("GET", "/fapi/v1/leverageBracket")
        try:
            return parse_brackets(body)
        except ValueError as exc:
            raise ExchangeApiError(f"leverageBracket: {exc}") from exc

    async def new_order(self, params: Params) -> dict[str, Any]:
        """``POST /fapi/v1/order`` with ``newOrderRespType=RESULT``."""
        body: dict[str, Any] = await self._signed(
            "POST",
            "/fapi/v1/order",
            {**params, "newOrderRespType": "RESULT"},
            timeout_s=self._order_timeout_s,
        )
        return body

    async def query_order(self, symbol: str, client_id: str) -> dict[str, Any] | None:
        """``GET /fapi/v1/order`` by ``origClientOrderId``; None when the exchange has no such
        order (-2013)."""
        try:
            body: dict[str, Any] = await self._signed(
                "GET", "/fapi/v1/order", {"symbol": symbol, "origClientOrderId": client_id}
            )
        except ExchangeApiError as exc:
            if exc.code == -2013:
                return None
            raise
        return body

    async def cancel_order(self, symbol: str, client_id: str) -> dict[str, Any]:
        body: dict[str, Any] = await self._signed(
            "DELETE", "/fapi/v1/order", {"symbol": symbol, "origClientOrderId": client_id}
        )
        return body

    async def cancel_all(self, symbol: str) -> None:
        await self._signed("DELETE", "/fapi/v1/allOpenOrders", {"symbol": symbol})

    async def open_orders(self, symbol: str | None = None) -> list[dict[str, Any]]:
        params: Params = {"symbol": symbol} if symbol else {}
        rows: list[dict[str, Any]] = await self._signed("GET", "/fapi/v1/openOrders", params)
        return rows

    async def account(self) -> dict[str, Any]:
        body: dict[str, Any] = await self._signed("GET", "/fapi/v2/account")
        return body

    async def balance(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = await self._signed("GET", "/fapi/v2/balance")
        return rows

    async def position_risk(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = await self._signed("GET", "/fapi/v2/positionRisk")
        return rows

    async def user_trades(self, symbol: str, from_id: int | None = None) -> list[dict[str, Any]]:
        """``GET /fapi/v1/userTrades``: up to 1000 fills from trade id ``from_id`` (or the
        latest 1000)."""
        params: Params = {"symbol": symbol, "limit": 1000}
        if from_id is not None:
            params["fromId"] = from_id
        rows: list[dict[str, Any]] = await self._signed("GET", "/fapi/v1/userTrades", params)
        return rows

    async def income(self, start_ms: int | None = None) -> list[dict[str, Any]]:
        """``GET /fapi/v1/income`` from ``start_ms`` (the exchange's default: the last 7 days)."""
        params: Params = {"limit": 1000}
        if start_ms is not None:
            params["startTime"] = start_ms
        rows: list[dict[str, Any]] = await self._signed("GET", "/fapi/v1/income", params)
        return rows

    async def set_leverage(self, symbol: str, leverage: int) -> dict[str, Any]:
        body: dict[str, Any] = await self._signed(
            "POST", "/fapi/v1/leverage", {"symbol": symbol, "leverage": leverage}
        )
        return body

    async def set_margin_type(self, symbol: str, margin_type: str) -> None:
        """Set ``ISOLATED``/``CROSSED``; "no need to change" (-4046) is success."""
        try:
            await self._signed(
                "POST", "/fapi/v1/marginType", {"symbol": symbol, "marginType": margin_type}
            )
        except ExchangeApiError as exc:
            if exc.code != -4046:
                raise

    async def position_mode(self) -> bool:
        """True in hedge mode (``dualSidePosition``), False in one-way mode."""
        body = await self._signed("GET", "/fapi/v1/positionSide/dual")
        return bool(body["dualSidePosition"])

    async def set_position_mode(self, dual: bool) -> None:
        """Set hedge (True) or one-way mode; "no need to change" (-4059) is success."""
        try:
            await self._signed(
                "POST", "/fapi/v1/positionSide/dual", {"dualSidePosition": str(dual).lower()}
            )
        except ExchangeApiError as exc:
            if exc.code != -4059:
                raise

    async def new_listen_key(self) -> str:
        body = await self._json("POST", "/fapi/v1/listenKey")
        return str(body["listenKey"])

    async def keepalive_listen_key(self) -> str:
        body = await self._json("PUT", "/fapi/v1/listenKey")
        return str(body.get("listenKey", ""))

    async def close_listen_key(self) -> None:
        await self._json("DELETE", "/fapi/v1/listenKey")


def dec(value: object) -> Decimal:
    """An exchange decimal string as :class:`Decimal` (``""``/None count as zero)."""
    return Decimal(str(value)) if value not in (None, "") else Decimal(0)
