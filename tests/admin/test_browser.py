"""Browser tests: Playwright drives Debian's Chromium against the real panel, with the real
engine and simulator behind it. Screenshots of each page go to artifacts/screenshots/."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from app import contract, ctl
from app.store import db
from tests.handlers import call_engine
from tests.integration.engineproc import running_engine, wait_for
from tests.simproc import running_sim

from .panelproc import PASSWORD, PanelHandle, running_panel, set_password

# The simulator's account for the go-live test (letters and digits, as the key checks require).
SIM_KEY, SIM_SECRET = "simTestApiKey0001", "simTestApiSecret0001"

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
playwright_api = pytest.importorskip("playwright.sync_api")
if not CHROMIUM.exists():
    pytest.skip("no /usr/bin/chromium (run scripts/install-browser.sh)", allow_module_level=True)

# Chromium must not try the network (it stalls here): no QUIC, no background fetches.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Simulator, engine and panel processes sharing one data directory (no password yet)."""
    root = tmp_path_factory.mktemp("stack")
    data = root / "data"
    keys = ("--api-key", SIM_KEY, "--api-secret", SIM_SECRET)
    with running_sim("--seed", "7", "--funding-interval-s", "60", *keys) as sim:
        with running_engine(data, sim.rest_url, sim.ws_url, log=root / "engine.log") as engine:
            with running_panel(data, log=root / "panel.log") as panel:
                yield {"sim": sim, "engine": engine, "panel": panel, "data": data, "root": root}


@pytest.fixture(scope="module")
def browser(stack: dict[str, Any]) -> Iterator[Any]:
    with playwright_api.sync_playwright() as pw:
        instance = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 360, "height": 780})
    context.set_default_timeout(20_000)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.csp_errors = errors
    try:
        yield pg
    finally:
        context.close()


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def ensure_password(stack: dict[str, Any]) -> None:
    if not (stack["data"] / "secrets" / "admin-password.hash").exists():
        set_password(stack["data"])


def log_in(page: Any, panel: PanelHandle, password: str = PASSWORD) -> None:
    page.goto(panel.base_url + "/login")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def no_csp_violations(page: Any) -> None:
    violations = [e for e in page.csp_errors if "Content Security Policy" in e]
    assert not violations, violations


def test_set_up_with_the_one_time_code(stack: dict[str, Any], page: Any) -> None:
    panel: PanelHandle = stack["panel"]
    page.goto(panel.base_url + "/")
    assert page.url.endswith("/setup")
    shot(page, "setup")
    page.get_by_label("Set-up code").fill(panel.setup_code())
    page.get_by_label("New password").fill(PASSWORD)
    page.get_by_label("Repeat the password").fill(PASSWORD)
    page.get_by_role("button", name="Set password").click()
    page.wait_for_url(panel.base_url + "/")
    assert page.locator("h1").inner_text() == "Dashboard"
    no_csp_violations(page)


def test_wrong_password_shows_an_error(stack: dict[str, Any], page: Any) -> None:
    ensure_password(stack)
    log_in(page, stack["panel"], "this is not it")
    error = page.locator("#login-error")
    error.wait_for()
    assert "Wrong password" in error.inner_text()
    shot(page, "login-wrong-password")


def test_dashboard_shows_engine_state_and_feed_health(stack: dict[str, Any], page: Any) -> None:
    ensure_password(stack)
    panel: PanelHandle = stack["panel"]
    log_in(page, panel)
    page.wait_for_url(panel.base_url + "/")
    state = page.locator("#engine-state")
    assert state.inner_text().startswith(("running", "paused", "halted"))
    page.locator("#feeds tbody tr").first.wait_for()
    feeds = page.locator("#feeds").inner_text()
    # Streams by what they carry; the raw stream name is the cell's tooltip.
    assert "BTCUSDT trades" in feeds and "ETHUSDT mark price" in feeds
    assert page.locator("#feeds td[title='ethusdt@markPrice@1s']").count() == 1
    # Live values move without a reload (SSE): the message count changes.
    before = int(page.locator("#messages").inner_text())
    page.wait_for_function(
        "n => Number(document.querySelector('#messages').textContent) > n", arg=before
    )
    shot(page, "dashboard")
    no_csp_violations(page)


