"""Start the real engine (and `appliance run`) as processes for integration tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from app import ctl
from app.errors import ControlError

REPO = Path(__file__).resolve().parents[2]


def appliance(data_dir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "app.cli", "--data-dir", str(data_dir), *args]


def spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("NOTIFY_SOCKET", None)
    with log.open("ab") as handle:  # the child keeps its own descriptor
        return subprocess.Popen(argv, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT, env=env)


def wait_for(
    what: str,
    check: Callable[[], Any],
    timeout: float,
    proc: subprocess.Popen[bytes] | None,
    log: Path,
) -> Any:
    """Poll ``check`` until it returns something truthy; fail fast with the log if ``proc`` dies."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(
                f"process exited ({proc.returncode}) waiting for {what}:\n{tail(log)}"
            )
        with contextlib.suppress(ControlError, OSError, KeyError):
            last = check()
            if last:
                return last
        time.sleep(0.2)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what} (last: {last!r}):\n{tail(log)}"
    )


def tail(log: Path, lines: int = 60) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def status(data_dir: Path) -> dict[str, Any]:
    reply = ctl.request(data_dir / "control.sock", "status", actor="test")
    assert reply["ok"], reply
    result: dict[str, Any] = reply["result"]
    return result


def stop(proc: subprocess.Popen[bytes], timeout: float = 20) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@contextlib.contextmanager
def running_engine(
    data_dir: Path, rest_url: str, ws_url: str, *extra: str, log: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    log = log or data_dir.parent / "engine.log"
    proc = spawn(
        appliance(data_dir, "engine", "--rest-url", rest_url, "--ws-url", ws_url, *extra), log
    )
    try:
        wait_for("the control socket", lambda: status(data_dir), 30, proc, log)
        yield proc
    finally:
        stop(proc)
