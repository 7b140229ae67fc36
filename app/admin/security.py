"""Security headers on every response: a CSP with no inline script or style, nosniff, no
referrer, no framing; and ``no-store`` on everything but the vendored static files. A response
that sets its own, stricter CSP keeps it (a saved backtest report: :func:`report_csp`).

500s included: Starlette's own error middleware sits outside every user middleware, so its 500
would go out bare. When the app raises before answering, this middleware answers the 500 itself
(headers on, no detail) and re-raises, so the error is still logged by the server; the outer error
middleware sees a response already started and sends nothing more.
"""

from __future__ import annotations

import base64
import hashlib
import re

from starlette.responses import HTMLResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.admin.errorpages import SERVER_ERROR_HTML

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)

_CSP_HEADER = b"content-security-policy"
HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (_CSP_HEADER, CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
)


_STYLE = re.compile(rb"<style>(.*?)</style>", re.DOTALL)


def report_csp(html: bytes) -> str:
    """The CSP for a saved backtest report (self-contained: inline SVG and one ``<style>``):
    nothing may load or run, only its own ``<style>`` blocks (by hash, so an injected one
    would not apply), and ``sandbox`` puts the page in a unique origin with scripts, forms,
    popups and top navigation blocked, even if a report held markup it should not."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(m.group(1)).digest()).decode() + "'"
        for m in _STYLE.finditer(html)
    )
    styles = hashes or "'none'"
    return (
        f"default-src 'none'; style-src {styles}; img-src data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'; sandbox"
    )


class SecurityHeaders:
    """Pure ASGI middleware (streams such as SSE pass through untouched)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/static/")
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                own_csp = any(k.lower() == _CSP_HEADER for k, _ in headers)
                headers.extend(h for h in HEADERS if not (own_csp and h[0] == _CSP_HEADER))
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            if not started:
                error = HTMLResponse(SERVER_ERROR_HTML, 500)
                await error(scope, receive, send_with_headers)
            raise
