"""Backtest reports: figures that add up, and a page that shows exactly report.json's figures.

Two real backtests: the reference recording (30 s of Binance data: no trade, no decision, the
empty report must still be whole) and a simulator series with the simulator's warm-up klines and a
model whose thresholds make it trade, so every table and chart has content. The page is opened in
Debian's Chromium at a phone's and a laptop's width; every figure it shows (``data-key``) is read
back, parsed and compared with the JSON; screenshots go to ``/tmp/shots-19/``.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from app.engine.inference import load_model
from app.models.backtest import run_backtest
from app.models.replay import (
    ReplayBooks,
    SimSeries,
    load_depth_snapshots,
    recorded_filters,
    recording_inputs,
    sim_filters,
    sim_inputs,
)
from app.models.report import build_report, write_report
from tests.models.support import DEFAULT, REFERENCE, variant

SHOTS = Path("/tmp/shots-19")
WS = REFERENCE / "usdm_2021-07-22_ws.jsonl"
REFERENCE_SYMBOLS = ("AKROUSDT", "CTKUSDT", "KEEPUSDT", "SUSHIUSDT")


def reference_report(out: Path) -> dict[str, Any]:
    books = ReplayBooks(
        load_depth_snapshots(REFERENCE / "usdm_2021-07-22_rest_depth_snapshots.txt")
    )
    filters = recorded_filters(REFERENCE / "usdm_2021-07-22_exchangeInfo.txt")
    model = load_model(DEFAULT)
    result = run_backtest(model, recording_inputs(WS), filters, REFERENCE_SYMBOLS, books)
    write_report(result, model, out, [str(WS)])
    doc: dict[str, Any] = json.loads((out / "report.json").read_text())
    return doc


def sim_report(out: Path, tmp: Path) -> dict[str, Any]:
    model = load_model(variant(tmp, "eager", 0.55, 0.45))
    series = SimSeries(("btcusdt", "ethusdt"), 4, minutes=8)
    result = run_backtest(
        model, sim_inputs(series), sim_filters(series.symbols), ("BTCUSDT", "ETHUSDT")
    )
    write_report(result, model, out, ["sim"])
    doc: dict[str, Any] = json.loads((out / "report.json").read_text())
    return doc


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict[str, Any]]]:
    root = tmp_path_factory.mktemp("reports")
    return {
        "reference": (root / "reference", reference_report(root / "reference")),
        "sim": (root / "sim", sim_report(root / "sim", root)),
    }


def _d(text: str | None) -> Decimal:
    return Decimal(text or "0")


def test_the_figures_add_up(reports: dict[str, tuple[Path, dict[str, Any]]]) -> None:
    _, doc = reports["sim"]
    s, pnl = doc["summary"], doc["pnl"]
    # Price PnL - fees + funding is the net, and the net is the equity's change.
    assert _d(pnl["price"]) + _d(pnl["fees"]) + _d(pnl["funding"]) == _d(pnl["net"])
    assert _d(s["final_equity"]) - _d(s["initial_equity"]) == _d(s["pnl"]) == _d(pnl["net"])
    # The simulator's warm-up klines warm the ATR: entries from the first decision on.
    assert s["warmups"] == 2 and "atr warming" not in s["skipped"]
    assert s["trades"] >= 2 and s["orders"] >= 2 * s["trades"]
    closed = [t for t in doc["round_trips"] if t["exit_reason"] != "open"]
    assert len(closed) == s["trades"] == sum(g["trades"] for g in doc["by_symbol"])
    assert sum(g["trades"] for g in doc["by_side"]) == s["trades"]
    assert sum(doc["exit_reasons"].values()) == s["trades"]
    trips_pnl = sum((_d(t["pnl"]) for t in closed), Decimal(0))
    assert trips_pnl == sum((_d(g["pnl"]) for g in doc["by_symbol"]), Decimal(0))
    wins = sum(1 for t in closed if _d(t["pnl"]) > 0)
    assert s["hit_rate"] == round(wins / len(closed), 4)
    for t in doc["round_trips"]:
        assert t["entry_reason"].startswith("signal, prob_up ")
        net = _d(t["gross"]) - _d(t["fees"]) + _d(t["funding"])
        assert abs(net - _d(t["pnl"])) <= Decimal("0.0002")  # each is rounded to 4 places
    assert 0 < s["exposure"] <= 1 and s["turnover"] > 0 and 0 < s["max_drawdown"] < 0.05
    assert s["sharpe"] is None  # 8 one-minute returns are too few to annualise
    cal = doc["calibration"]
    assert cal["horizon_s"] == 120.0 and len(cal["bins"]) == 10
    assert sum(b["n"] for b in cal["bins"]) == cal["resolved"] > 0
    assert cal["resolved"] + cal["flat"] + cal["unresolved"] == cal["decisions"] == s["decisions"]
    for lower, upper in zip(cal["bins"], cal["bins"][1:], strict=False):
        assert lower["p_max"] <= upper["p_min"]  # equal-count bins of sorted predictions
    worst = min(v for _, v in doc["curves"]["drawdown"])
    assert math.isclose(-worst, s["max_drawdown"], abs_tol=1e-4)  # thinning keeps the worst


def test_the_reference_report_is_whole_but_empty(
    reports: dict[str, tuple[Path, dict[str, Any]]],
) -> None:
    _, doc = reports["reference"]
    s = doc["summary"]
    assert s["events"] > 500 and 29 < s["span_s"] < 31
    assert s["trades"] == s["orders"] == 0 and s["hit_rate"] is None
    assert doc["round_trips"] == [] and doc["calibration"]["bins"] == []
    assert doc["period"]["start"].startswith("2021-07-22T22:25")
    assert doc["pnl"]["net"] == "0.0000"


def test_the_report_is_rebuilt_identically(tmp_path: Path) -> None:
    """Same inputs, same figures: nothing in the report depends on the wall clock."""
    model = load_model(DEFAULT)
    series = SimSeries(("btcusdt",), 5, minutes=2)
    docs = []
    for _ in range(2):
        result = run_backtest(model, sim_inputs(series), sim_filters(["btcusdt"]), ("BTCUSDT",))
        doc = build_report(result, model, ["sim"])
        doc["summary"].pop("wall_s")
        docs.append(doc)
    assert docs[0] == docs[1]


def _shown_equals(text: str, kind: str, value: Any) -> bool:
    """The page's text for a figure against the JSON value, at the page's precision."""
    if value is None:
        return text == "—"
    if kind in ("money", "text"):
        return text == str(value)
    if kind == "int":
        return int(text) == value
    places = {"pct": 2, "num": 2, "num4": 4}[kind]
    shown = float(text.removesuffix(" %"))
    expected = float(value) * (100 if kind == "pct" else 1)
    return abs(shown - expected) <= 0.5 * 10**-places + 1e-9


def _lookup(doc: dict[str, Any], key: str) -> Any:
    node: Any = doc
    for part in key.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


HEADLINE = (
    "summary.pnl",
    "summary.trades",
    "summary.hit_rate",
    "summary.sharpe",
    "summary.sortino",
    "summary.max_drawdown",
    "summary.exposure",
    "summary.turnover",
    "summary.fees",
    "summary.funding",
    "pnl.price",
    "pnl.fees",
    "pnl.funding",
    "pnl.net",
    "pnl.slippage",
    "calibration.auc",
)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["reference", "sim"])
def test_the_page_shows_report_json_in_chromium(
    name: str, reports: dict[str, tuple[Path, dict[str, Any]]]
) -> None:
    from tests.admin.test_browser import CHROMIUM, CHROMIUM_ARGS, playwright_api

    out, doc = reports[name]
    html = (out / "report.html").read_text()
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in html and "<script" not in html and "<link" not in html
    SHOTS.mkdir(parents=True, exist_ok=True)
    urls: list[str] = []

    def seen(request: Any) -> None:
        urls.append(request.url)

    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            for width, height in ((390, 844), (1280, 800)):
                context = browser.new_context(viewport={"width": width, "height": height})
                page = context.new_page()
                page.on("request", seen)
                page.goto((out / "report.html").as_uri())
                figures = page.eval_on_selector_all(
                    "[data-key]",
                    "els => els.map(e => [e.dataset.key, e.dataset.fmt, e.textContent])",
                )
                keys = {k for k, _, _ in figures}
                assert set(HEADLINE) <= keys
                wrong = [
                    (k, text, _lookup(doc, k))
                    for k, kind, text in figures
                    if not _shown_equals(text, kind, _lookup(doc, k))
                ]
                assert not wrong, wrong
                if doc["round_trips"]:
                    assert {f"round_trips.0.{f}" for f in ("pnl", "exit_reason")} <= keys
                    assert f"calibration.bins.{len(doc['calibration']['bins']) - 1}.up_rate" in keys
                    assert page.locator("svg.calib circle").count() == len(
                        doc["calibration"]["bins"]
                    )
                assert page.locator("svg.equity polyline").count() == 1
                # Nothing reaches past the viewport: the page never scrolls sideways.
                assert page.evaluate("document.documentElement.scrollWidth") <= width
                assert urls and all(u.startswith("file://") for u in urls), urls
                page.screenshot(path=str(SHOTS / f"{name}-{width}.png"), full_page=True)
                context.close()
        finally:
            browser.close()
