"""Every page at a phone's and a laptop's width, against a stack that trades.

Its own module-scoped stack (simulator, engine, panel): the store's active model is the default
model with its long threshold at 0.001 (uploaded and activated like an operator would), so it
signals long at every bar close and positions, fills and round trips exist within a minute or two;
a shadow model runs beside it, and the shipped default it replaced is checked in the background.
Per page and width: every card shows data, no raw JSON or bare quoted hash is visible, nothing
reaches past the viewport, the page never scrolls sideways, and on a phone no table needs sideways
scrolling either. The Models page shows every model's inputs and validation figures and the
shadow's agreement chart; prices and quantities follow each symbol's tick and step, money has two
decimals. The status line names an injected blocking condition (a pause from the Mode page, a
stalled simulator) within 5 s. Screenshots: artifacts/screenshots/<page>-<width>.
"""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app import contract, ctl
from app.admin.numbers import places_of
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
    log = root / "engine.log"
    with running_sim("--seed", "11", "--funding-interval-s", "60") as sim:
        urls = ("--rest-url", sim.rest_url, "--ws-url", sim.ws_url)
        engine = spawn([*appliance(data), "engine", *urls], log)
        try:
            wait_for("the control socket", lambda: status(data), 30, engine, log)
            set_password(data)
            with running_panel(data, log=root / "panel.log") as panel:
                stack = {"sim": sim, "engine": engine, "panel": panel, "data": data, "root": root}
                _install_models(stack)
                yield stack
        finally:
            stop(engine)


def _add(stack: dict[str, Any], name: str, **changes: str) -> str:
    path = _model_variant(stack["root"], name, **changes)
    args = contract.PathArgs(path=str(path), name=path.name)
    return call_engine(_sock(stack), contract.MODEL_ADD, args).added.sha256


def _install_models(stack: dict[str, Any]) -> None:
    """The always-long model replaces the shipped default (which stays stored, unchecked until
    the engine checks it in the background); a shadow runs beside it; a spare waits."""
    sock = _sock(stack)
    _wait(stack, "the default model", lambda: status(stack["data"])["trader"]["model"], 60)
    always = _add(
        stack,
        "always-long",
        long_threshold="0.001",
        short_threshold="0.0",
        model_version="always-long-test",
    )
    call_engine(sock, contract.MODEL_ACTIVATE, contract.ModelRef(sha256=always))
    shadow = _add(stack, "shadow", model_version="shadow-pages-test")
    call_engine(sock, contract.MODEL_SHADOW, contract.ShadowArgs(sha256=shadow))
    # A stored model with no role: its row offers activate, shadow and delete (with password).
    _add(stack, "spare", model_version="spare-pages-test")


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


# Table wrappers whose content is wider than they are (the reader would scroll inside them).
SCROLLED = """() => [...document.querySelectorAll('.scroll')]
  .filter(el => el.offsetParent !== null && el.scrollWidth > el.clientWidth + 1)
  .map(el => (el.querySelector('table') || el).id + ' ' + el.scrollWidth + '>' + el.clientWidth)"""


def _check_layout(page: Any, width: int, where: str) -> None:
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= width, (where, scroll_width)
    assert page.evaluate(OVERFLOWING, width) == [], where
    # Key columns fit without sideways scrolling: detail columns go, or rows become cards.
    assert page.evaluate(SCROLLED) == [], where
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


def _decimals(text: str) -> int:
    number = text.strip().removeprefix("qty").strip().lstrip("+-").replace(",", "")
    assert re.fullmatch(r"\d+(\.\d+)?", number), text
    return len(number.partition(".")[2])


MONEY = re.compile(r"[+-]?\d{1,3}(,\d{3})*\.\d{2}")
CELLS = "rows => rows.map(r => [...r.cells].map(c => c.innerText.trim()))"


