"""The System page lists whole-state archives for download and offers them for restore (one form
below the table, the password asked again)."""

from __future__ import annotations

import time

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
