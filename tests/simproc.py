"""Run the exchange simulator as a real process for tests: ``with running_sim(...) as sim:``.

The process binds port 0 unless told otherwise and reports the port it got in its
``sim listening on http://H:P`` line, so there is no free-port race.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.paths import REPO

START_TIMEOUT_S = 20.0
_LISTENING = re.compile(rb"sim listening on http://[^:\s]+:(\d+)")


@dataclass
class SimHandle:
    """A running simulator process."""

    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def output(self) -> str:
        """Everything the process printed so far."""
        return self.log_path.read_text(errors="replace")

    def get(self, path: str) -> Any:
        """GET ``path`` and decode the JSON body (raises HTTPError on 4xx/5xx)."""
        with urllib.request.urlopen(self.rest_url + path, timeout=10) as resp:
            return json.loads(resp.read())

    def set_faults(self, **faults: object) -> dict[str, Any]:
        """Change faults at runtime (``None`` clears one); returns the set now in force."""
        req = urllib.request.Request(
            self.rest_url + "/_sim/faults",
            data=json.dumps(faults).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            body: dict[str, Any] = json.loads(resp.read())
            return body

    def stats(self) -> dict[str, Any]:
        """``GET /_sim/stats``: connections, frames sent per stream, fault counters."""
        body: dict[str, Any] = self.get("/_sim/stats")
        return body


def free_port() -> int:
    """A loopback port free right now (prefer letting the sim bind port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_ready(handle_proc: subprocess.Popen[bytes], log_path: Path, port: int | None) -> int:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if handle_proc.poll() is not None:
            raise RuntimeError(
                f"sim exited with {handle_proc.returncode} before it was ready:\n"
                + log_path.read_text(errors="replace")
            )
        if port is None:
            match = _LISTENING.search(log_path.read_bytes())
            if match:
                port = int(match.group(1))
        if port is not None:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/fapi/v1/time", timeout=1
                ) as resp:
                    if resp.status == 200:
                        return port
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
        time.sleep(0.05)
    raise RuntimeError(
        f"sim not ready after {START_TIMEOUT_S} s:\n" + log_path.read_text(errors="replace")
    )


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    """SIGTERM, then kill if it does not exit within ``timeout``; returns the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


@contextlib.contextmanager
def running_sim(*args: str, port: int | None = None) -> Iterator[SimHandle]:
    """Start ``python -m app.sim --host 127.0.0.1 --port P *args`` and stop it on exit."""
    with tempfile.TemporaryDirectory(prefix="sim-") as tmp:
        log_path = Path(tmp) / "sim.log"
        cmd = [
            sys.executable,
            "-m",
            "app.sim",
            "--host",
            "127.0.0.1",
            "--port",
            str(port or 0),
            *args,
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with log_path.open("wb") as log:
            proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            bound = _wait_ready(proc, log_path, port)
            yield SimHandle(bound, proc, log_path)
        finally:
            stop(proc)