def test_numbers_follow_each_symbols_tick_and_step(
    trading_stack: dict[str, Any], browser: Any
) -> None:
    """Prices to the symbol's tick, quantities to its step (as the engine reports them from the
    exchange's rules), money to the cent: in fills, round trips and positions."""
    # Runs after the round trips' test, which leaves a position open again.
    _wait(trading_stack, "a position", lambda: status(trading_stack["data"])["positions"], 90)
    rules = call_engine(_sock(trading_stack), contract.STATUS).rules
    assert set(rules) == {"BTCUSDT", "ETHUSDT"}
    ticks = {s: places_of(r.tick_size) for s, r in rules.items()}
    steps = {s: places_of(r.step_size) for s, r in rules.items()}
    assert ticks["BTCUSDT"] != 8 and steps["BTCUSDT"] != 8  # not the database's padding
    panel: PanelHandle = trading_stack["panel"]
    page = _page(browser, panel, 1280)
    try:
        page.goto(panel.base_url + "/pnl")
        fills = page.eval_on_selector_all("#trades-table tbody tr", CELLS)
        assert fills
        for _, symbol, _, price, qty, fee, realised, _ in fills:
            assert _decimals(price) == ticks[symbol], (symbol, price)
            assert _decimals(qty) == steps[symbol], (symbol, qty)
            assert MONEY.fullmatch(fee) and MONEY.fullmatch(realised), (fee, realised)
        trips = page.eval_on_selector_all("#round-trips tbody tr", CELLS)
        for _, symbol, _, qty, entry, exit_, _, _, pnl, _ in trips:
            assert _decimals(qty) == steps[symbol] and _decimals(entry) == ticks[symbol]
            assert exit_ == "—" or _decimals(exit_) == ticks[symbol], exit_
            assert MONEY.fullmatch(pnl), pnl
        totals = page.locator("#totals .value").all_inner_texts()
        assert all(MONEY.fullmatch(t) for t in totals if not t.endswith("%")), totals
        page.goto(panel.base_url + "/")
        page.locator("#positions tbody tr").first.wait_for()
        for symbol, _, qty, entry, mark, upnl in page.eval_on_selector_all(
            "#positions tbody tr", CELLS
        ):
            assert _decimals(qty) == steps[symbol] and _decimals(entry) == ticks[symbol]
            assert _decimals(mark) == ticks[symbol] and MONEY.fullmatch(upnl), (mark, upnl)
        assert MONEY.fullmatch(page.locator("#equity").inner_text())
    finally:
        page.context.close()


@pytest.mark.parametrize("width", sorted(WIDTHS))
def test_models_show_inputs_validation_and_agreement(
    trading_stack: dict[str, Any], browser: Any, width: int
) -> None:
    panel: PanelHandle = trading_stack["panel"]
    page = _page(browser, panel, width)
    try:
        page.goto(panel.base_url + "/models")
        # The shipped default was stored unchecked: the engine checks it in the background and
        # the table refreshes itself until every row has its verdict.
        page.locator("#models-table .check-pending").first.wait_for(
            state="detached", timeout=90_000
        )
        rows = page.locator("#models-table tbody tr")
        assert rows.count() == 4
        for text in rows.all_inner_texts():
            assert re.search(r"10 features over the last \d+ bars of 1 s", text), text
            assert re.search(r"long at p ≥ [\d.]+, short at p ≤ [\d.]+", text), text
            assert re.search(r"\bpassed\b", text), text
            assert re.search(r"\d+ golden cases reproduced \(within [\d.e-]+\)", text), text
            assert re.search(r"\d+ (µs|ms) per decision \(limit [\d.]+ (µs|ms)\)", text), text
            assert re.search(r"\d+\.\d KiB", text), text  # the size, with its unit
        roles = page.locator("#models-table .role").all_inner_texts()
        assert sorted(roles) == ["previous", "shadow", "stored", "trading"], roles
        active = page.locator("#models-table tr.role-active")
        assert "always-long-test" in active.inner_text()
        active.locator("summary").click()
        assert "rsi_14" in active.locator(".feature-list").inner_text()
        # The shadow beside the active model: how often they agree, in words and as a chart.
        agreement = page.locator("#agreement", has_text="Same call on")
        agreement.wait_for(timeout=60_000)
        assert re.search(r"Same call on [\d,]+ of [\d,]+ bars \(\d+ %\)", agreement.inner_text())
        figure = page.locator("#agreement-chart")
        page.wait_for_function(
            "() => Number(document.querySelector('#agreement-chart').dataset.points) >= 1"
        )
        drawn = figure.locator(".chart-narrow svg" if width < 600 else ".chart-wide svg")
        assert drawn.is_visible()
        assert drawn.locator("polyline").count() == 1
        labels = drawn.text_content() or ""
        assert "100 %" in labels and "0 %" in labels
        rows_cmp = page.locator("#shadow-compare tbody tr").all_inner_texts()
        assert "always-long-test" in rows_cmp[0] and "shadow-pages-test" in rows_cmp[1]
        _check_layout(page, width, f"/models (details) at {width}")
        shot(page, f"models-detail-{width}")
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