def test_kill_switch_is_one_tap_and_resume(stack: dict[str, Any], page: Any) -> None:
    ensure_password(stack)
    panel: PanelHandle = stack["panel"]
    sock = stack["data"] / "control.sock"
    log_in(page, panel)
    page.goto(panel.base_url + "/mode")
    assert page.locator("#kill-form input[type=password]").count() == 0
    page.get_by_label("Reason (optional)").fill("browser test")
    page.get_by_role("button", name="Kill").click()
    page.locator("#mode-outcome .ok").wait_for()
    assert "halted" in page.locator("#mode-outcome").inner_text()
    status = ctl.request(sock, "status")["result"]
    assert status["state"] == "halted" and status["halt_reason"] == "browser test"
    assert not status["trading"] and status["blockers"][0]["code"] == "kill_switch"
    shot(page, "mode-killed")
    page.goto(panel.base_url + "/")
    assert page.locator("#engine-state").inner_text().startswith("halted")
    assert "kill switch: browser test" in page.locator("#trading-now").inner_text()
    page.goto(panel.base_url + "/mode")
    page.get_by_role("button", name="Resume").click()
    page.locator("#mode-outcome .ok").wait_for()
    assert ctl.request(sock, "status")["result"]["state"] == "running"
    journal = ctl.request(sock, "journal", {"limit": 10})["result"]
    kills = [j for j in journal if j["cmd"] == "kill"]
    assert kills and kills[0]["actor"].startswith("panel:admin@127.0.0.1")


def _equity_points(data: Path) -> int:
    conn = db.connect(data / "trading.db", readonly=True)
    try:
        return int(conn.execute("SELECT count(*) FROM equity").fetchone()[0])
    finally:
        conn.close()


