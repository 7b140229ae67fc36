"""The public (unsigned) USD-M REST endpoints market data needs: time, exchangeInfo, depth
snapshots and klines, on the one transport (:mod:`app.binance.transport`)."""

from __future__ import annotations

from typing import Any

import httpx
import msgspec
from msgspec import field

from app.binance.filters import SymbolFilters, parse_symbol_filters
from app.binance.transport import DEFAULT_LIMITS, Params, RestSettings, RestTransport, decode_answer
from app.clock import Clock


class DepthSnapshot(msgspec.Struct, frozen=True, gc=False):
    """``GET /fapi/v1/depth``: the REST snapshot a diff-depth book is synced from."""

    last_update_id: int = field(name="lastUpdateId")
    ts_event_ms: int = field(name="E")
    ts_trans_ms: int = field(name="T")
    # (price, quantity) levels, decimal strings as sent, best first.
    bids: list[tuple[str, str]]
    asks: list[tuple[str, str]]


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


_DEPTH = msgspec.json.Decoder(DepthSnapshot)
_KLINES = msgspec.json.Decoder(list[RestKline])


class PublicRest(RestTransport):
    """The public USD-M REST API. Use as ``async with PublicRest(url, clock) as rest:``."""

    def __init__(
        self,
        base_url: str,
        clock: Clock,
        settings: RestSettings = DEFAULT_LIMITS,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, settings, clock, transport=transport)

    async def _get(self, path: str, decoder: msgspec.json.Decoder[Any], params: Params) -> Any:
        return decode_answer("GET", path, decoder, await self._request("GET", path, params))

    async def symbol_filters(self) -> dict[str, SymbolFilters]:
        """Every symbol's tick size, step size and minimum notional."""
        return parse_symbol_filters(await self.exchange_info())

    async def depth(self, symbol: str, limit: int = 1000) -> DepthSnapshot:
        """``GET /fapi/v1/depth``: the order-book snapshot a diff-depth book syncs from."""
        params: Params = {"symbol": symbol.upper(), "limit": limit}
        snapshot: DepthSnapshot = await self._get("/fapi/v1/depth", _DEPTH, params)
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
        params: Params = {"symbol": symbol.upper(), "interval": interval, "limit": limit}
        if start_ms is not None:
            params["startTime"] = start_ms
        if end_ms is not None:
            params["endTime"] = end_ms
        klines: list[RestKline] = await self._get("/fapi/v1/klines", _KLINES, params)
        return klines
