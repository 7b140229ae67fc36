"""Binance's REST rate limits: request weight per minute, order counts per minute and 10 s, bans.

Every ``/fapi/`` request adds its weight to the client IP's count for the current minute (fixed
windows, as Binance's ``X-MBX-USED-WEIGHT-1M`` resets on the minute) and is answered with that
count in ``X-MBX-USED-WEIGHT-1M``; ``POST /fapi/v1/order`` also counts against the order limits
(``X-MBX-ORDER-COUNT-1M``/``-10S``). Over the weight limit the answer is 429 -1003 with
``Retry-After`` (seconds to the window's end); a client that goes on sending more than
``ban_after_429s`` requests in that window is banned: 418 -1003 with ``Retry-After`` for
``ban_s``. Over an order limit the answer is 429 -1015. ``/_sim/`` requests are not counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

import msgspec
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.binance import weights
from app.clock import Clock
from app.sim.config import TradingSettings

MINUTE_MS = 60_000
TEN_S_MS = 10_000


def request_weight(method: str, path: str, query: str) -> int:
    """The weight Binance charges for one request: the client's own table
    (:mod:`app.binance.weights`), so what the simulator charges is what clients budget for."""
    params: dict[str, str | int] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        params.setdefault(name, value)  # a repeated parameter: its first value counts
    return weights.request_weight(method, path, params)


@dataclass
class _Client:
    window: int = -1
    weight: int = 0
    over_limit: int = 0
    orders_window: int = -1
    orders: int = 0
    orders_10s_window: int = -1
    orders_10s: int = 0
    banned_until_ms: int = 0


@dataclass(frozen=True)
class Verdict:
    """What to answer: ``status`` 0 means go ahead; ``headers`` go on the answer either way."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""


@dataclass
class RateLimiter:
    """Counts per client IP. ``clock`` gives the window boundaries (server time, unoffset)."""

    settings: TradingSettings
    clock: Clock
    clients: dict[str, _Client] = field(default_factory=dict)
    rejected_429: int = 0
    rejected_418: int = 0

    def admit(self, ip: str, method: str, path: str, query: str) -> Verdict:
        """Count one request and decide whether it may be served."""
        cfg = self.settings
        now = self.clock.time_ns() // 1_000_000
        c = self.clients.setdefault(ip, _Client())
        window = now // MINUTE_MS
        if c.window != window:
            c.window, c.weight, c.over_limit = window, 0, 0
        if c.banned_until_ms > now:
            return self._banned(ip, c, now)
        c.weight += request_weight(method, path, query)
        headers = [(b"x-mbx-used-weight-1m", str(c.weight).encode())]
        is_order = method == "POST" and path == "/fapi/v1/order"
        if is_order:
            if c.orders_window != window:
                c.orders_window, c.orders = window, 0
            w10 = now // TEN_S_MS
            if c.orders_10s_window != w10:
                c.orders_10s_window, c.orders_10s = w10, 0
            c.orders += 1
            c.orders_10s += 1
            headers.append((b"x-mbx-order-count-1m", str(c.orders).encode()))
            headers.append((b"x-mbx-order-count-10s", str(c.orders_10s).encode()))
        if c.weight > cfg.weight_limit:
            c.over_limit += 1
            if c.over_limit > cfg.ban_after_429s + 1:
                c.banned_until_ms = now + int(cfg.ban_s * 1000)
                return self._banned(ip, c, now)
            self.rejected_429 += 1
            retry = math.ceil(((window + 1) * MINUTE_MS - now) / 1000)
            msg = (
                f"Too many requests; current limit of IP({ip}) is {cfg.weight_limit} requests "
                "per minute. Please use the websocket for live updates to avoid polling the API."
            )
            return _reject(429, -1003, msg, headers, retry)
        if is_order:
            if c.orders > cfg.order_limit_1m:
                retry = math.ceil(((window + 1) * MINUTE_MS - now) / 1000)
                msg = (
                    f"Too many new orders; current limit is {cfg.order_limit_1m} orders per MINUTE."
                )
                return _reject(429, -1015, msg, headers, retry)
            if c.orders_10s > cfg.order_limit_10s:
                retry = math.ceil(((now // TEN_S_MS + 1) * TEN_S_MS - now) / 1000)
                msg = (
                    f"Too many new orders; current limit is {cfg.order_limit_10s} orders per "
                    "TEN_SECONDS."
                )
                return _reject(429, -1015, msg, headers, retry)
        return Verdict(0, headers)

    def _banned(self, ip: str, c: _Client, now: int) -> Verdict:
        self.rejected_418 += 1
        retry = max(1, math.ceil((c.banned_until_ms - now) / 1000))
        msg = (
            f"Way too many requests; IP({ip}) banned until {c.banned_until_ms}. "
            "Please use the websocket for live updates to avoid bans."
        )
        headers = [(b"x-mbx-used-weight-1m", str(c.weight).encode())]
        return _reject(418, -1003, msg, headers, retry)

    def stats(self) -> dict[str, object]:
        return {
            "rejected_429": self.rejected_429,
            "rejected_418": self.rejected_418,
            "clients": {
                ip: {
                    "weight_1m": c.weight,
                    "orders_1m": c.orders,
                    "banned_until": c.banned_until_ms,
                }
                for ip, c in self.clients.items()
            },
        }


def _reject(
    status: int, code: int, msg: str, headers: list[tuple[bytes, bytes]], retry_after_s: int
) -> Verdict:
    body = msgspec.json.encode({"code": code, "msg": msg})
    out = [
        *headers,
        (b"retry-after", str(retry_after_s).encode()),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    return Verdict(status, out, body)


class RateLimitMiddleware:
    """ASGI middleware applying a :class:`RateLimiter` to ``/fapi/`` requests."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/fapi/"):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        ip = client[0] if client else "unknown"
        query = scope.get("query_string", b"").decode("latin-1")
        verdict = self.limiter.admit(ip, scope["method"], scope["path"], query)
        if verdict.status:
            await send(
                {
                    "type": "http.response.start",
                    "status": verdict.status,
                    "headers": verdict.headers,
                }
            )
            await send({"type": "http.response.body", "body": verdict.body})
            return
        extra = verdict.headers

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)
