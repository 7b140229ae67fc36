"""Public REST endpoints of Binance USD-M futures, over one pooled ``httpx.AsyncClient``.

Every failure becomes :class:`~app.errors.ExchangeApiError`: no response (connect refused, timeout),
an HTTP error status, or the exchange's ``{"code": -1121, "msg": "Invalid symbol."}`` body. Retrying
is the caller's business (it knows whether the call can wait).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from types import TracebackType
from typing import Any

import httpx
import msgspec

from app.config import ExchangeConfig
from app.engine.events import DepthSnapshot
from app.errors import ExchangeApiError

DEFAULT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class SymbolFilters:
    """A symbol's trading rules from ``exchangeInfo``: prices are multiples of ``tick_size``,
    quantities of ``step_size``, and an order's notional must reach ``min_notional``."""

    symbol: str
    tick_size: Decimal
    step_size: Decimal
    min_notional: Decimal
    price_precision: int
    quantity_precision: int


class RestKline(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """One row of ``GET /fapi/v1/klines`` (Binance sends each candle as an array)."""

    ts_open_ms: int
    open: str
    high: str
    low: str
    close: str
    volume: str
    ts_close_ms: int
    quote_volume: str
    trades: int
    taker_buy_volume: str
    taker_buy_quote_volume: str


class _ServerTime(msgspec.Struct):
    serverTime: int


class _ApiError(msgspec.Struct):
    code: int
    msg: str


_DEPTH = msgspec.json.Decoder(DepthSnapshot)
_KLINES = msgspec.json.Decoder(list[RestKline])
_TIME = msgspec.json.Decoder(_ServerTime)
_API_ERROR = msgspec.json.Decoder(_ApiError)


def parse_symbol_filters(exchange_info: dict[str, Any]) -> dict[str, SymbolFilters]:
    """``exchangeInfo``'s ``symbols`` → :class:`SymbolFilters` by symbol (upper case).

    Symbols lacking one of PRICE_FILTER, LOT_SIZE, MIN_NOTIONAL are left out (nothing sensible
    can be traded on them).
    """
    result: dict[str, SymbolFilters] = {}
    for entry in exchange_info.get("symbols", ()):
        filters = {f.get("filterType"): f for f in entry.get("filters", ())}
        try:
            result[entry["symbol"]] = SymbolFilters(
                symbol=entry["symbol"],
                tick_size=Decimal(filters["PRICE_FILTER"]["tickSize"]),
                step_size=Decimal(filters["LOT_SIZE"]["stepSize"]),
                # USD-M calls it "notional"; spot's older filter called it "minNotional".
                min_notional=Decimal(
                    filters["MIN_NOTIONAL"].get("notional")
                    or filters["MIN_NOTIONAL"]["minNotional"]
                ),
                price_precision=int(entry.get("pricePrecision", 8)),
                quantity_precision=int(entry.get("quantityPrecision", 8)),
            )
        except (KeyError, ArithmeticError, TypeError, ValueError):
            continue
    return result


class RestClient:
    """The public (unsigned) USD-M REST API. Use as ``async with RestClient(cfg) as rest:``."""

    def __init__(
        self,
        exchange_cfg: ExchangeConfig,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._client = httpx.AsyncClient(
            base_url=exchange_cfg.rest_base,
            timeout=timeout_s,
            transport=transport,
            headers={"Accept": "application/json"},
        )

    async def __aenter__(self) -> RestClient:
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
        await self._client.aclose()

    async def _get(self, path: str, params: dict[str, str | int] | None = None) -> bytes:
        try:
            response = await self._client.get(path, params=params)
        except httpx.HTTPError as exc:
            raise ExchangeApiError(f"GET {path}: {type(exc).__name__}: {exc}") from exc
        body = response.content
        if response.status_code == 200:
            return body
        try:
            err = _API_ERROR.decode(body)
        except (msgspec.DecodeError, UnicodeDecodeError):
            raise ExchangeApiError(
                f"GET {path}: HTTP {response.status_code}", status=response.status_code
            ) from None
        raise ExchangeApiError(
            f"GET {path}: HTTP {response.status_code} code {err.code}: {err.msg}",
            status=response.status_code,
            code=err.code,
            msg=err.msg,
        )

    @staticmethod
    def _decode(path: str, decoder: msgspec.json.Decoder[Any], body: bytes) -> Any:
        try:
            return decoder.decode(body)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            try:  # an error body sent with status 200
                err = _API_ERROR.decode(body)
            except (msgspec.DecodeError, UnicodeDecodeError):
                raise ExchangeApiError(f"GET {path}: unexpected body: {exc}", status=200) from exc
            raise ExchangeApiError(
                f"GET {path}: code {err.code}: {err.msg}", status=200, code=err.code, msg=err.msg
            ) from exc

    async def server_time_ms(self) -> int:
        """``GET /fapi/v1/time``: the exchange's clock, in ms."""
        path = "/fapi/v1/time"
        result: _ServerTime = self._decode(path, _TIME, await self._get(path))
        return result.serverTime

    async def exchange_info(self) -> dict[str, Any]:
        """``GET /fapi/v1/exchangeInfo``, as decoded JSON."""
        path = "/fapi/v1/exchangeInfo"
        info: dict[str, Any] = self._decode(
            path, msgspec.json.Decoder(dict[str, Any]), await self._get(path)
        )
        return info

    async def symbol_filters(self) -> dict[str, SymbolFilters]:
        """Every symbol's tick size, step size and minimum notional."""
        return parse_symbol_filters(await self.exchange_info())

    async def depth(self, symbol: str, limit: int = 1000) -> DepthSnapshot:
        """``GET /fapi/v1/depth``: the order-book snapshot a diff-depth book syncs from."""
        path = "/fapi/v1/depth"
        body = await self._get(path, {"symbol": symbol.upper(), "limit": limit})
        snapshot: DepthSnapshot = self._decode(path, _DEPTH, body)
        return snapshot

    async def klines(
        self,
        symbol: str,
        interval: str = "1m",
        *,
        limit: int = 500,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> list[RestKline]:
        """``GET /fapi/v1/klines``: candles, oldest first."""
        path = "/fapi/v1/klines"
        params: dict[str, str | int] = {
            "symbol": symbol.upper(),
            "interval": interval,
            "limit": limit,
        }
        if start_ms is not None:
            params["startTime"] = start_ms
        if end_ms is not None:
            params["endTime"] = end_ms
        klines: list[RestKline] = self._decode(path, _KLINES, await self._get(path, params))
        return klines
