"""Every page at a phone's and a laptop's width, against a stack that trades.

Its own module-scoped stack (simulator, engine, panel): the engine's model is the default model
with its long threshold at 0.001, so it signals long at every bar close and positions, fills and
round trips exist within a minute or two; a shadow model runs beside it. Per page and width: every
card shows data, no raw JSON or bare quoted hash is visible, nothing reaches past the viewport and
the page never scrolls sideways. The status line names an injected blocking condition (a pause from
the Mode page, a stalled simulator) within 5 s. Screenshots: artifacts/screenshots/<page>-<width>.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app import contract, ctl
from tests.handlers import call_engine
from tests.integration.engineproc import appliance, spawn, status, stop, wait_for
from tests.simproc import running_sim

from .panelproc import PanelHandle, running_panel, set_password
from .test_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    QUOTED_HASH,
    RAW_JSON,
    _model_variant,
    log_in,
    playwright_api,
    shot,
)

pytestmark = pytest.mark.slow

WIDTHS = {390: 844, 1280: 800}
PAGES = {
    "/": "dashboard",
    "/pnl": "pnl",
    "/models": "models",
    "/mode": "mode",
    "/settings": "settings",
    "/system": "system",
    "/sessions": "sessions",
}
CLOSED_REASONS = ("signal", "stop", "take-profit", "kill", "liquidation")


@pytest.fixture(scope="module")
def trading_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Simulator, an engine whose model always signals long, and the panel (password set)."""
    root = tmp_path_factory.mktemp("trading")
    data = root / "data"
    always = _model_variant(
        root,
        "always-long",
        long_threshold="0.001",
        short_threshold="0.0",
        model_version="always-long-test",
    )
    cfg = root / "appliance.toml"
    cfg.write_text(f'[model]\npath = "{always}"\n')
    log = root / "engine.log"
    with running_sim("--seed", "11", "--funding-interval-s", "60") as sim:
        urls = ("--rest-url", sim.rest_url, "--ws-url", sim.ws_url)
        engine = spawn([*appliance(data), "--config", str(cfg), "engine", *urls], log)
        try:
            wait_for("the control socket", lambda: status(data), 30, engine, log)
            set_password(data)
            with running_panel(data, log=root / "panel.log") as panel:
                stack = {"sim": sim, "engine": engine, "panel": panel, "data": data, "root": root}
                _start_shadow(stack)
                yield stack
        finally:
            stop(engine)


def _start_shadow(stack: dict[str, Any]) -> None:
    sock = stack["data"] / "control.sock"
    shadow = _model_variant(stack["root"], "shadow", model_version="shadow-pages-test")
    args = contract.PathArgs(path=str(shadow), name=shadow.name)
    sha = call_engine(sock, contract.MODEL_ADD, args).added.sha256
    call_engine(sock, contract.MODEL_SHADOW, contract.ShadowArgs(sha256=sha))
    # A stored model with no role: its row offers activate, shadow and delete (with password).
    spare = _model_variant(stack["root"], "spare", model_version="spare-pages-test")
    call_engine(sock, contract.MODEL_ADD, contract.PathArgs(path=str(spare), name=spare.name))


def _sock(stack: dict[str, Any]) -> Path:
    path: Path = stack["data"] / "control.sock"
    return path


def _wait(stack: dict[str, Any], what: str, check: Any, timeout_s: float) -> Any:
    return wait_for(what, check, timeout_s, stack["engine"], stack["root"] / "engine.log")


def _closed_trip(stack: dict[str, Any]) -> None:
    """A position, then the kill switch closes it (a round trip with reason "kill"); resume."""
    data = stack["data"]
    _wait(stack, "a paper position", lambda: status(data)["positions"], 150)
    reply = ctl.request(_sock(stack), "kill", {"reason": "round trip test"}, actor="test")
    assert reply["ok"], reply
    _wait(stack, "a flat book", lambda: not status(data)["positions"], 30)
    assert ctl.request(_sock(stack), "resume", actor="test")["ok"]
    # Trading again: the dashboard has an open position to show.
    _wait(stack, "a position again", lambda: status(data)["positions"], 150)


