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

import msgspec
import pytest

from app import contract, ctl
from app.clock import SystemClock
from app.contract import Args, NoArgs, Result, Spec
from app.engine.control import MAX_REQUEST_BYTES, ControlServer, Handlers
from app.engine.supervisor import Supervisor
from app.errors import ControlError

Journal = list[tuple[str, str, dict[str, Any], bool, Any]]


class EchoArgs(Args, frozen=True):
    x: int = 0
    still: str = ""


class Echoed(Result, frozen=True):
    echo: EchoArgs


class Wrong(Result, frozen=True):
    """What a client expects when the engine's reply has drifted from the contract."""

    echo: int


ECHO = Spec("echo", EchoArgs, Echoed, "echo", changes=True)
ECHO_AS_WRONG = Spec("echo", EchoArgs, Wrong, "echo, misdeclared", changes=True)
PEEK = Spec("peek", NoArgs, str, "read only", changes=False)
SLOW = Spec("slow", NoArgs, str, "slow", changes=True, slow=True)
BROKEN = Spec("broken", NoArgs, str, "raises KeyError", changes=True)
OPEN = Spec("open", NoArgs, str, "release slow", changes=True)


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
        journal.append((actor, cmd, args, ok, contract.to_builtins(result)))

    async def echo(args: EchoArgs) -> Echoed:
        return Echoed(echo=args)

    async def peek(args: NoArgs) -> str:
        return "looked"

    async def slow(args: NoArgs) -> str:
        await gate.wait()
        return "finished"

    async def broken(args: NoArgs) -> str:
        return {}["missing"]  # type: ignore[no-any-return]

    async def release(args: NoArgs) -> str:
        return await _set(gate)

    handlers = Handlers()
    handlers.add(ECHO, echo)
    handlers.add(PEEK, peek)
    handlers.add(SLOW, slow)
    handlers.add(BROKEN, broken)
    handlers.add(OPEN, release)
    srv = ControlServer(data_dir / "control.sock", handlers, journal_fn, sup)
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
    assert reply["ok"] and reply["result"] == {"echo": {"x": 1, "still": ""}}
    assert isinstance(reply["id"], int)
    actor, cmd, args, ok, result = journal[-1]
    assert actor.startswith("test:alice (uid ") and (cmd, ok) == ("echo", True)
    assert args == {"x": 1, "still": ""} and result == {"echo": {"x": 1, "still": ""}}
    listed = {c["name"]: c for c in (await _call(path, "help"))["result"]}
    assert listed["echo"]["args"] == {"x": "int = 0", "still": "str = ''"}
    assert listed["slow"]["slow"] and not listed["peek"]["changes"]


async def test_read_only_commands_are_not_journalled(server: tuple[Path, Journal]) -> None:
    path, journal = server
    for cmd in ("peek", "help", "peek"):
        assert (await _call(path, cmd))["ok"]
    assert journal == []
    assert (await _call(path, "echo"))["ok"]
    assert [j[1] for j in journal] == ["echo"]


async def test_arguments_are_checked_against_the_contract(server: tuple[Path, Journal]) -> None:
    path, journal = server
    wrong_type = await _call(path, "echo", {"x": "one"})
    assert not wrong_type["ok"]
    assert wrong_type["error"] == "bad arguments for 'echo': Expected `int`, got `str` - at `$.x`"
    unknown = await _call(path, "echo", {"y": 1})
    assert not unknown["ok"] and "unknown field `y`" in unknown["error"]
    assert journal == []  # refused before anything ran


async def test_typed_client_converts_results_and_catches_drift(
    server: tuple[Path, Journal],
) -> None:
    path, _ = server
    client = ctl.EngineClient(path, actor="test:typed")
    reply = await client.call(ECHO, EchoArgs(x=3))
    assert reply.ok and reply.result == Echoed(echo=EchoArgs(x=3))
    drifted = await client.call(ECHO_AS_WRONG, EchoArgs(x=3))
    assert not drifted.ok and drifted.reachable
    assert "reply to 'echo' breaks the contract" in drifted.error
    done = client.call(SLOW)  # a slow command is waited for by the one poller
    await asyncio.sleep(0.2)
    assert (await client.call(OPEN)).ok
    assert (await done) == ctl.Reply(True, "finished")
    down = await ctl.EngineClient(path.parent / "absent.sock").call(PEEK)
    assert not down.ok and not down.reachable and "engine not running" in down.error


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
    assert replies[4]["error"] == "bad arguments: 'missing'"  # a handler's own KeyError
    assert replies[5]["result"] == {"echo": {"x": 0, "still": "alive"}}
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
    assert out.startswith("reply:")
    refused = json.loads(out.removeprefix("reply:"))
    assert refused["ok"] is False and refused["error"] == "permission denied"
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
    assert ctl.parse_args(contract.JOURNAL, ["limit=5"]) == contract.JournalArgs(limit=5)
    assert ctl.parse_args(contract.KILL, ["reason=stop now"]) == contract.KillArgs(
        reason="stop now"
    )
    with pytest.raises(ControlError, match="not key=value"):
        ctl.parse_args(contract.KILL, ["novalue"])
    with pytest.raises(ControlError, match=r"unknown field `why`.*arguments: reason: str"):
        ctl.parse_args(contract.KILL, ["why=x"])
    with pytest.raises(ControlError, match="unknown command 'paws'"):
        ctl.spec_named("paws")


def test_every_contract_spec_is_well_formed() -> None:
    """Names are unique and match their keys; args are structs that refuse unknown fields."""
    for name, spec in contract.COMMANDS.items():
        assert spec.name == name
        assert issubclass(spec.args, Args)
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert({"no_such_argument": 1}, spec.args)
        assert spec.doc and spec.arg_fields() is not None
    assert [s for s in contract.COMMANDS.values() if s.slow] == [
        contract.BACKUP,
        contract.MODEL_VALIDATE,
        contract.MODEL_ADD,
        contract.BACKUP_IMPORT,
        contract.BACKUP_RESTORE,
    ]


async def test_deep_nesting_and_huge_numbers_get_an_error_reply(
    server: tuple[Path, Journal],
) -> None:
    path, journal = server
    deep = b'{"id": 1, "cmd": "echo", "args": {"x": ' + b"[" * 30_000 + b"]" * 30_000 + b"}}\n"
    huge = b'{"id": 2, "cmd": "echo", "args": {"x": ' + b"9" * 60_000 + b"}}\n"
    replies = await _raw(path, deep + huge + b'{"id": 3, "cmd": "echo", "args": {"x": 5}}\n')
    assert [r["ok"] for r in replies] == [False, False, True]
    assert replies[0]["error"] == "malformed request: nested deeper than 16 levels"
    assert replies[1]["error"] == "malformed request: a number longer than 40 characters"
    assert [j[1] for j in journal] == ["echo"]  # only the sound request ran


async def test_idle_connections_are_closed(
    server: tuple[Path, Journal], monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.engine import control

    monkeypatch.setattr(control, "IDLE_TIMEOUT_S", 0.2)
    path, _ = server
    reader, writer = await asyncio.open_unix_connection(str(path))
    async with asyncio.timeout(5):  # closed by the server, long before this
        assert await reader.read() == b""
    writer.close()
