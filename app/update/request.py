"""Updates asked for from the panel: the panel writes, root installs, the panel reads progress.

The panel runs as its own unprivileged user and keeps its hardening; it cannot write partitions.
It stores an uploaded bundle it has already checked in ``<panel dir>/update/`` and writes
``request.json`` there; ``appliance-update-request.path`` sees the file and starts
``appliance-update-request.service`` (root), which runs :func:`serve`: it takes the request
(removing it, so one request is one install), checks the bundle again itself (signature, every
checksum: the panel's check is the panel's, not root's), installs it with
:func:`app.update.install.install` and writes each step to ``status.json`` for the panel to show.

Root reads and writes in a directory the panel user owns, so nothing there is trusted: names are
fixed, files are opened without following links, the bundle must be a plain file, and what is
copied from it is hashed as it is copied (a file swapped after the check is refused).
"""

from __future__ import annotations

import json
import os
import re
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.update import jsonfile
from app.update.bundle import BundleError

REQUEST = "request.json"
STATUS = "status.json"
BUNDLE = "pending.update"
_VERSION = re.compile(r"[0-9][0-9A-Za-z.~_]{0,63}")


ACTIONS = ("install", "go back")


@dataclass(frozen=True, slots=True)
class Request:
    # install: what the panel's own check read from the manifest; go back: the version to start.
    version: str
    reboot: bool
    actor: str
    ts_ms: int
    action: str = "install"


def write_request(spool: Path, req: Request) -> None:
    """The panel's side: ask for the install of ``spool/pending.update``, or to go back."""
    doc = {
        "version": req.version,
        "reboot": req.reboot,
        "actor": req.actor,
        "ts_ms": req.ts_ms,
        "action": req.action,
    }
    jsonfile.write(spool / REQUEST, doc)


def take_request(spool: Path) -> Request | None:
    """Root's side: read and remove the request (never through a link)."""
    path = spool / REQUEST
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise BundleError(f"refused: the update request is not a plain file ({exc})") from None
    try:
        with os.fdopen(fd, "rb") as f:
            raw = f.read(4096)
    finally:
        path.unlink(missing_ok=True)
    try:
        doc = json.loads(raw)
        req = Request(
            version=str(doc["version"]),
            reboot=bool(doc["reboot"]),
            actor=str(doc.get("actor", ""))[:120],
            ts_ms=int(doc["ts_ms"]),
            action=str(doc.get("action", "install")),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"refused: the update request is malformed ({exc})") from None
    if req.action not in ACTIONS:
        raise BundleError(f"refused: the update request asks for {req.action[:40]!r}")
    if not _VERSION.fullmatch(req.version):
        raise BundleError(f"refused: the update request names version {req.version!r}")
    return req


def bundle_path(spool: Path) -> Path:
    """The pending bundle, if it is a plain file (not a link, a device or a directory)."""
    path = spool / BUNDLE
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise BundleError("refused: the uploaded bundle is gone") from None
    if not stat.S_ISREG(st.st_mode):
        raise BundleError("refused: the uploaded bundle is not a plain file")
    return path


class Progress:
    """Each step of an install, written to ``status.json`` as it happens."""

    def __init__(self, spool: Path, version: str, clock: Callable[[], int] = time.time_ns) -> None:
        self.spool, self.version, self.clock = spool, version, clock
        self.lines: list[str] = []
        self.state = "running"

    def say(self, line: str) -> None:
        print(f"update: {line}", flush=True)  # the journal
        self.lines.append(line)
        self._write()

    def finish(self, state: str, line: str) -> None:
        self.state = state
        self.say(line)

    def _write(self) -> None:
        jsonfile.write(
            self.spool / STATUS,
            {
                "version": self.version,
                "state": self.state,
                "lines": self.lines[-50:],
                "ts_ms": self.clock() // 1_000_000,
            },
        )


def read_status(spool: Path) -> dict[str, Any] | None:
    doc = jsonfile.read(spool / STATUS)
    return doc if isinstance(doc, dict) else None


def serve(
    spool: Path,
    install_fn: Callable[[Path, Callable[[str], None]], str],
    reboot: Callable[[], None],
    go_back_fn: Callable[[Request, Callable[[str], None]], None] | None = None,
) -> str | None:
    """Take one request and carry it out; the final state ("installed", "rebooting",
    "refused") or None when there was none. ``go_back_fn(request, say)`` marks the running
    version bad so that the next boot starts ``request.version`` (then this reboots)."""
    try:
        req = take_request(spool)
    except BundleError as exc:
        Progress(spool, "?").finish("refused", str(exc))
        return "refused"
    if req is None:
        return None
    progress = Progress(spool, req.version)
    who = req.actor or "the panel"
    if req.action == "go back":
        progress.say(f"going back to version {req.version}, asked for by {who}")
        try:
            if go_back_fn is None:
                raise BundleError("refused: going back is not possible here")
            go_back_fn(req, progress.say)
        except BundleError as exc:
            progress.finish("refused", str(exc))
            return "refused"
        progress.finish("rebooting", f"rebooting into version {req.version}")
        reboot()
        return "rebooting"
    progress.say(f"version {req.version} asked for by {who}")
    try:
        version = install_fn(bundle_path(spool), progress.say)
    except BundleError as exc:
        progress.finish("refused", str(exc))
        return "refused"
    finally:
        (spool / BUNDLE).unlink(missing_ok=True)
    if req.reboot:
        progress.finish("rebooting", f"rebooting into version {version}")
        reboot()
        return "rebooting"
    progress.finish("installed", f"version {version} starts at the next reboot")
    return "installed"
