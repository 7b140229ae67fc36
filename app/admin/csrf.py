"""CSRF tokens: an HMAC of the session id (or, before login, of a random pre-session cookie)
under the panel's key. Forms carry it in ``csrf_token``; htmx sends it as ``X-CSRF-Token`` (set
once on ``<body hx-headers>`` from the page's meta tag)."""

from __future__ import annotations

import hashlib
import hmac

HEADER = "x-csrf-token"
FIELD = "csrf_token"
PRE_COOKIE = "panel_pre"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def token_for(key: bytes, binding: str) -> str:
    """The token for a session (``binding`` = the session's id hash) or a pre-session cookie."""
    return hmac.new(key, b"csrf:" + binding.encode(), hashlib.sha256).hexdigest()


def valid(key: bytes, binding: str, given: str) -> bool:
    return bool(binding) and bool(given) and hmac.compare_digest(token_for(key, binding), given)
