"""From data to a model worth shadowing, in one test, with the real processes and commands.

The simulator serves history; ``appliance download`` fetches two hours of two symbols (1-minute
klines, aggTrades, funding, mark and index klines) into a market directory; ``appliance dataset``
turns it into labelled rows with features a download can feed (no order book in REST history);
``appliance train`` fits a small MLP (torch, the ``train`` extra); ``appliance backtest --report``
runs it on a simulator series (with books, so it can fill) and writes the report, which opens in
Chromium (screenshots in ``artifacts/screenshots/`` and ``/tmp/shots-19/``); ``appliance model
validate`` passes it; then an engine runs against the same simulator with the panel beside it, the
model is uploaded through the panel's form and started as the shadow from the panel, and the
engine's status shows the shadow run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.admin.panelproc import login, page_token, running_panel, set_password
from tests.integration.engineproc import appliance, spawn, status, stop, wait_for
from tests.paths import REPO
from tests.simproc import running_sim

pytestmark = pytest.mark.slow

SYMBOLS = "btcusdt,ethusdt"
FEATURES = "logret_1,logret_5,rsi_14,bb_20_2.pctb,bb_20_2.width,funding_rate"
ARTIFACTS = REPO / "artifacts" / "screenshots"
SHOTS = Path("/tmp/shots-19")


def _run(*args: str, timeout: float = 240) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True, text=True, timeout=timeout, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, f"appliance {' '.join(args)}:\n{done.stderr[-3000:]}"
    return json.loads(done.stdout) if done.stdout.lstrip().startswith("{") else done.stdout


def _report_in_chromium(report: Path) -> None:
    from tests.admin.test_browser import CHROMIUM, CHROMIUM_ARGS, playwright_api

    doc = json.loads((report / "report.json").read_text())
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    SHOTS.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            for width, height in ((390, 844), (1280, 800)):
                context = browser.new_context(viewport={"width": width, "height": height})
                page = context.new_page()
                page.goto((report / "report.html").as_uri())
                shown = page.locator('[data-key="summary.pnl"]').first.text_content()
                assert shown == doc["summary"]["pnl"]
                assert page.evaluate("document.documentElement.scrollWidth") <= width
                for folder in (ARTIFACTS, SHOTS):
                    page.screenshot(path=str(folder / f"e2e-report-{width}.png"), full_page=True)
                context.close()
        finally:
            browser.close()


@pytest.mark.timeout(900)
def test_download_train_backtest_validate_upload_shadow(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="training needs the train extra")
    market, data = tmp_path / "market", tmp_path / "data"
    with running_sim("--seed", "5", "--weight-limit", "100000") as sim:
        now = sim.get("/fapi/v1/time")["serverTime"]
        end = now // 60_000 * 60_000 - 600_000
        start = end - 2 * 3_600_000
        download = _run(
            "download", "--rest-url", sim.rest_url, "--symbols", SYMBOLS, "--start", str(start),
            "--end", str(end), "--out", str(market),
        )  # fmt: skip
        weeks = sorted(market.glob("market_*.db"))
        assert weeks and sum(download["files"].values()) > 10_000, download

        dataset = tmp_path / "ds.csv"
        built = _run(
            "dataset", "--replay", *map(str, weeks), "--features", FEATURES,
            "--bar-interval-s", "5", "--horizon-bars", "12", "--threshold-bps", "1",
            "--max-gap-s", "30", "--out", str(dataset),
        )  # fmt: skip
        assert built["rows"] > 1500, built

        model = tmp_path / "e2e.onnx"
        trained = _run(
            "train", "--data", str(dataset), "--out", str(model), "--window", "8",
            "--hidden", "8", "--epochs", "3", "--walk-forward", "0", "--no-backtest",
        )  # fmt: skip
        assert model.exists() and len(trained["sha256"]) == 64

        report = tmp_path / "report"
        _run(
            "backtest", "--model", str(model), "--sim-minutes", "6", "--sim-symbols", SYMBOLS,
            "--report", str(report), "--json",
        )  # fmt: skip
        doc = json.loads((report / "report.json").read_text())
        assert doc["model"]["sha256"] == trained["sha256"]
        assert doc["summary"]["warmups"] == 2 and doc["summary"]["decisions"] > 0
        _report_in_chromium(report)

        checked = _run("model", "validate", str(model), "--json")
        assert checked["ok"], checked["problems"]

        log = tmp_path / "engine.log"
        urls = ("--rest-url", sim.rest_url, "--ws-url", sim.ws_url)
        engine = spawn([*appliance(data), "engine", *urls], log)
        try:
            wait_for("the control socket", lambda: status(data), 60, engine, log)
            set_password(data)
            with running_panel(data, log=tmp_path / "panel.log") as panel, panel.client() as web:
                assert login(web).status_code == 303
                token = page_token(web, "/models")
                headers = {"X-CSRF-Token": token, "HX-Request": "true"}
                uploaded = web.post(
                    "/models/upload",
                    files={"model": ("e2e.onnx", model.read_bytes(), "application/octet-stream")},
                    headers=headers,
                    timeout=120,
                )
                assert uploaded.status_code == 200, uploaded.text[:2000]
                started = web.post(
                    "/models/shadow", data={"sha256": trained["sha256"]}, headers=headers
                )
                assert started.status_code == 200, started.text[:2000]
                run = wait_for(
                    "the shadow run",
                    lambda: status(data)["shadow"]["running"] and status(data)["shadow"],
                    30,
                    engine,
                    log,
                )
                assert run["shadow"]["sha256"] == trained["sha256"]
        finally:
            assert stop(engine) == 0
    print(
        f"e2e: downloaded {download['rows']} in {download['wall_s']} s; dataset {built['rows']} "
        f"rows; model {trained['sha256'][:12]}; backtest {doc['summary']['decisions']} decisions, "
        f"{doc['summary']['trades']} round trips, PnL {doc['summary']['pnl']}; validated; "
        f"uploaded and shadowing"
    )
