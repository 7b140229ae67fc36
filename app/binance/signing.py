"""Binance's request signature for SIGNED (TRADE, USER_DATA) endpoints.

``signature`` is the hex HMAC-SHA256, keyed with the API secret, of the exact ``totalParams``
string: the query string followed by the form body (no ``&`` between the two), the ``signature``
pair itself left out. We send everything in one string (the query for GET/DELETE, the form body
for POST/PUT), so ``totalParams`` is simply the url-encoded parameters in the order sent.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode


def sign(secret: str, payload: str) -> str:
    """The hex HMAC-SHA256 of ``payload`` keyed with ``secret``: Binance's ``signature``."""
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def encode_params(params: Mapping[str, str | int]) -> str:
    """``params`` url-encoded in insertion order (the order is part of what is signed)."""
    return urlencode([(k, str(v)) for k, v in params.items()])


def signed_payload(params: Mapping[str, str | int], secret: str) -> str:
    """``params`` encoded, with ``&signature=<hex>`` over exactly that string appended last."""
    payload = encode_params(params)
    return f"{payload}&signature={sign(secret, payload)}"


@dataclass(frozen=True)
class Credentials:
    """An API key and its secret. Neither appears in ``repr`` (logs, tracebacks)."""

    api_key: str = field(repr=False)
    api_secret: str = field(repr=False)

    def __repr__(self) -> str:
        return "Credentials(<redacted>)"
