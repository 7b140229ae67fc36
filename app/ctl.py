"""The one client of the engine's control channel: ``appliance ctl`` and the panel use it.

:class:`EngineClient` sends only what ``app.contract`` declares (``call(contract.KILL,
KillArgs(reason=...))``: mypy checks the arguments and knows the result's type) and converts every
reply into the command's result type, so a key renamed on either side fails loudly here instead of
leaving a card empty. Slow commands are waited for by the one job poller, :meth:`EngineClient.wait`.
An engine that is down or too slow is a reply too (``reachable`` False), so a page can show a
banner and still render.

:func:`request` sends raw JSON (any command name, any arguments): for protocol tests and probes
only, never for the product's own calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic

import msgspec

from app import contract
from app.contract import A, R, Spec
from app.errors import ControlError

_ids = itertools.count(1)
_MAX_REPLY = 16 * 1024 * 1024


@dataclass(frozen=True)
class Reply(Generic[R]):
    """An answer: ``result`` (the command's result type) when ``ok``, else ``error``."""

    ok: bool
    result: R | None = None
    error: str = ""
    reachable: bool = True


class EngineClient:
    """Sends one command per connection (the engine journals each change with its actor)."""

    def __init__(self, socket_path: Path, timeout_s: float = 10.0, actor: str = "") -> None:
        self.socket_path = socket_path
        self.timeout_s = timeout_s
        self.actor = actor or f"cli:{os.getenv('USER', 'unknown')}"

    async def call(
        self,
        spec: Spec[A, R],
        args: A | None = None,
        actor: str = "",
        job_timeout_s: float = 300.0,
    ) -> Reply[R]:
        """Run ``spec`` and return its result; a slow command's job is waited for."""
        if spec.slow:
            started = await self.start(spec, args, actor)
            if not started.ok or started.result is None:
                return Reply(False, error=started.error, reachable=started.reachable)
            return await self.wait(spec, started.result.job, job_timeout_s, actor)
        return await self._typed(
            spec.name, args if args is not None else spec.args(), spec.result, actor
        )

    async def start(
        self, spec: Spec[A, R], args: A | None = None, actor: str = ""
    ) -> Reply[contract.JobStarted]:
        """Start a slow command; the reply names its job."""
        if not spec.slow:
            raise ControlError(f"{spec.name} is not a slow command")
        a = args if args is not None else spec.args()
        return await self._typed(spec.name, a, contract.JobStarted, actor)

    async def wait(
        self, spec: Spec[A, R], job: str, timeout_s: float = 300.0, actor: str = ""
    ) -> Reply[R]:
        """Wait for ``job``; its result as ``spec``'s result type."""
        final = await self.wait_state(job, timeout_s, actor)
        if not final.ok or final.result is None:
            return Reply(False, error=final.error, reachable=final.reachable)
        if final.result.state == "failed":
            return Reply(False, error=final.result.error or f"{spec.name} failed")
        return _convert(spec.name, final.result.result, spec.result)

    async def wait_state(
        self, job: str, timeout_s: float = 300.0, actor: str = ""
    ) -> Reply[contract.JobState]:
        """The one job poller: ``job.status`` with a growing delay until the job ends."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        delay = 0.05
        while True:
            state = await self.job(job, actor)
            if not state.ok or state.result is None or state.result.state != "running":
                return state
            if loop.time() > deadline:
                return Reply(False, error=f"job {job}: still running after {timeout_s:.0f} s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def job(self, job: str, actor: str = "") -> Reply[contract.JobState]:
        return await self.call(contract.JOB_STATUS, contract.JobArgs(job=job), actor)

    async def _typed(
        self, name: str, args: contract.Args, result: type[Any], actor: str
    ) -> Reply[Any]:
        raw = await self.raw(name, contract.to_builtins(args), actor)
        if not raw.ok:
            return raw
        return _convert(name, raw.result, result)

    async def raw(self, cmd: str, args: dict[str, Any], actor: str = "") -> Reply[Any]:
        """Send ``cmd`` as given; the result is left as plain JSON data."""
        try:
            return await asyncio.wait_for(
                self._exchange(cmd, args, actor or self.actor), self.timeout_s
            )
        except TimeoutError:
            return Reply(False, error=f"the engine did not answer {cmd!r} in time", reachable=False)
        except (FileNotFoundError, ConnectionRefusedError):
            return Reply(
                False,
                error=f"engine not running (no socket at {self.socket_path})",
                reachable=False,
            )
        except PermissionError:
            return Reply(
                False,
                error=f"permission denied on {self.socket_path}: not in the engine's group",
                reachable=False,
            )
        except (OSError, ValueError) as exc:
            return Reply(False, error=f"control channel: {exc}", reachable=False)

    async def _exchange(self, cmd: str, args: dict[str, Any], actor: str) -> Reply[Any]:
        reader, writer = await asyncio.open_unix_connection(str(self.socket_path), limit=_MAX_REPLY)
        try:
            body = {"id": next(_ids), "cmd": cmd, "args": args, "actor": actor}
            writer.write(json.dumps(body).encode() + b"\n")
            await writer.drain()
            line = await reader.readline()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        if not line:
            return Reply(False, error="the engine closed the connection", reachable=False)
        reply = json.loads(line)
        if reply.get("ok"):
            return Reply(True, result=reply.get("result"))
        return Reply(False, error=str(reply.get("error", "")))

    async def commands(self) -> set[str] | None:
        """The engine's command names (``help``), or None when it is unreachable."""
        reply = await self.call(contract.HELP)
        return {c.name for c in reply.result} if reply.ok and reply.result is not None else None


def _convert(name: str, data: Any, result: type[R]) -> Reply[R]:
    try:
        return Reply(True, result=msgspec.convert(data, result))
    except msgspec.ValidationError as exc:
        return Reply(False, error=f"the engine's reply to {name!r} breaks the contract: {exc}")


def parse_args(spec: Spec[A, R], items: list[str]) -> A:
    """``key=value`` pairs as ``spec``'s arguments; values are JSON where they parse as JSON."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ControlError(f"argument {item!r} is not key=value")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    try:
        return msgspec.convert(out, spec.args, strict=False)
    except msgspec.ValidationError as exc:
        fields = ", ".join(f"{k}: {v}" for k, v in spec.arg_fields().items()) or "none"
        raise ControlError(f"{spec.name}: {exc} (arguments: {fields})") from exc


def spec_named(name: str) -> contract.AnySpec:
    spec = contract.COMMANDS.get(name)
    if spec is None:
        raise ControlError(f"unknown command {name!r}; commands: {', '.join(contract.COMMANDS)}")
    return spec


# -- raw, synchronous: protocol tests and probes -------------------------------------------------


def request(
    path: Path,
    cmd: str,
    args: dict[str, Any] | None = None,
    actor: str = "",
    timeout: float = 10.0,
) -> dict[str, Any]:
    """Send one raw request and return the engine's reply object (``ok`` plus result or error)."""
    actor = actor or f"cli:{os.getenv('USER', 'unknown')}"
    payload = {"id": next(_ids), "cmd": cmd, "args": args or {}, "actor": actor}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except FileNotFoundError as exc:
            raise ControlError(f"engine not running: no control socket at {path}") from exc
        except PermissionError as exc:
            raise ControlError(f"permission denied on {path}: not in the engine's group") from exc
        except ConnectionRefusedError as exc:
            raise ControlError(f"engine not running: {path} refuses connections") from exc
        sock.sendall(json.dumps(payload).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    if not data:
        raise ControlError("the engine closed the connection without a reply")
    reply: dict[str, Any] = json.loads(data)
    return reply


def wait_job(path: Path, job_id: str, timeout: float = 300.0, actor: str = "") -> dict[str, Any]:
    """:meth:`EngineClient.wait_state`, synchronously; the job's final state as plain data."""
    reply = asyncio.run(EngineClient(path, actor=actor).wait_state(job_id, timeout))
    if not reply.ok or reply.result is None:
        raise ControlError(reply.error)
    state: dict[str, Any] = contract.to_builtins(reply.result)
    return state
