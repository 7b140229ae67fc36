"""The control channel: the one way another process commands the engine.

A Unix stream socket in the data directory, mode 0660 inside a 0750 directory, so only the engine's
owner and group (the panel's user is in that group on the image) can connect; the peer's
credentials are checked again with ``SO_PEERCRED`` in case the file modes were loosened by hand.

Protocol: newline-delimited JSON. Request ``{"id", "cmd", "args", "actor"}``; reply
``{"id", "ok": true, "result": ...}`` or ``{"id", "ok": false, "error": "..."}``. A slow command
answers at once with ``{"job": "<id>"}``; ``job.status {"job": id}`` polls it. Every command and its
result (for jobs: acceptance and outcome) is journalled with actor, peer uid and time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from app import contract
from app.contract import A, AnySpec, R, Spec
from app.engine.supervisor import Supervisor
from app.errors import ApplianceError

log = logging.getLogger(__name__)


JournalFn = Callable[[str, str, dict[str, Any], bool, Any], Awaitable[None]]

MAX_REQUEST_BYTES = 64 * 1024
# A request nests a few levels (settings.set's risk limits: 3); anything deeper is refused before
# the JSON parser recurses into it.
MAX_NESTING = 16
# Numbers longer than this are refused before Python turns them into (slow, unbounded) integers.
MAX_NUMBER_DIGITS = 40
# A connection that sends nothing for this long is closed (clients send one request and wait).
IDLE_TIMEOUT_S = 60.0
_NUMBER = re.compile(rb"[-+]?\d[\d.eE+-]*")
_PEERCRED = struct.Struct("3i")


@dataclass(frozen=True)
class Command:
    """A contract command and the engine's handler for it."""

    spec: AnySpec
    handler: Callable[[Any], Awaitable[Any]]


class Handlers:
    """The engine's handlers, one per contract command; mypy checks each against its spec."""

    def __init__(self) -> None:
        self._by_name: dict[str, Command] = {}

    def add(self, spec: Spec[A, R], handler: Callable[[A], Awaitable[R]]) -> None:
        if spec.name in self._by_name:
            raise ValueError(f"command {spec.name!r} registered twice")
        self._by_name[spec.name] = Command(spec, handler)

    def update(self, other: Handlers) -> None:
        for command in other._by_name.values():
            self.add(command.spec, command.handler)

    def get(self, name: str) -> Command | None:
        return self._by_name.get(name)

    def names(self) -> set[str]:
        return set(self._by_name)

    def missing(self) -> list[str]:
        """Contract commands without a handler (the engine refuses to start with any)."""
        built_in = {contract.JOB_STATUS.name, contract.HELP.name}
        return sorted(set(contract.COMMANDS) - self.names() - built_in)


