"""Start the real panel (``appliance admin``) as a process on a free port for tests."""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.integration.engineproc import appliance, spawn, stop, tail

_LISTENING = re.compile(r"panel listening on (https?)://[^:\s]+:(\d+)")
_CODE = re.compile(r"setup code: ([A-Z0-9]{4}-[A-Z0-9]{4})")
_CSRF = re.compile(r'<meta name="csrf-token" content="([0-9a-f]+)">')
PASSWORD = "correct horse battery"


@dataclass
class PanelHandle:
    proc: subprocess.Popen[bytes]
    log: Path
    data_dir: Path
    base_url: str

    def setup_code(self) -> str:
        match = _CODE.search(self.log.read_text(errors="replace"))
        assert match, f"no setup code in the log:\n{tail(self.log)}"
        return match.group(1)

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url, timeout=20, follow_redirects=False, verify=False
        )


def csrf_from(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "no csrf meta tag in the page"
    return match.group(1)


@contextlib.contextmanager
def running_panel(data_dir: Path, *extra: str, log: Path | None = None) -> Iterator[PanelHandle]:
    log = log or data_dir.parent / "panel.log"
    proc = spawn(appliance(data_dir, "admin", "--host", "127.0.0.1", "--port", "0", *extra), log)
    try:
        deadline = time.monotonic() + 30
        base = ""
        while time.monotonic() < deadline and not base:
            if proc.poll() is not None:
                raise AssertionError(f"panel exited ({proc.returncode}):\n{tail(log)}")
            match = _LISTENING.search(log.read_text(errors="replace"))
            if match:
                base = f"{match.group(1)}://127.0.0.1:{match.group(2)}"
            else:
                time.sleep(0.05)
        assert base, f"panel did not start:\n{tail(log)}"
        yield PanelHandle(proc, log, data_dir, base)
    finally:
        stop(proc)


def set_password(data_dir: Path, password: str = PASSWORD) -> None:
    subprocess.run(
        appliance(data_dir, "set-password"),
        input=password.encode() + b"\n",
        check=True,
        capture_output=True,
        timeout=60,
    )


def login(client: httpx.Client, password: str = PASSWORD) -> httpx.Response:
    """Log in through the form (fetching the page first for the pre-session CSRF token)."""
    page = client.get("/login")
    token = csrf_from(page.text)
    return client.post("/login", data={"password": password, "csrf_token": token})


def page_token(client: httpx.Client, path: str = "/") -> str:
    response = client.get(path)
    assert response.status_code == 200, response.text[:500]
    return csrf_from(response.text)
