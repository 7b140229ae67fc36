"""The panel over real HTTP (a real `appliance admin` process on a free loopback port): access
control on every route, CSRF on every state-changing request, throttling, cookies, headers."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from starlette.routing import Route

from app.admin.app import routes
from app.admin.config import AdminConfig

from .panelproc import PASSWORD, PanelHandle, csrf_from, login, page_token

pytestmark = pytest.mark.slow

PUBLIC = {"/login", "/setup", "/favicon.ico"}  # the icon shows on the login page too
PARAMS = {
    "{action}": "activate",
    "{name}": "trading_2026-01-01.db.zst",
    "{report_id}": "20260101T000000Z_default",
}


def _all_routes(tmp_path: Path) -> list[tuple[str, str]]:
    """(method, path) of every route the app declares, path parameters filled in."""
    fake: object = SimpleNamespace(cfg=AdminConfig(data_dir=tmp_path))
    out: list[tuple[str, str]] = []
    for route in routes(fake):  # type: ignore[arg-type]
        if not isinstance(route, Route):
            continue
        path = route.path
        for key, value in PARAMS.items():
            path = path.replace(key, value)
        for method in sorted(route.methods or {"GET"}):
            if method != "HEAD":
                out.append((method, path))
    return out


def test_every_route_but_login_setup_and_static_refuses_anonymous(
    panel: PanelHandle, tmp_path: Path
) -> None:
    checked = 0
    with panel.client() as c:
        for method, path in _all_routes(tmp_path):
            if path in PUBLIC:
                continue
            response = c.request(method, path)
            checked += 1
            if method == "GET":
                assert response.status_code == 303, (method, path, response.status_code)
                assert response.headers["location"] == "/login"
            else:
                assert response.status_code == 401, (method, path, response.status_code)
            assert "Dashboard" not in response.text
        htmx = c.get("/pnl", headers={"HX-Request": "true"})
        assert htmx.status_code == 401 and htmx.headers["HX-Redirect"] == "/login"
        assert c.get("/static/css/panel.css").status_code == 200
        assert c.get("/login").status_code == 200
    assert checked > 25


def test_without_a_password_everything_leads_to_setup(fresh_panel: PanelHandle) -> None:
    with fresh_panel.client() as c:
        assert c.get("/").headers["location"] == "/setup"
        assert c.get("/login").headers["location"] == "/setup"
        assert c.get("/setup").status_code == 200


def test_every_state_changing_request_needs_a_csrf_token(
    client: httpx.Client, tmp_path: Path
) -> None:
    checked = 0
    for method, path in _all_routes(tmp_path):
        if method == "GET":
            continue
        bare = client.request(method, path, data={"password": PASSWORD})
        assert bare.status_code == 403, (path, bare.status_code)
        forged = client.request(
            method, path, data={"password": PASSWORD}, headers={"X-CSRF-Token": "0" * 64}
        )
        assert forged.status_code == 403, (path, forged.status_code)
        field = client.request(method, path, data={"csrf_token": "f" * 64})
        assert field.status_code == 403, (path, field.status_code)
        checked += 1
    assert checked >= 15
    token = page_token(client)
    # With the token the request gets through the gate (the engine is down: an honest 422).
    ok = client.post("/mode/pause", headers={"X-CSRF-Token": token})
    assert ok.status_code == 422 and "engine not running" in ok.text
    form = client.post("/mode/resume", data={"csrf_token": token})
    assert form.status_code == 422


def test_login_needs_the_pre_session_csrf_token(panel: PanelHandle) -> None:
    with panel.client() as c:
        c.get("/login")
        assert c.post("/login", data={"password": PASSWORD}).status_code == 403
    with panel.client() as other:
        # A token minted for another browser's pre-session cookie does not work here.
        token = csrf_from(httpx.get(panel.base_url + "/login").text)
        other.get("/login")
        refused = other.post("/login", data={"password": PASSWORD, "csrf_token": token})
        assert refused.status_code == 403


def test_repeated_wrong_passwords_get_429(panel: PanelHandle) -> None:
    with panel.client() as c:
        codes = [login(c, "wrong password!").status_code for _ in range(4)]
        assert codes == [401, 401, 401, 429]
        blocked = login(c, PASSWORD)
        assert blocked.status_code == 429
        assert int(blocked.headers["Retry-After"]) >= 1


def test_wrong_password_page_says_so(panel: PanelHandle) -> None:
    with panel.client() as c:
        response = login(c, "not the password")
        assert response.status_code == 401
        assert 'id="login-error"' in response.text and "Wrong password" in response.text


def test_session_cookie_is_httponly_samesite_strict(panel: PanelHandle) -> None:
    with panel.client() as c:
        first = c.get("/login")
        pre = first.headers["set-cookie"]
        assert "HttpOnly" in pre and "SameSite=Strict" in pre
        response = login(c)
        assert response.status_code == 303
        cookie = response.headers["set-cookie"]
        assert cookie.startswith("panel_session=")
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
        assert "Secure" not in cookie  # plain HTTP in tests; Secure is set under HTTPS
        assert c.get("/").status_code == 200
        # Only a hash of the session id is stored.
        token = c.cookies["panel_session"]
        assert token.encode() not in (panel.data_dir / "panel.db").read_bytes()
        assert token.encode() not in (panel.data_dir / "panel.db-wal").read_bytes()


def test_security_headers_and_no_inline_script(client: httpx.Client) -> None:
    for path in ("/", "/pnl", "/models", "/mode", "/settings", "/system", "/sessions"):
        response = client.get(path)
        assert response.status_code == 200, path
        csp = response.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp
        assert "style-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["cache-control"] == "no-store"
        html = response.text
        assert not re.search(r"<script(?![^>]*\ssrc=)[^>]*>", html), path
        assert not re.search(r"\son[a-z]+\s*=", html), path
        assert not re.search(r"\sstyle\s*=", html), path
        assert "Engine not reachable" in html  # no engine behind this panel: the banner says so
    static = client.get("/static/vendor/htmx-2.0.11.min.js")
    assert static.status_code == 200 and "content-security-policy" in static.headers


def test_logout_ends_the_session(client: httpx.Client) -> None:
    token = page_token(client)
    response = client.post("/logout", headers={"X-CSRF-Token": token})
    assert response.status_code == 303
    assert client.get("/").status_code == 303


def test_sessions_list_and_revoke(panel: PanelHandle, client: httpx.Client) -> None:
    with panel.client() as second:
        assert login(second).status_code == 303
        page = client.get("/sessions")
        ids = re.findall(r'name="id" value="([0-9a-f]{64})"', page.text)
        assert len(ids) == 2
        mine = second.cookies["panel_session"]
        import hashlib

        theirs = hashlib.sha256(mine.encode()).hexdigest()
        assert theirs in ids
        token = page_token(client)
        revoked = client.post("/sessions/revoke", data={"id": theirs, "csrf_token": token})
        assert revoked.status_code == 200
        assert second.get("/").status_code == 303
        assert client.get("/").status_code == 200


def test_setup_with_the_one_time_code(fresh_panel: PanelHandle) -> None:
    code_file = fresh_panel.data_dir / "setup-code"
    assert code_file.stat().st_mode & 0o777 == 0o600
    code = fresh_panel.setup_code()
    with fresh_panel.client() as c:
        token = csrf_from(c.get("/setup").text)
        wrong = c.post(
            "/setup",
            data={
                "code": "AAAA-AAAA",
                "password": PASSWORD,
                "confirm": PASSWORD,
                "csrf_token": token,
            },
        )
        assert wrong.status_code == 401 and "Wrong or expired" in wrong.text
        short = c.post(
            "/setup",
            data={"code": code, "password": "short", "confirm": "short", "csrf_token": token},
        )
        assert short.status_code == 400
        done = c.post(
            "/setup",
            data={"code": code, "password": PASSWORD, "confirm": PASSWORD, "csrf_token": token},
        )
        assert done.status_code == 303 and done.headers["location"] == "/"
        assert c.get("/").status_code == 200
    assert not code_file.exists()
    hash_file = fresh_panel.data_dir / "secrets" / "admin-password.hash"
    assert hash_file.stat().st_mode & 0o777 == 0o600
    assert hash_file.read_text().startswith("$argon2")
    assert PASSWORD not in hash_file.read_text()
    assert code not in fresh_panel.log.read_text().split("setup code:", 1)[1][20:]
    with fresh_panel.client() as c:
        # The code is spent: the set-up page now sends everyone to the login.
        assert c.get("/setup").headers["location"] == "/login"
        assert login(c).status_code == 303


def test_trades_csv_and_pages_without_engine_data(client: httpx.Client) -> None:
    csv = client.get("/pnl/trades.csv?symbol=btcusdt&side=BUY")
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines()[0].startswith("ts_ns,time_utc,client_id")
    pnl = client.get("/pnl")
    assert "no data yet" in pnl.text


def test_upload_with_the_engine_down_shows_the_reason(client: httpx.Client) -> None:
    token = page_token(client, "/models")
    response = client.post(
        "/models/upload",
        files={"model": ("m.onnx", b"\x08\x01" * 100, "application/octet-stream")},
        headers={"X-CSRF-Token": token, "HX-Request": "true"},
    )
    assert response.status_code == 422
    assert "engine not running" in response.text
