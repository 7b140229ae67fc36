"""Saved backtest reports on the Models page, against the real panel process: ``appliance
backtest --save`` writes one under the data directory, the page lists it (model, period, PnL,
round trips, AUC, a link), the link serves the stored page under a CSP that lets nothing load or
run, and nothing but a listed id reaches a file."""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx
import pytest

from app.cli import main
from app.store.reports import HTML_NAME, JSON_NAME, list_reports
from tests.models.support import DEFAULT, REFERENCE

from .panelproc import PanelHandle

pytestmark = pytest.mark.slow

WS = REFERENCE / "usdm_2021-07-22_ws.jsonl"


def _save_report(data_dir: Path) -> str:
    code = main(["--data-dir", str(data_dir), "backtest", "--model", str(DEFAULT),
                 "--replay", str(WS), "--save"])  # fmt: skip
    assert code == 0
    (report,) = list_reports(data_dir)
    assert re.fullmatch(r"\d{8}T\d{6}Z_default-[\w.-]+", report.id), report.id
    assert (report.path / JSON_NAME).is_file() and (report.path / HTML_NAME).is_file()
    return report.id


def test_a_saved_report_is_listed_and_opens(
    panel: PanelHandle, client: httpx.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    rid = _save_report(panel.data_dir)
    capsys.readouterr()
    page = client.get("/models")
    assert page.status_code == 200
    row = re.search(rf'<tr data-report="{rid}">(.*?)</tr>', page.text, re.DOTALL)
    assert row, page.text[-3000:]
    cells = row.group(1)
    assert "default-1-seed1" in cells and "2021-07-22" in cells  # model and period
    assert 'data-label="PnL' in cells and 'data-label="AUC"' in cells
    assert f'href="/models/reports/{rid}"' in cells

    shown = client.get(f"/models/reports/{rid}")
    assert shown.status_code == 200
    assert shown.content == (panel.data_dir / "reports" / rid / HTML_NAME).read_bytes()
    assert shown.headers["content-type"].startswith("text/html")
    (csp,) = shown.headers.get_list("content-security-policy")
    assert csp.startswith("default-src 'none'; style-src 'sha256-")
    assert csp.endswith("; sandbox") and "script-src" not in csp
    assert shown.headers["x-content-type-options"] == "nosniff"
    assert "<script" not in shown.text.lower()


def test_only_listed_ids_reach_a_file(panel: PanelHandle, client: httpx.Client) -> None:
    reports = panel.data_dir / "reports"
    reports.mkdir(parents=True)
    outside = panel.data_dir.parent / "outside"
    outside.mkdir()
    (outside / HTML_NAME).write_text("<p>secret</p>")
    os.symlink(outside, reports / "20260101T000000Z_linked")  # a listed-looking name, a link
    (reports / "20260101T000000Z_empty").mkdir()  # no report.html
    for path in (
        "/models/reports/..%2F..%2Fetc%2Fpasswd",
        "/models/reports/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
        "/models/reports/%2E%2E",
        "/models/reports/20260101T000000Z_linked",
        "/models/reports/20260101T000000Z_empty",
        "/models/reports/20990101T000000Z_missing",
        "/models/reports/secret",
    ):
        response = client.get(path)
        assert response.status_code == 404, (path, response.status_code)
        assert "secret" not in response.text and "root:" not in response.text
    # Unencoded, the client resolves the dots itself: the request is for /etc/passwd.
    plain = client.get("/models/reports/../../etc/passwd")
    assert plain.status_code == 404 and "root:" not in plain.text
    page = client.get("/models")
    assert "_linked" not in page.text and "_empty" not in page.text
    assert 'id="no-reports"' in page.text
