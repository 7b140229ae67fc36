"""A small Binance request signer and client for the simulator's tests (not the engine's client).

``sign`` is Binance's ``signature``: hex HMAC-SHA256 of the exact parameter string. ``Signed``
sends requests the way the docs' examples do: parameters in the query string (or, for
``body=True``, in a form body), ``timestamp`` added, ``signature`` appended last.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx

API_KEY = "test-key-0123456789"
API_SECRET = "test-secret-9876543210"
SIM_ARGS = ("--api-key", API_KEY, "--api-secret", API_SECRET)


def sign(secret: str, payload: str) -> str:
    """Hex HMAC-SHA256 of ``payload`` keyed with ``secret``."""
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def signed_query(params: dict[str, Any], secret: str) -> str:
    """``params`` url-encoded in order, with ``&signature=...`` over exactly that string."""
    payload = urlencode([(k, str(v)) for k, v in params.items()])
    return f"{payload}&signature={sign(secret, payload)}"


@dataclass
class Reply:
    status: int
    headers: httpx.Headers
    body: Any

    @property
    def code(self) -> int | None:
        """Binance's error code, when the body is an error."""
        if isinstance(self.body, dict) and "code" in self.body and "msg" in self.body:
            code: int = self.body["code"]
            return code
        return None


@dataclass
class Signed:
    """Signed requests to a simulator at ``base_url``."""

    base_url: str
    api_key: str = API_KEY
    secret: str = API_SECRET
    offset_ms: int = 0
    timeout_s: float = 10.0
    _client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self._client = httpx.Client(base_url=self.base_url, timeout=self.timeout_s)

    def close(self) -> None:
        self._client.close()

    def now_ms(self) -> int:
        return int(time.time() * 1000) + self.offset_ms

    def call(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        *,
        body: bool = False,
        signed: bool = True,
        timeout_s: float | None = None,
    ) -> Reply:
        """Send one request; ``signed=False`` sends only the key (USER_STREAM endpoints)."""
        params = dict(params or {})
        headers = {"X-MBX-APIKEY": self.api_key}
        if signed:
            params.setdefault("timestamp", self.now_ms())
            text = signed_query(params, self.secret)
        else:
            text = urlencode(params)
        url, content = path, None
        if body:
            content = text.encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif text:
            url = f"{path}?{text}"
        resp = self._client.request(
            method,
            url,
            content=content,
            headers=headers,
            timeout=timeout_s if timeout_s is not None else self.timeout_s,
        )
        return Reply(resp.status_code, resp.headers, resp.json() if resp.content else None)

    def ok(self, method: str, path: str, params: dict[str, Any] | None = None, **kw: Any) -> Any:
        """``call`` that must succeed; returns the decoded body."""
        reply = self.call(method, path, params, **kw)
        assert reply.status == 200, (reply.status, reply.body)
        return reply.body