@pytest.fixture(scope="module")
def browser(trading_stack: dict[str, Any]) -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium")
    with playwright_api.sync_playwright() as pw:
        instance = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield instance
        finally:
            instance.close()


def _page(browser: Any, panel: PanelHandle, width: int) -> Any:
    context = browser.new_context(viewport={"width": width, "height": WIDTHS[width]})
    context.set_default_timeout(20_000)
    page = context.new_page()
    log_in(page, panel)
    page.wait_for_url(panel.base_url + "/")
    return page


# Elements that reach past the viewport's right edge (or start left of 0), except those inside a
# horizontally scrolling table wrapper (the wrapper itself must fit) and invisible ones.
OVERFLOWING = """(width) => {
  const out = [];
  for (const el of document.querySelectorAll('body *')) {
    if (el.closest('.scroll') && !el.classList.contains('scroll')) continue;
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) continue;
    const style = getComputedStyle(el);
    if (style.visibility === 'hidden' || style.display === 'none') continue;
    if (r.right > width + 0.5 || r.left < -0.5) {
      out.push(el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
               (el.className && typeof el.className === 'string' ? '.' + el.className : '') +
               ' ' + Math.round(r.left) + '..' + Math.round(r.right));
    }
  }
  return out.slice(0, 10);
}"""

# Cards whose text is nothing but their heading.
EMPTY_CARDS = """() => [...document.querySelectorAll('section.card')].filter(card => {
  const heading = card.querySelector('h1, h2');
  const text = card.innerText.replace(heading ? heading.innerText : '', '').trim();
  return text.length === 0;
}).map(card => card.getAttribute('aria-labelledby') || card.id || 'card')"""


def _check_layout(page: Any, width: int, where: str) -> None:
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= width, (where, scroll_width)
    assert page.evaluate(OVERFLOWING, width) == [], where
    text = page.locator("body").inner_text()
    assert not RAW_JSON.search(text), (where, RAW_JSON.search(text))
    assert not QUOTED_HASH.search(text), (where, QUOTED_HASH.search(text))
    assert page.evaluate(EMPTY_CARDS) == [], where


def test_round_trips_appear_after_the_engine_has_traded(
    trading_stack: dict[str, Any], browser: Any
) -> None:
    _closed_trip(trading_stack)
    panel: PanelHandle = trading_stack["panel"]
    page = _page(browser, panel, 1280)
    try:
        page.goto(panel.base_url + "/pnl")
        rows = page.locator("#round-trips tbody tr")
        rows.first.wait_for()
        reasons = page.locator("#round-trips .reason").all_inner_texts()
        assert any(r in CLOSED_REASONS for r in reasons), reasons
        assert "kill" in reasons, reasons
        symbols = page.locator("#by-symbol tbody tr").all_inner_texts()
        assert symbols and any("BTCUSDT" in s or "ETHUSDT" in s for s in symbols), symbols
        # CSV export: one row per round trip, the kill among them.
        response = page.request.get(panel.base_url + "/pnl/round-trips.csv")
        assert response.status == 200
        table = list(csv.DictReader(io.StringIO(response.text())))
        assert any(r["reason"] == "kill" and r["closed_utc"] for r in table), table[:3]
        assert all(r["model_version"] == "always-long-test" for r in table)
    finally:
        page.context.close()


