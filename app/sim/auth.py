"""Binance's request authentication for the signed endpoints, checked as the docs describe it.

* The API key travels in the ``X-MBX-APIKEY`` header (USER_STREAM endpoints need only that).
* SIGNED (TRADE, USER_DATA) requests add ``timestamp`` (ms) and ``signature``: the hex
  HMAC-SHA256, keyed with the secret, of the *exact* ``totalParams``: the query string
  concatenated with the form body, with no ``&`` between the two (the docs' Example 3), and with
  the ``signature`` pair itself left out. Hex is compared case-insensitively, as documented.
* ``recvWindow`` defaults to 5000 ms and may not exceed 60000; a request is on time when
  ``timestamp < serverTime + 1000 and serverTime - timestamp <= recvWindow``.

Errors come back in Binance's shape through :class:`app.sim.rest.ApiError`.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import parse_qsl

from app.sim.apierror import ApiError

DEFAULT_RECV_WINDOW_MS = 5000
MAX_RECV_WINDOW_MS = 60_000
# Binance answers the key errors with 401.
_AUTH_STATUS = 401


def sign(secret: str, payload: str) -> str:
    """The hex HMAC-SHA256 of ``payload`` keyed with ``secret``: Binance's ``signature``."""
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def _without_signature(raw: str) -> tuple[str, str | None]:
    """``raw`` with its ``signature=`` pair removed, and that pair's value (if any)."""
    if "signature=" not in raw:
        return raw, None
    kept: list[str] = []
    found: str | None = None
    for part in raw.split("&"):
        if part.startswith("signature="):
            found = part[len("signature=") :]
        else:
            kept.append(part)
    return "&".join(kept), found


def missing(name: str) -> ApiError:
    """Binance's -1102 for a parameter that was not sent."""
    return ApiError(
        -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    )


@dataclass(frozen=True)
class Credentials:
    """The one API key the simulator knows, and its secret."""

    api_key: str
    secret: str

    def check_key(self, header: str | None) -> None:
        """Refuse a request without our key: -2014 when absent or malformed, -2015 when wrong."""
        if not header or not header.strip() or len(header) > 256:
            raise ApiError(-2014, "API-key format invalid.", _AUTH_STATUS)
        if not hmac.compare_digest(header.encode(), self.api_key.encode()):
            raise ApiError(-2015, "Invalid API-key, IP, or permissions for action.", _AUTH_STATUS)

    def verify(
        self, api_key: str | None, query: str, body: str, server_time_ms: int
    ) -> dict[str, str]:
        """Check a SIGNED request; return its parameters (query and body merged).

        ``query`` and ``body`` are the raw (still percent-encoded) strings as received.
        """
        self.check_key(api_key)
        query_payload, query_sig = _without_signature(query)
        body_payload, body_sig = _without_signature(body)
        params = dict(parse_qsl(query_payload, keep_blank_values=True))
        params.update(parse_qsl(body_payload, keep_blank_values=True))
        timestamp = params.get("timestamp", "")
        if not timestamp.isdigit() or len(timestamp) > 20:
            raise missing("timestamp")
        recv_text = params.get("recvWindow", "")
        recv_window = DEFAULT_RECV_WINDOW_MS
        if recv_text:
            if not recv_text.isdigit() or len(recv_text) > 20:
                raise ApiError(-1100, "Illegal characters found in parameter 'recvWindow'.")
            recv_window = int(recv_text)
            if recv_window > MAX_RECV_WINDOW_MS:
                raise ApiError(-1131, "recvWindow must be less than 60000")
        ts = int(timestamp)
        if ts >= server_time_ms + 1000:
            raise ApiError(
                -1021, "Timestamp for this request was 1000ms ahead of the server's time."
            )
        if server_time_ms - ts > recv_window:
            raise ApiError(-1021, "Timestamp for this request is outside of the recvWindow.")
        signature = body_sig if body_sig is not None else query_sig
        if not signature:
            raise missing("signature")
        expected = sign(self.secret, query_payload + body_payload)
        if not hmac.compare_digest(signature.lower().encode(), expected.encode()):
            raise ApiError(-1022, "Signature for this request is not valid.")
        return params
