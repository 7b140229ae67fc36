"""The System page lists whole-state archives for download and offers them for restore (one form
below the table, the password asked again)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from app.store import archive
from app.store.archive import Layout
from tests.admin.conftest import PanelHandle


def test_archives_are_offered_for_download_and_restore(
    panel: PanelHandle, client: httpx.Client
) -> None:
    made = archive.create(Layout(panel.data_dir, panel.data_dir), time.time_ns())
    page = client.get("/system")
    assert page.status_code == 200
    name = made.path.name
    assert f'href="/system/backups/{name}"' in page.text
    assert f'<option value="{name}">' in page.text
    assert 'name="password" type="password"' in page.text
    download = client.get(f"/system/backups/{name}")
    assert download.status_code == 200 and download.content == made.path.read_bytes()


def test_the_system_page_shows_the_version_and_the_health_gates_verdicts(
    panel: PanelHandle, client: httpx.Client
) -> None:
    from app.update import health

    bad = health.Outcome(False, 300.0, [health.Probe("engine", False, "activating (start)")])
    health.record(panel.data_dir / "update-health.json", "0.1.0.7.2", bad, "rolled back", 10**12)
    page = client.get("/system")
    assert page.status_code == 200
    assert "<dt>0.1.0.7.2</dt>" in page.text
    assert "failed its health check; rolled back (2001-09-09 01:46:40 UTC)" in page.text
    # The host is no appliance image: no version to compare with, so no rollback banner.
    assert 'id="system-version">unknown (not an appliance image)' in page.text
    assert 'id="update-rollback"' not in page.text


def test_a_rollback_is_news_until_the_failed_version_runs(tmp_path: Path) -> None:
    from app.admin.views.system import updates_context
    from app.update import health

    os_release = tmp_path / "os-release"
    os_release.write_text('ID=debian\nIMAGE_VERSION="0.1.0.7.1"\n')
    engine = health.Probe("engine", False, "activating (start), restarted 2 times")
    bad = health.Outcome(False, 300.0, [engine, health.Probe("panel", True, "HTTP 303")])
    health.record(tmp_path / "update-health.json", "0.1.0.7.2", bad, "rolled back", 1)
    good = health.Outcome(True, 40.0, [])
    health.record(tmp_path / "update-health.json", "0.1.0.7.1", good, "kept", 2)
    ctx = updates_context(tmp_path, os_release)
    assert ctx["running"] == "0.1.0.7.1"
    assert ctx["rolled_back"]["version"] == "0.1.0.7.2"
    assert ctx["failed_probes"] == [
        {"name": "engine", "ok": False, "detail": "activating (start), restarted 2 times"}
    ]
    assert [v["version"] for v in ctx["verdicts"]] == ["0.1.0.7.1", "0.1.0.7.2"]
    os_release.write_text('IMAGE_VERSION="0.1.0.7.2"\n')  # installed again, and it runs
    assert updates_context(tmp_path, os_release)["rolled_back"] is None