@pytest.mark.parametrize("width", sorted(WIDTHS))
def test_every_page_fits_and_shows_data(
    trading_stack: dict[str, Any], browser: Any, width: int
) -> None:
    panel: PanelHandle = trading_stack["panel"]
    page = _page(browser, panel, width)
    try:
        for path, name in PAGES.items():
            page.goto(panel.base_url + path)
            assert page.locator("h1").first.is_visible()
            if path == "/":
                # Data on every card: the engine has traded and a shadow runs.
                page.locator("#equity-spark svg polyline").wait_for(state="attached")
                page.locator("#decisions tbody tr").first.wait_for()
                page.locator("#feeds tbody tr").first.wait_for()
                assert "always-long-test" in page.locator("#active-model").inner_text()
                assert "shadow-pages-test" in page.locator("#shadow-model").inner_text()
                assert page.locator("#dash-kill-button").is_visible()
            _check_layout(page, width, f"{path} at {width}")
            shot(page, f"{name}-{width}")
        # The phone menu opens over the page and still fits.
        if width < 760:
            page.goto(panel.base_url + "/")
            page.locator(".nav-phone summary").click()
            page.locator(".nav-phone nav a", has_text="Models").wait_for()
            _check_layout(page, width, f"menu at {width}")
            shot(page, f"menu-{width}")
        # Error pages: styled, with the way back.
        page.goto(panel.base_url + "/no/such/page")
        assert page.locator("#error-page h1").inner_text() == "Nothing here"
        _check_layout(page, width, f"404 at {width}")
        shot(page, f"error-404-{width}")
    finally:
        page.context.close()


def test_status_line_names_what_blocks_trading(trading_stack: dict[str, Any], browser: Any) -> None:
    panel: PanelHandle = trading_stack["panel"]
    sim = trading_stack["sim"]
    page = _page(browser, panel, 390)
    line = page.locator("#trading-now")
    try:
        # A pause from the Mode page: the Mode page's own line changes, then the dashboard's.
        page.goto(panel.base_url + "/mode")
        page.get_by_role("button", name="Pause").click()
        page.locator("#mode-outcome .ok").wait_for()
        page.locator("#trading-now", has_text="paused by the operator").wait_for(timeout=5_000)
        page.goto(panel.base_url + "/")
        page.locator("#trading-now", has_text="paused by the operator").wait_for(timeout=5_000)
        assert line.inner_text().startswith("Paused")
        shot(page, "status-paused-390")
        page.goto(panel.base_url + "/mode")
        page.get_by_role("button", name="Resume").click()
        page.locator("#mode-outcome .ok").wait_for()
        # A stalled exchange: once the engine lists it, the dashboard names it within 5 s.
        page.goto(panel.base_url + "/")
        sim.set_faults(stall=True)
        try:
            _wait(
                trading_stack,
                "a stale-feed blocker",
                lambda: any(
                    b["code"] == "stale_feed" for b in status(trading_stack["data"])["blockers"]
                ),
                30,
            )
            started = time.monotonic()
            page.locator("#trading-now", has_text="no message for").wait_for(timeout=5_000)
            assert time.monotonic() - started < 5
            assert "not opening positions" in line.inner_text()
            shot(page, "status-stalled-390")
        finally:
            sim.set_faults(stall=None)
        # The kill switch is one tap on the dashboard.
        page.locator("#dash-kill-button").click()
        page.locator("#dash-outcome .ok").wait_for()
        page.locator("#trading-now", has_text="kill switch").wait_for(timeout=5_000)
        assert status(trading_stack["data"])["state"] == "halted"
        shot(page, "status-killed-390")
    finally:
        ctl.request(_sock(trading_stack), "resume", actor="test")
        page.context.close()


def test_favicon_and_429_page(trading_stack: dict[str, Any], browser: Any) -> None:
    panel: PanelHandle = trading_stack["panel"]
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    try:
        icon = page.request.get(panel.base_url + "/favicon.ico")
        assert icon.status == 200 and icon.headers["content-type"].startswith("image/svg")
        for _ in range(6):
            page.goto(panel.base_url + "/login")
            page.get_by_label("Password").fill("not the password")
            page.get_by_role("button", name="Log in").click()
            if page.locator("#error-page").count():
                break
        assert "wait" in page.locator("#error-message").inner_text()
        _check_layout(page, 390, "429")
        shot(page, "error-429-390")
    finally:
        context.close()
