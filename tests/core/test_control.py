"""The control channel over a real Unix socket: answers, journals, refuses, survives bad input."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from app import ctl
from app.clock import SystemClock
from app.engine.control import MAX_REQUEST_BYTES, Command, ControlServer
from app.engine.supervisor import Supervisor
from app.errors import ControlError

Journal = list[tuple[str, str, dict[str, Any], bool, Any]]


@pytest.fixture
def data_dir() -> AsyncIterator[Path]:
    # Not under pytest's 0700 tmp dir: the permission tests need the socket's own modes to count.
    with tempfile.TemporaryDirectory(prefix="ctl-") as tmp:
        os.chmod(tmp, 0o755)
        yield Path(tmp) / "data"  # type: ignore[misc]


@pytest.fixture
async def server(data_dir: Path) -> AsyncIterator[tuple[Path, Journal]]:
    journal: Journal = []
    sup = Supervisor(SystemClock())
    gate = asyncio.Event()

    async def journal_fn(actor: str, cmd: str, args: dict[str, Any], ok: bool, result: Any) -> None:
        journal.append((actor, cmd, args, ok, result))

    async def echo(args: dict[str, Any]) -> Any:
        return {"echo": args}

    async def slow(args: dict[str, Any]) -> Any:
        await gate.wait()
        return "finished"

    async def broken(args: dict[str, Any]) -> Any:
        return args["missing"]

    commands = {
        "echo": Command(echo, "echo"),
        "slow": Command(slow, "slow", slow=True),
        "broken": Command(broken, "raises KeyError"),
        "open": Command(lambda a: _set(gate), "release slow"),
    }
    srv = ControlServer(data_dir / "control.sock", commands, journal_fn, sup)
    sup.add("control", srv.serve)
    for _ in range(100):
        if srv.path.exists():
            break
        await asyncio.sleep(0.01)
    yield srv.path, journal
    await sup.stop()


async def _set(event: asyncio.Event) -> str:
    event.set()
    return "opened"


async def _call(path: Path, cmd: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    return await asyncio.to_thread(ctl.request, path, cmd, args or {}, "test:alice")


async def _raw(path: Path, payload: bytes) -> list[dict[str, Any]]:
    reader, writer = await asyncio.open_unix_connection(str(path), limit=4 * MAX_REQUEST_BYTES)
    writer.write(payload)
    await writer.drain()
    writer.write_eof()
    lines = []
    while line := await reader.readline():
        lines.append(json.loads(line))
    writer.close()
    return lines


async def test_commands_are_answered_and_journalled(server: tuple[Path, Journal]) -> None:
    path, journal = server
    reply = await _call(path, "echo", {"x": 1})
    assert reply["ok"] and reply["result"] == {"echo": {"x": 1}}
    assert isinstance(reply["id"], int)
    actor, cmd, args, ok, result = journal[-1]
    assert actor.startswith("test:alice (uid ") and (cmd, args, ok) == ("echo", {"x": 1}, True)
    assert result == {"echo": {"x": 1}}
    assert "echo" in (await _call(path, "help"))["result"]


async def test_errors_are_replies_not_crashes(server: tuple[Path, Journal]) -> None:
    path, journal = server
    replies = await _raw(
        path,
        b"this is not json\n"
        b"[1, 2]\n"
        b'{"id": 5, "cmd": 7}\n'
        b'{"id": 6, "cmd": "nope"}\n'
        b'{"id": 7, "cmd": "broken", "args": {}}\n'
        b'{"id": 8, "cmd": "echo", "args": {"still": "alive"}}\n',
    )
    assert [r["ok"] for r in replies] == [False, False, False, False, False, True]
    assert "not JSON" in replies[0]["error"]
    assert "JSON object" in replies[1]["error"]
    assert replies[2]["id"] == 5 and "malformed" in replies[2]["error"]
    assert "unknown command 'nope'" in replies[3]["error"]
    assert replies[4]["error"] == "bad arguments: 'missing'"
    assert replies[5]["result"] == {"echo": {"still": "alive"}}
    assert ("broken", False) in [(j[1], j[3]) for j in journal]


async def test_oversized_request_is_refused(server: tuple[Path, Journal]) -> None:
    path, _ = server
    replies = await _raw(
        path, b'{"cmd": "echo", "args": {"x": "' + b"a" * (2 * MAX_REQUEST_BYTES) + b'"}}\n'
    )
    assert replies and not replies[0]["ok"] and "bytes" in replies[0]["error"]
    assert (await _call(path, "echo"))["ok"]


async def test_slow_command_returns_a_job_to_poll(server: tuple[Path, Journal]) -> None:
    path, journal = server
    reply = await _call(path, "slow")
    job = reply["result"]["job"]
    state = (await _call(path, "job.status", {"job": job}))["result"]
    assert state["state"] == "running"
    await _call(path, "open")
    final = await asyncio.to_thread(ctl.wait_job, path, job, 5.0)
    assert (final["state"], final["result"]) == ("done", "finished")
    cmds = [j[1] for j in journal]
    assert "slow" in cmds and "slow:done" in cmds
    assert not (await _call(path, "job.status", {"job": "slow-999"}))["ok"]


def _connect_as_nobody(path: Path) -> str:
    code = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "try:\n"
        f"    s.connect({str(path)!r})\n"
        "except OSError as e:\n"
        "    print('refused:', type(e).__name__); sys.exit(0)\n"
        # A refused peer is told so at once and disconnected: read before sending anything.
        "s.settimeout(10)\n"
        "print('reply:', s.makefile().readline().strip())\n"
    )
    # The venv's interpreter may live under /root (0700): use one that any user can run.
    python = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
    out = subprocess.run(
        [python, "-c", code],
        user=65534,
        group=65534,
        capture_output=True,
        text=True,
        timeout=20,
        cwd="/",
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.skipif(
    os.geteuid() != 0, reason="switching to another uid needs root (CI runs as root)"
)
async def test_refused_without_access_to_the_socket(server: tuple[Path, Journal]) -> None:
    path, journal = server
    assert oct(path.stat().st_mode & 0o777) == "0o660"
    assert oct(path.parent.stat().st_mode & 0o777) == "0o750"
    assert await asyncio.to_thread(_connect_as_nobody, path) == "refused: PermissionError"
    # Loosen the modes by hand: the peer-credential check still refuses a stranger.
    os.chmod(path.parent, 0o755)
    os.chmod(path, 0o666)
    out = await asyncio.to_thread(_connect_as_nobody, path)
    assert out.startswith("reply:") and '"ok": false' in out and "permission denied" in out
    assert all(j[1] != "echo" for j in journal)


def test_client_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ControlError, match="engine not running"):
        ctl.request(tmp_path / "absent.sock", "status")
    dead = tmp_path / "dead.sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(dead))
    sock.close()
    with pytest.raises(ControlError, match="refuses connections"):
        ctl.request(dead, "status")
    assert ctl.parse_args(["a=1", "b=x", 'c={"d": true}']) == {"a": 1, "b": "x", "c": {"d": True}}
    with pytest.raises(ControlError):
        ctl.parse_args(["novalue"])
