"""The gate every request passes: session lookup, anonymous refusal, CSRF check.

Pure ASGI middleware so that it also guards the SSE streams without buffering them. Public paths
(login, set-up, static files) pass without a session; everything else gets a redirect to the
login (or set-up) page, or 401 for htmx and non-GET requests. Every state-changing request, public
or not, needs a valid CSRF token in the ``X-CSRF-Token`` header or, for url-encoded forms, the
``csrf_token`` field; anything else gets 403.

Bodies: an anonymous request to a private path is refused before a byte of its body is read. Every
other state-changing request's body is read here into memory, at most ``MAX_FORM_BYTES`` (checked
from ``Content-Length`` first, then while it streams: 413 either way) and handed on from memory,
so nothing behind the gate (Starlette's form parser spools large parts to temporary files) ever
sees a larger one. The exceptions are the model, backup-archive and system-update uploads
(``STREAMED_PATHS``, session required), which ``uploads.receive_upload`` streams to disk under
their own limits (``upload_limit``).
"""

from __future__ import annotations

import secrets
from http.cookies import SimpleCookie
from urllib.parse import parse_qs

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.admin import csrf
from app.admin.config import AdminConfig
from app.admin.sessions import COOKIE
from app.admin.state import Panel

PUBLIC_PATHS = frozenset({"/login", "/setup", "/favicon.ico"})
MAX_FORM_BYTES = 256 * 1024
ARCHIVE_UPLOAD = "/system/upload"
UPDATE_UPLOAD = "/system/update"
STREAMED_PATHS = frozenset({"/models/upload", ARCHIVE_UPLOAD, UPDATE_UPLOAD})
# Multipart framing around an uploaded file: boundaries, part headers, the small fields.
_UPLOAD_OVERHEAD = 64 * 1024


def upload_limit(cfg: AdminConfig, path: str) -> int:
    """The largest file a streamed upload path takes (its view checks the same limit)."""
    if path == ARCHIVE_UPLOAD:
        return cfg.archive_upload_max_bytes
    if path == UPDATE_UPLOAD:
        return cfg.update_upload_max_bytes
    return cfg.upload_max_bytes


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith("/static/")


def cookie_header(name: str, value: str, *, secure: bool, max_age: int | None = None) -> bytes:
    """A Set-Cookie value: HttpOnly, SameSite=Strict, Path=/, Secure under HTTPS."""
    parts = [f"{name}={value}", "Path=/", "HttpOnly", "SameSite=Strict"]
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    if secure:
        parts.append("Secure")
    return "; ".join(parts).encode()


def _cookies(headers: Headers) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except Exception:
        return {}
    return {k: m.value for k, m in jar.items()}


class Gate:
    """See the module docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        panel: Panel = state["panel"]
        headers = Headers(scope=scope)
        cookies = _cookies(headers)
        path: str = scope["path"]
        method: str = scope["method"]
        session = panel.sessions.lookup(cookies.get(COOKIE, ""))
        state["session"] = session
        pre = cookies.get(csrf.PRE_COOKIE, "")
        minted = ""
        if session is None and not pre and not path.startswith("/static/"):
            pre = minted = secrets.token_urlsafe(24)
        state["csrf_binding"] = session.id_hash if session else pre
        state["csrf_token"] = csrf.token_for(panel.key, state["csrf_binding"])

        if session is None and not is_public(path):
            await self._refuse(scope, receive, send, headers, panel, method)
            return
        if method not in csrf.SAFE_METHODS:
            streamed = path in STREAMED_PATHS
            limit = MAX_FORM_BYTES
            if streamed:
                limit = upload_limit(panel.cfg, path) + _UPLOAD_OVERHEAD
            body: bytes | None = b""
            if _declared_length(headers) > limit:
                body = None
            elif not streamed:
                body = await _read_body(receive, limit)
            if body is None:
                await PlainTextResponse(_too_large(limit), 413)(scope, receive, send)
                return
            if not streamed:
                receive = _replay(body, receive)
            given = headers.get(csrf.HEADER, "")
            ctype = headers.get("content-type", "")
            if not given and ctype.startswith("application/x-www-form-urlencoded"):
                fields = parse_qs(body.decode("latin-1"), keep_blank_values=True)
                given = fields.get(csrf.FIELD, [""])[0]
            if not csrf.valid(panel.key, state["csrf_binding"], given):
                await PlainTextResponse("CSRF token missing or invalid", 403)(scope, receive, send)
                return

        secure = scope.get("scheme") == "https"

        async def send_wrapped(message: Message) -> None:
            if minted and message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"set-cookie", cookie_header(csrf.PRE_COOKIE, minted, secure=secure)),
                ]
            await send(message)

        await self.app(scope, receive, send_wrapped)

    @staticmethod
    async def _refuse(
        scope: Scope, receive: Receive, send: Send, headers: Headers, panel: Panel, method: str
    ) -> None:
        target = "/login" if panel.passwords.is_set() else "/setup"
        response: Response
        if headers.get("hx-request"):
            response = PlainTextResponse("login required", 401, headers={"HX-Redirect": target})
        elif method in ("GET", "HEAD"):
            response = RedirectResponse(target, 303)
        else:
            response = PlainTextResponse("login required", 401)
        await response(scope, receive, send)


def _declared_length(headers: Headers) -> int:
    """The ``Content-Length`` the client announced (0 when absent: the stream is counted)."""
    try:
        return int(headers.get("content-length", "0"))
    except ValueError:
        return 0  # the HTTP server refuses malformed lengths before the app sees them


def _too_large(limit: int) -> str:
    if limit >= 1024 * 1024:
        return f"request body too large (at most {limit // (1024 * 1024)} MiB)"
    return f"request body too large (at most {limit // 1024} KiB)"


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None as soon as it passes ``limit`` bytes (the rest is never read)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
