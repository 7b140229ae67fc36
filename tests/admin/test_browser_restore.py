"""Restore from the System page, in Chromium, against the real simulator, engine and panel.

A risk limit is saved, an archive made with "Back up now" (and downloaded, as an owner keeps one),
the limit changed again; then the archive is restored from the list on the appliance, and later
the downloaded copy is uploaded and restored: each time the page says what happened, the engine
restarts into the archive (this test restarts it, as systemd would) and comes back paused, and the
Settings page shows the limit as it was in the archive. Uploads of a truncated copy and of a file
that is no backup at all are refused with their reasons and list nothing. The System page fits a
phone's and a laptop's width in both states; screenshots in artifacts/screenshots/
(system-upload-refused-<width>.png, system-restore-<width>.png).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.node.engine import EXIT_RESTART
from app.store import archive
from tests.integration.engineproc import appliance, spawn, status, stop, wait_for
from tests.simproc import running_sim

from .panelproc import PanelHandle, running_panel, set_password
from .test_browser import CHROMIUM, CHROMIUM_ARGS, log_in, playwright_api, shot
from .test_browser_pages import _check_layout

pytestmark = pytest.mark.slow

PASSWORD = "correct horse battery"


class Stack:
    """Simulator, engine and panel sharing one data directory; the test restarts the engine
    when it exits to apply a restore (``EXIT_RESTART``), as systemd's Restart=always does."""

    def __init__(self, root: Path, sim: Any, panel: PanelHandle | None = None) -> None:
        self.root, self.sim, self.data = root, sim, root / "data"
        self.log = root / "engine.log"
        self.engine = self._start()
        self.panel = panel

    def _start(self) -> Any:
        urls = ("--rest-url", self.sim.rest_url, "--ws-url", self.sim.ws_url)
        proc = spawn([*appliance(self.data), "engine", *urls], self.log)
        wait_for("the control socket", lambda: status(self.data), 60, proc, self.log)
        return proc

    def engine_restarts(self) -> dict[str, Any]:
        """The engine exits to swap the archive in; started again, it is paused."""
        assert self.engine.wait(60) == EXIT_RESTART
        self.engine = self._start()
        st: dict[str, Any] = status(self.data)
        return st

    def close(self) -> None:
        stop(self.engine)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("restore")
    with running_sim("--seed", "5", "--funding-interval-s", "60") as sim:
        handle = Stack(root, sim)
        try:
            set_password(handle.data, PASSWORD)
            with running_panel(handle.data, log=root / "panel.log") as panel:
                handle.panel = panel
                yield handle
        finally:
            handle.close()


@pytest.fixture(scope="module")
def browser(stack: Stack) -> Iterator[Any]:
    with playwright_api.sync_playwright() as pw:
        instance = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def page(browser: Any, stack: Stack) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.set_default_timeout(30_000)
    pg = context.new_page()
    assert stack.panel is not None
    log_in(pg, stack.panel, PASSWORD)
    pg.wait_for_url(stack.panel.base_url + "/")
    try:
        yield pg
    finally:
        context.close()


def _url(stack: Stack, path: str) -> str:
    assert stack.panel is not None
    return stack.panel.base_url + path


def _open(page: Any, stack: Stack, path: str) -> None:
    """Open ``path``, logging in again if the restore ended the session."""
    page.goto(_url(stack, path))
    if page.url.endswith("/login"):
        assert stack.panel is not None
        log_in(page, stack.panel, PASSWORD)
        page.wait_for_url(_url(stack, "/"))
        page.goto(_url(stack, path))


def _save_leverage(page: Any, stack: Stack, value: str) -> None:
    _open(page, stack, "/settings")
    page.locator("#risk-max_leverage").fill(value)
    page.get_by_role("button", name="Save risk limits").click()
    page.locator("#settings-outcome .ok").wait_for()


def _leverage_shown(page: Any, stack: Stack) -> str:
    _open(page, stack, "/settings")
    value: str = page.locator("#risk-max_leverage").input_value()
    return value


def _back_up_now(page: Any, stack: Stack) -> str:
    _open(page, stack, "/system")
    before = {a.path.name for a in archive.list_archives(stack.data / "backups")}
    page.get_by_role("button", name="Back up now").click()
    page.locator("#system-outcome .ok", has_text="verified").wait_for()
    after = {a.path.name for a in archive.list_archives(stack.data / "backups")}
    [made] = after - before - {n for n in after if "_scheduled" in n}
    # The list refreshes by itself (event backups-changed): the new archive is offered.
    page.locator(f"#restore-name option[value='{made}']").wait_for(state="attached")
    return made


