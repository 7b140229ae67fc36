"""Styled error pages: 400, 404, 405 and 429 through the app's exception handlers, 500 as a fixed
page (``security.SecurityHeaders`` sends it: nothing that might itself fail is called for it).

None of them asks the engine anything: an error page must render whatever state the engine is in.
"""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from app.admin.state import panel_of

TITLES = {
    400: "That request was not understood",
    401: "Log in first",
    403: "Not allowed",
    404: "Nothing here",
    405: "Not allowed here",
    413: "Too large",
    429: "Too many attempts",
}

# The 500 page: fixed text, the panel's stylesheet, no detail (the server's log has it).
SERVER_ERROR_HTML = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8">'
    '<meta name="viewport" content="width=device-width, initial-scale=1">'
    "<title>Something went wrong · Appliance panel</title>"
    '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">'
    '<link rel="stylesheet" href="/static/css/panel.css"></head><body><main>'
    '<section class="card narrow error-page" id="error-page"><h1>Something went wrong</h1>'
    "<p>The panel hit an error it did not expect (HTTP 500). Trading is not affected: the "
    "engine runs in its own process. The panel's log has the details.</p>"
    '<p><a href="/">Back to the dashboard</a></p></section></main></body></html>'
)


def error_page(
    request: Request, status: int, message: str, headers: dict[str, str] | None = None
) -> Response:
    """The error page for ``status`` with ``message`` (a sentence), as HTML."""
    templates: Jinja2Templates = panel_of(request).extra["templates"]
    state: Any = request.state
    ctx: dict[str, Any] = {
        "status": status,
        "title": TITLES.get(status, "Error"),
        "message": message,
        "csrf_token": getattr(state, "csrf_token", ""),
        "session": getattr(state, "session", None),
        "alarms": [],
    }
    return templates.TemplateResponse(
        request, "error.html", ctx, status_code=status, headers=headers
    )


def _sentence(detail: str) -> str:
    text = detail.strip()
    return text if text.endswith((".", "!", "?")) else text + "."


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"There is no page at {request.url.path}."
    elif exc.status_code == 405:
        message = f"{request.method} is not accepted at {request.url.path}."
    else:
        message = _sentence(exc.detail)
    return error_page(request, exc.status_code, message, dict(exc.headers or {}))


def too_many(request: Request, wait_s: float) -> Response:
    """429 with the wait, in words and in ``Retry-After``."""
    seconds = max(1, round(wait_s))
    message = (
        f"Too many wrong attempts from here: wait {seconds} s, then try again. "
        "Nothing is locked: the wait grows with each wrong attempt and ends by itself."
    )
    return error_page(request, 429, message, {"Retry-After": str(seconds)})
