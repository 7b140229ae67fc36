"""An asyncio client of the engine's control channel (the protocol of ``app.engine.control``).

Every reply comes back as a :class:`Reply`; an engine that is down, or too slow, is a reply too
(``reachable`` False), so a page can show a banner and still render the read-only data.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_ids = itertools.count(1)
_MAX_REPLY = 16 * 1024 * 1024


@dataclass(frozen=True)
class Reply:
    ok: bool
    result: Any = None
    error: str = ""
    reachable: bool = True


class EngineClient:
    """Sends one command per connection (the engine journals each with its actor)."""

    def __init__(self, socket_path: Path, timeout_s: float) -> None:
        self.socket_path = socket_path
        self.timeout_s = timeout_s

    async def call(
        self, cmd: str, args: dict[str, Any] | None = None, actor: str = "panel"
    ) -> Reply:
        try:
            return await asyncio.wait_for(self._call(cmd, args or {}, actor), self.timeout_s)
        except TimeoutError:
            return Reply(False, error=f"the engine did not answer {cmd!r} in time", reachable=False)
        except (FileNotFoundError, ConnectionRefusedError):
            return Reply(False, error="engine not running", reachable=False)
        except PermissionError:
            return Reply(False, error="permission denied on the control socket", reachable=False)
        except (OSError, ValueError) as exc:
            return Reply(False, error=f"control channel: {exc}", reachable=False)

    async def _call(self, cmd: str, args: dict[str, Any], actor: str) -> Reply:
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
        reply = await self.call("help")
        return set(reply.result) if reply.ok and isinstance(reply.result, dict) else None
