"""Login, logout and first set-up (with the one-time code)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from app.admin import errorpages
from app.admin.config import ADMIN_USER
from app.admin.gate import cookie_header
from app.admin.passwords import check_strength, consume_setup_code, use_setup_code
from app.admin.render import render
from app.admin.sessions import COOKIE
from app.admin.state import client_of, panel_of
from app.admin.throttle import address_key
from app.admin.views.common import form_dict
from app.errors import ConfigError


def _start_session(request: Request) -> Response:
    panel = panel_of(request)
    agent = request.headers.get("user-agent", "")
    token = panel.sessions.create(ADMIN_USER, client_of(request), agent)
    response = RedirectResponse("/", 303)
    secure = request.url.scheme == "https"
    response.raw_headers.append((b"set-cookie", cookie_header(COOKIE, token, secure=secure)))
    return response


def _too_many(request: Request, wait: float, template: str) -> Response:
    return errorpages.too_many(request, wait)


async def login_page(request: Request) -> Response:
    panel = panel_of(request)
    if not panel.passwords.is_set():
        return RedirectResponse("/setup", 303)
    if request.state.session is not None:
        return RedirectResponse("/", 303)
    return await render(request, "login.html", {"error": ""})


async def login_submit(request: Request) -> Response:
    panel = panel_of(request)
    client = client_of(request)
    agent = request.headers.get("user-agent", "")
    key = address_key(client)
    # Claimed before the body is parsed or the password checked: concurrent attempts cannot all
    # pass the allowance (see ``throttle``).
    claim = panel.throttle.attempt(key)
    if not claim.granted:
        panel.db.audit_login(panel.clock.time_ns(), client, ADMIN_USER, "throttled", agent)
        return _too_many(request, claim.wait_s, "login.html")
    form = await form_dict(request)
    if await panel.passwords.check(form.get("password", "")):
        panel.throttle.success(key)
        panel.db.audit_login(panel.clock.time_ns(), client, ADMIN_USER, "ok", agent)
        return _start_session(request)
    panel.db.audit_login(panel.clock.time_ns(), client, ADMIN_USER, "wrong password", agent)
    error = "Wrong password."
    if claim.delay_s > 0:
        error += f" Wait {claim.delay_s:.0f} s before the next attempt."
    return await render(request, "login.html", {"error": error}, status_code=401)


async def logout(request: Request) -> Response:
    panel = panel_of(request)
    session = request.state.session
    if session is not None:
        panel.sessions.revoke(session.id_hash)
    response = RedirectResponse("/login", 303)
    secure = request.url.scheme == "https"
    response.raw_headers.append(
        (b"set-cookie", cookie_header(COOKIE, "", secure=secure, max_age=0))
    )
    response.headers["HX-Redirect"] = "/login"
    return response


async def setup_page(request: Request) -> Response:
    panel = panel_of(request)
    if panel.passwords.is_set():
        return RedirectResponse("/login", 303)
    return await render(request, "setup.html", {"error": ""})


async def setup_submit(request: Request) -> Response:
    panel = panel_of(request)
    if panel.passwords.is_set():
        return RedirectResponse("/login", 303)
    client = client_of(request)
    agent = request.headers.get("user-agent", "")
    key = address_key(client)
    claim = panel.throttle.attempt(key)
    if not claim.granted:
        return _too_many(request, claim.wait_s, "setup.html")
    form = await form_dict(request)
    if not use_setup_code(panel.cfg, form.get("code", ""), panel.clock):
        panel.db.audit_login(panel.clock.time_ns(), client, ADMIN_USER, "wrong setup code", agent)
        return await render(
            request, "setup.html", {"error": "Wrong or expired set-up code."}, status_code=401
        )
    panel.throttle.success(key)  # the code was right: a weak password is no wrong guess
    password, confirm = form.get("password", ""), form.get("confirm", "")
    error = ""
    if password != confirm:
        error = "The two passwords differ."
    else:
        try:
            check_strength(password)
        except ConfigError as exc:
            error = str(exc).capitalize() + "."
    if error:
        return await render(request, "setup.html", {"error": error}, status_code=400)
    await panel.passwords.replace(password)
    consume_setup_code(panel.cfg)
    panel.db.audit_login(panel.clock.time_ns(), client, ADMIN_USER, "password set", agent)
    return _start_session(request)