class ControlServer:
    """Serves the control socket; see the module docstring for the protocol."""

    def __init__(
        self,
        path: Path,
        handlers: Handlers,
        journal: JournalFn,
        supervisor: Supervisor,
    ) -> None:
        self.path = path
        self._journal = journal
        self._supervisor = supervisor
        self._handlers = Handlers()
        self._handlers.update(handlers)
        self._handlers.add(contract.JOB_STATUS, self._job_status)
        self._handlers.add(contract.HELP, self._help)

    async def serve(self) -> None:
        """Listen until cancelled."""
        self.path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        old = os.umask(0o117)  # the socket is born 0660: no window where others could connect
        try:
            server = await asyncio.start_unix_server(
                self._client, path=str(self.path), limit=MAX_REQUEST_BYTES
            )
        finally:
            os.umask(old)
        os.chmod(self.path, 0o660)
        try:
            async with server:
                await server.serve_forever()
        finally:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock: socket.socket = writer.get_extra_info("socket")
        uid = self._peer_uid(sock)
        try:
            if uid is None:
                await self._reply(writer, None, False, "permission denied")
                return
            while True:
                try:
                    line = await asyncio.wait_for(reader.readline(), IDLE_TIMEOUT_S)
                except TimeoutError:
                    return
                except (ValueError, asyncio.LimitOverrunError):
                    await self._reply(
                        writer, None, False, f"request over {MAX_REQUEST_BYTES} bytes"
                    )
                    return
                if not line:
                    return
                await self._handle(writer, line, uid)
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    @staticmethod
    def _peer_uid(sock: socket.socket) -> int | None:
        """The peer's uid if it may command us: root, our own user, or our group."""
        uid: int
        gid: int
        _, uid, gid = _PEERCRED.unpack(
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
        )
        if uid in (0, os.getuid()) or gid == os.getgid():
            return uid
        log.warning("control: refused peer uid %d gid %d", uid, gid)
        return None

    async def _handle(self, writer: asyncio.StreamWriter, line: bytes, uid: int) -> None:
        problem = _shape_problem(line)
        if problem:
            await self._reply(writer, None, False, f"malformed request: {problem}")
            return
        try:
            request = json.loads(line)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError too
            await self._reply(writer, None, False, f"malformed request: not JSON ({exc})")
            return
        if not isinstance(request, dict):
            await self._reply(writer, None, False, "malformed request: expected a JSON object")
            return
        req_id = request.get("id")
        cmd, raw_args = request.get("cmd"), request.get("args", {})
        actor = request.get("actor", "")
        if not isinstance(req_id, (str, int, type(None))):
            req_id = None
        if not isinstance(cmd, str) or not isinstance(raw_args, dict) or not isinstance(actor, str):
            await self._reply(
                writer, req_id, False, "malformed request: need cmd (string), args (object)"
            )
            return
        who = f"{actor or 'anonymous'} (uid {uid})"
        command = self._handlers.get(cmd)
        if command is None:
            await self._reply(writer, req_id, False, f"unknown command {cmd!r}; try 'help'")
            return
        spec = command.spec
        try:
            args = msgspec.convert(raw_args, spec.args)
        except msgspec.ValidationError as exc:
            await self._reply(writer, req_id, False, f"bad arguments for {cmd!r}: {exc}")
            return
        if spec.slow:
            job_id = self._supervisor.start_job(cmd, lambda: self._run_job(who, command, args))
            started = contract.JobStarted(job=job_id)
            if spec.changes:
                await self._journal_safely(who, cmd, args, True, started)
            await self._reply(writer, req_id, True, started)
            return
        ok, result = await self._run(command, args)
        if spec.changes:
            await self._journal_safely(who, cmd, args, ok, result)
        await self._reply(writer, req_id, ok, result)

    async def _run(self, command: Command, args: Any) -> tuple[bool, Any]:
        try:
            return True, await command.handler(args)
        except ApplianceError as exc:
            return False, str(exc)
        except (KeyError, TypeError, ValueError) as exc:
            return False, f"bad arguments: {exc}"
        except Exception as exc:  # a caller always gets an answer; the log keeps the trace
            log.exception("control: %s failed", command.spec.name)
            return False, f"{command.spec.name} failed: {type(exc).__name__}: {exc}"

    async def _journal_safely(self, who: str, cmd: str, args: Any, ok: bool, result: Any) -> None:
        """Journal, or say in the log why not: a full disk must not swallow the reply."""
        try:
            plain = contract.to_builtins(result)
            await self._journal(who, cmd, contract.to_builtins(args), ok, plain)
        except Exception as exc:
            log.error("control: %s by %s not journalled: %s", cmd, who, exc)

    async def _run_job(self, who: str, command: Command, args: Any) -> Any:
        ok, result = await self._run(command, args)
        if command.spec.changes:
            await self._journal_safely(who, command.spec.name + ":done", args, ok, result)
        if not ok:
            raise ApplianceError(str(result))
        # The job keeps plain data: job.status sends it as the command's result type.
        return contract.to_builtins(result)

    async def _job_status(self, args: contract.JobArgs) -> contract.JobState:
        job = self._supervisor.job(args.job)
        if job is None:
            raise ApplianceError(f"no job {args.job!r}")
        return msgspec.convert(job.as_dict(), contract.JobState)

    async def _help(self, args: contract.NoArgs) -> list[contract.CommandHelp]:
        out = []
        for name in sorted(self._handlers.names()):
            command = self._handlers.get(name)
            assert command is not None
            spec = command.spec
            out.append(
                contract.CommandHelp(
                    name=name,
                    doc=spec.doc,
                    changes=spec.changes,
                    slow=spec.slow,
                    args=spec.arg_fields(),
                )
            )
        return out

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, req_id: Any, ok: bool, payload: Any) -> None:
        body: dict[str, Any] = {"id": req_id, "ok": ok}
        body["result" if ok else "error"] = payload
        writer.write(contract.encode(body) + b"\n")
        await writer.drain()


def _shape_problem(line: bytes) -> str:
    """Why ``line`` is refused before parsing: nesting or numbers beyond any real request."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in line:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_NESTING:
                return f"nested deeper than {MAX_NESTING} levels"
        elif byte in (0x5D, 0x7D):
            depth -= 1
    outside = re.sub(rb'"(?:[^"\\]|\\.)*"', b'""', line)  # numbers inside strings are text
    if any(len(m) > MAX_NUMBER_DIGITS for m in _NUMBER.findall(outside)):
        return f"a number longer than {MAX_NUMBER_DIGITS} characters"
    return ""