def _has_equity_table(data: Path) -> bool:
    conn = db.connect(data / "trading.db", readonly=True)
    try:
        return bool(conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'equity'").fetchone())
    finally:
        conn.close()


def test_pnl_page_shows_the_engines_equity_curve(stack: dict[str, Any], page: Any) -> None:
    ensure_password(stack)
    data: Path = stack["data"]
    assert _has_equity_table(data), "the engine's trading database has no equity table"
    try:
        wait_for(
            "equity points",
            lambda: _equity_points(data) >= 2,
            60,
            stack["engine"],
            stack["root"] / "engine.log",
        )
    except AssertionError:
        # Seed through the engine's own persistence code (the test writes, never the panel).
        from app.engine.portfolio import EquityPoint, append_equity

        conn = db.connect(data / "trading.db", synchronous="FULL")
        base = 1_700_000_000_000_000_000
        points = [
            EquityPoint(
                base + i * 60_000_000_000,
                Decimal("10000") + Decimal(i * 3 - (i % 4) * 5),
                Decimal(i),
                Decimal(0),
                Decimal("0.5"),
                Decimal(0),
            )
            for i in range(30)
        ]
        append_equity(conn, points)
        conn.close()
    panel: PanelHandle = stack["panel"]
    log_in(page, panel)
    page.goto(panel.base_url + "/pnl")
    # A phone's width; the latest run of points (a stop of the engine would break the line).
    chart = page.locator("#equity-chart .chart-narrow svg polyline").last
    chart.wait_for(state="attached")  # a flat line has no height: "hidden" to Playwright
    assert len(chart.get_attribute("points").split()) >= 2
    shot(page, "pnl")
    no_csp_violations(page)


@pytest.mark.parametrize("path", ["/models", "/settings", "/system", "/sessions", "/mode"])
def test_every_page_renders_on_a_phone(stack: dict[str, Any], page: Any, path: str) -> None:
    ensure_password(stack)
    panel: PanelHandle = stack["panel"]
    log_in(page, panel)
    page.goto(panel.base_url + path)
    assert page.locator("h1").is_visible()
    # Nothing wider than the 360 px screen except inside the scrolling table wrappers.
    overflow = page.evaluate("document.documentElement.scrollWidth")
    assert overflow <= 360, overflow
    unlabeled = page.evaluate(
        """() => [...document.querySelectorAll('input:not([type=hidden]), select')]
              .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
              .map(e => e.name)"""
    )
    assert unlabeled == []
    shot(page, path.strip("/"))
    no_csp_violations(page)


def _engine_has(stack: dict[str, Any], command: str) -> bool:
    reply = ctl.request(stack["data"] / "control.sock", "help")
    return command in {c["name"] for c in reply.get("result", [])}


def _until(check: Any, timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.2)
    raise AssertionError(f"not true within {timeout_s:.0f} s")


def _model_variant(tmp: Path, name: str, **changes: str) -> Path:
    """The default model with some contract metadata changed (no onnx package needed)."""
    from app.engine.onnxproto import read_header, with_metadata

    data = (Path(__file__).resolve().parents[2] / "models" / "default.onnx").read_bytes()
    meta = {**dict(read_header(data).metadata), **changes}
    path = tmp / f"{name}.onnx"
    path.write_bytes(with_metadata(data, meta))
    return path


def _upload(page: Any, path: Path) -> str:
    page.get_by_label("Model file").set_input_files(str(path))
    page.get_by_role("button", name="Upload and validate").click()
    # The verdict for this file (an earlier upload's stays on the page until it is replaced).
    outcome = page.locator("#model-outcome .outcome", has_text=path.name)
    outcome.wait_for(timeout=60_000)
    text: str = outcome.inner_text()
    return text


def test_broken_uploads_are_refused_and_the_active_model_stays(
    stack: dict[str, Any], page: Any, tmp_path: Path
) -> None:
    ensure_password(stack)
    panel: PanelHandle = stack["panel"]
    sock = stack["data"] / "control.sock"
    active = ctl.request(sock, "model.list")["result"]["active"]
    log_in(page, panel)
    page.goto(panel.base_url + "/models")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage" * 300)
    assert "not an ONNX model" in _upload(page, corrupt)
    wrong_shape = _model_variant(tmp_path, "wrong-shape", window="8")
    assert "window x features = 8x10" in _upload(page, wrong_shape)
    shot(page, "models-refused")
    assert ctl.request(sock, "model.list")["result"]["active"] == active


def test_model_upload_shadow_and_promote(stack: dict[str, Any], page: Any, tmp_path: Path) -> None:
    ensure_password(stack)
    panel: PanelHandle = stack["panel"]
    sock = stack["data"] / "control.sock"
    log_in(page, panel)
    page.goto(panel.base_url + "/models")
    candidate = _model_variant(tmp_path, "candidate", model_version="candidate-browser-test")
    assert "passed validation" in _upload(page, candidate)
    page.reload()
    assert "candidate-browser-test" in page.locator("#models-table").inner_text()
    row = page.locator("#models-table tr", has_text="candidate-browser-test")
    row.get_by_role("button", name="shadow").click()
    listing = _until(lambda: (r := ctl.request(sock, "model.list")["result"])["shadow"] and r)
    shadow_sha = listing["shadow"]
    assert shadow_sha != listing["active"]
    page.reload()
    page.get_by_role("button", name="promote").first.click()
    _until(lambda: ctl.request(sock, "model.list")["result"]["active"] == shadow_sha)
    shot(page, "models-promoted")
    journal = ctl.request(sock, "journal", {"limit": 50})["result"]
    assert {"model.add", "model.shadow", "model.promote"} <= {j["cmd"] for j in journal}


def test_go_live_guard_rails(stack: dict[str, Any], page: Any) -> None:
    assert _engine_has(stack, "mode.preflight") and _engine_has(stack, "mode.set")
    ensure_password(stack)
    panel: PanelHandle = stack["panel"]
    log_in(page, panel)
    page.goto(panel.base_url + "/mode")
    sock = stack["data"] / "control.sock"
    # 1. No keys yet: the preflight fails and live mode is refused, the reason shown.
    page.get_by_role("button", name="Run the preflight checklist").click()
    page.locator("#preflight-result").wait_for()
    page.locator("#live-confirm").fill("GO LIVE 0000")
    page.locator("#live-password").fill(PASSWORD)
    page.get_by_role("button", name="Go live").click()
    page.locator("#mode-outcome .failed").wait_for()
    assert "key" in page.locator("#mode-outcome").inner_text().lower()
    assert ctl.request(sock, "status")["result"]["mode"] == "paper"
    page.screenshot(path=str(SHOTS / "mode-refused.png"), full_page=True)
    # 2. Keys through the settings page (write-only), then the preflight's own phrase: live.
    page.goto(panel.base_url + "/settings")
    page.locator("#api-key").fill(SIM_KEY)
    page.locator("#api-secret").fill(SIM_SECRET)
    page.locator("#keys-password").fill(PASSWORD)
    page.get_by_role("button", name="Save keys").click()
    page.locator("#settings-outcome .ok").wait_for()
    assert SIM_SECRET not in page.content()
    page.goto(panel.base_url + "/mode")
    page.get_by_role("button", name="Run the preflight checklist").click()
    phrase = page.locator("#confirm-phrase").inner_text(timeout=30_000)
    assert phrase.startswith("GO LIVE")
    page.locator("#live-confirm").fill(phrase)
    page.locator("#live-password").fill(PASSWORD)
    page.get_by_role("button", name="Go live").click()
    page.locator("#mode-outcome .ok").wait_for(timeout=30_000)
    assert ctl.request(sock, "status")["result"]["mode"] == "live"
    page.screenshot(path=str(SHOTS / "mode-live.png"), full_page=True)
    # 3. Back to paper, keeping what is open (the default policy).
    page.get_by_role("button", name="Back to paper").click()
    page.locator("#mode-outcome .ok").wait_for(timeout=30_000)
    assert ctl.request(sock, "status")["result"]["mode"] == "paper"


# What a page must never show while the engine is up: a command the engine lacks, raw JSON, a
# bare quoted hash, or "no data" where the engine has the data.
RAW_JSON = re.compile(r'\{\s*"[\w.]+"\s*:')
QUOTED_HASH = re.compile(r"[\"'][0-9a-f]{16,}[\"']")
NO_DATA = re.compile(r"unavailable|no [\w ]*information", re.IGNORECASE)
PAGES = ("/", "/pnl", "/models", "/mode", "/settings", "/system", "/sessions")


def _shadow_running(stack: dict[str, Any], tmp: Path) -> tuple[str, str]:
    """A shadow model beside the active one, set up through the typed client; (active, shadow)."""
    sock = stack["data"] / "control.sock"
    candidate = _model_variant(tmp, "shadowed", model_version="shadowed-contract-test")
    path = contract.PathArgs(path=str(candidate), name=candidate.name)
    sha = call_engine(sock, contract.MODEL_ADD, path).added.sha256
    call_engine(sock, contract.MODEL_SHADOW, contract.ShadowArgs(sha256=sha))
    active = call_engine(sock, contract.MODEL_LIST).active
    assert active is not None
    return active, sha


def test_every_page_shows_what_the_engine_reports(
    stack: dict[str, Any], browser: Any, tmp_path: Path
) -> None:
    ensure_password(stack)
    panel: PanelHandle = stack["panel"]
    _, shadow_sha = _shadow_running(stack, tmp_path)
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    try:
        log_in(page, panel)
        page.wait_for_url(panel.base_url + "/")
        for path in PAGES:
            page.goto(panel.base_url + path)
            text = page.locator("body").inner_text()
            assert "unknown command" not in text, path
            assert not RAW_JSON.search(text), (path, RAW_JSON.search(text))
            assert not QUOTED_HASH.search(text), (path, QUOTED_HASH.search(text))
            assert not NO_DATA.search(text), (path, NO_DATA.search(text))
            shot(page, "wide-" + (path.strip("/") or "dashboard"))
        # The model card names the active model and the shadow beside it.
        page.goto(panel.base_url + "/")
        active = page.locator("#active-model").inner_text()
        status = ctl.request(stack["data"] / "control.sock", "status")["result"]
        assert status["trader"]["model"]["model_version"] in active
        assert "shadowed-contract-test" in page.locator("#shadow-model").inner_text()
        # The comparison shows both models' figures, one row each.
        page.goto(panel.base_url + "/models")
        rows = page.locator("#shadow-compare tbody tr")
        assert rows.count() == 2
        assert "shadowed-contract-test" in rows.nth(1).inner_text()
        assert shadow_sha[:12] in rows.nth(1).inner_text()
        for i in range(2):
            cells = rows.nth(i).locator("td").all_inner_texts()
            assert len(cells) == 7 and all(c.strip() for c in cells), cells
    finally:
        context.close()
        sock = stack["data"] / "control.sock"
        call_engine(sock, contract.MODEL_SHADOW, contract.ShadowArgs(sha256=None))


def test_settings_load_save_and_say_where_they_come_from(stack: dict[str, Any], page: Any) -> None:
    ensure_password(stack)
    panel: PanelHandle = stack["panel"]
    sock = stack["data"] / "control.sock"
    log_in(page, panel)
    page.goto(panel.base_url + "/settings")
    leverage = page.locator("#risk-max_leverage")
    assert leverage.input_value() == "3"
    assert "default" in page.locator("label[for=risk-max_leverage]").inner_text()
    assert page.locator("#symbols").input_value() == "btcusdt,ethusdt"
    # Out of bounds: the engine refuses with the configuration's own rule.
    leverage.fill("50")
    page.get_by_role("button", name="Save risk limits").click()
    page.locator("#settings-outcome .failed").wait_for()
    assert "max_leverage: 50 is outside [0.1, 10]" in page.locator("#settings-outcome").inner_text()
    leverage.fill("2")
    page.get_by_role("button", name="Save risk limits").click()
    page.locator("#settings-outcome .ok").wait_for()
    assert "risk.max_leverage: 3 → 2" in page.locator("#settings-outcome").inner_text()
    page.reload()
    assert page.locator("#risk-max_leverage").input_value() == "2"
    assert "saved here" in page.locator("label[for=risk-max_leverage]").inner_text()
    # The form sent every limit; only the one that changed is now "saved".
    assert "default" in page.locator("label[for=risk-losing_streak]").inner_text()
    shot(page, "settings-saved")
    journal = ctl.request(sock, "journal", {"limit": 20})["result"]
    change = next(j for j in journal if j["cmd"] == "settings.set" and j["ok"])
    assert change["result"]["changed"] == [{"key": "risk.max_leverage", "old": "3", "new": "2"}]
    assert change["actor"].startswith("panel:admin@127.0.0.1")
    # Read-only commands (every page view above sent some) are never journalled.
    read_only = {n for n, s in contract.COMMANDS.items() if not s.changes}
    assert not read_only & {j["cmd"] for j in journal}
    # Back to the default, so that the other tests see the shipped limits.
    page.locator("#risk-max_leverage").fill("3")
    page.get_by_role("button", name="Save risk limits").click()
    page.locator("#settings-outcome .ok").wait_for()
