"""Client side of the control channel (``appliance ctl`` and, later, the panel)."""

from __future__ import annotations

import itertools
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from app.errors import ControlError

_ids = itertools.count(1)


def request(
    path: Path,
    cmd: str,
    args: dict[str, Any] | None = None,
    actor: str = "",
    timeout: float = 10.0,
) -> dict[str, Any]:
    """Send one request and return the engine's reply object (``ok`` plus result or error)."""
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
    """Poll a slow command's job until it ends; return its final state."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        reply = request(path, "job.status", {"job": job_id}, actor=actor)
        if not reply["ok"]:
            raise ControlError(str(reply["error"]))
        state: dict[str, Any] = reply["result"]
        if state["state"] != "running":
            return state
        if time.monotonic() > deadline:
            raise ControlError(f"job {job_id} still running after {timeout:.0f}s")
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


def parse_args(items: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; values are JSON where they parse as JSON, strings otherwise."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ControlError(f"argument {item!r} is not key=value")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out