def _paused_after_restart(page: Any, stack: Stack) -> None:
    st = stack.engine_restarts()
    assert st["state"] == "paused", st
    _open(page, stack, "/")
    page.locator("#trading-now", has_text="Paused").wait_for()


def test_restore_a_local_archive_then_an_uploaded_one(
    stack: Stack, page: Any, tmp_path: Path
) -> None:
    _save_leverage(page, stack, "2")
    made = _back_up_now(page, stack)
    with page.expect_download() as download:
        page.locator(f"#backup-files a[href='/system/backups/{made}']").click()
    kept = tmp_path / made
    download.value.save_as(kept)
    assert kept.read_bytes() == (stack.data / "backups" / made).read_bytes()
    _save_leverage(page, stack, "4")
    assert _leverage_shown(page, stack) == "4"

    # 1. The archive on the appliance, picked from the list.
    _open(page, stack, "/system")
    page.locator("#restore-name").select_option(made)
    page.locator("#restore-password").fill(PASSWORD)
    page.get_by_role("button", name="Restore", exact=True).click()
    outcome = page.locator("#restore-outcome .ok")
    outcome.wait_for()
    text = outcome.inner_text()
    assert f"{made} verified; the engine restarts into it and comes back paused" in text
    assert "_pre-restore.tar.zst" in text  # the state it replaced is kept
    _paused_after_restart(page, stack)
    assert _leverage_shown(page, stack) == "2"

    # 2. Uploads that are no backup, or a cut-off one, are refused with the reason.
    _save_leverage(page, stack, "5")
    _open(page, stack, "/system")
    listed = len(archive.list_archives(stack.data / "backups"))
    cut = tmp_path / "cut-short.tar.zst"
    cut.write_bytes(kept.read_bytes()[:-200])
    foreign = tmp_path / "holiday.png"
    foreign.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(2000))
    for path, reason in (
        (cut, "cut-short.tar.zst is truncated"),
        (foreign, "holiday.png is not an appliance backup"),
    ):
        page.get_by_label("Archive file").set_input_files(str(path))
        page.get_by_role("button", name="Upload and verify").click()
        page.locator("#backup-upload-outcome .failed", has_text=reason).wait_for()
    assert len(archive.list_archives(stack.data / "backups")) == listed
    assert list((stack.data / "uploads").iterdir()) == []
    for width in (390, 1280):
        page.set_viewport_size({"width": width, "height": 900})
        shot(page, f"system-upload-refused-{width}")  # first: it shows what a failed check saw
        # No exemption for /system (test_browser_pages has one): its tables fit a phone now.
        _check_layout(page, width, f"/system (refused upload) at {width}")

    # 3. The downloaded copy, uploaded: verified, listed, and restored from the upload's form.
    page.set_viewport_size({"width": 1280, "height": 900})
    page.get_by_label("Archive file").set_input_files(str(kept))
    page.get_by_role("button", name="Upload and verify").click()
    verdict = page.locator("#backup-upload-outcome .ok")
    verdict.wait_for()
    assert "verified: made" in verdict.inner_text()
    [uploaded] = [
        a.path.name for a in archive.list_archives(stack.data / "backups") if a.label == "uploaded"
    ]
    assert uploaded in verdict.inner_text()
    page.locator(f"#restore-name option[value='{uploaded}']").wait_for(state="attached")
    for width in (390, 1280):
        page.set_viewport_size({"width": width, "height": 900})
        shot(page, f"system-restore-{width}")  # first: it shows what a failed check saw
        _check_layout(page, width, f"/system (uploaded) at {width}")
    page.locator("#upload-restore-password").fill(PASSWORD)
    page.get_by_role("button", name="Restore the uploaded archive").click()
    done = page.locator("#backup-upload-outcome .ok", has_text="comes back paused")
    done.wait_for()
    assert uploaded in done.inner_text()
    _paused_after_restart(page, stack)
    assert _leverage_shown(page, stack) == "2"
    _open(page, stack, "/system")
    assert page.locator("#restore-name option", has_text="pre-restore").count() == 2
