"""API keys: ``<data-dir>/secrets/api-keys.json``, mode 0600 in a 0700 directory.

Written atomically (a temporary file made 0600 before anything is written to it, fsynced, renamed
over the old one). Never logged, never returned by a command: :func:`describe` says only whether
keys are present and when they were saved. A file readable by others is refused: the operator
must fix its mode (a key that may have leaked should be rotated anyway).
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any

from app.binance.signing import Credentials
from app.errors import ConfigError, ControlError

_KEY_RE = re.compile(r"^[A-Za-z0-9]{8,128}$")
# Control-command arguments that must never reach a journal or a log.
SECRET_ARGS = frozenset({"api_key", "api_secret"})


def keys_path(data_dir: Path) -> Path:
    return data_dir / "secrets" / "api-keys.json"


def redact_args(args: dict[str, Any]) -> dict[str, Any]:
    """``args`` with every secret value replaced, for journals and logs."""
    return {k: ("<redacted>" if k in SECRET_ARGS else v) for k, v in args.items()}


def save_keys(data_dir: Path, api_key: str, api_secret: str, ts_ns: int) -> None:
    """Validate and store the keys (replacing any)."""
    if not (_KEY_RE.match(api_key) and _KEY_RE.match(api_secret)):
        raise ControlError("api_key and api_secret must be 8-128 letters or digits")
    path = keys_path(data_dir)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        doc = {"api_key": api_key, "api_secret": api_secret, "ts_saved_ns": ts_ns}
        os.write(fd, json.dumps(doc).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_keys(data_dir: Path) -> Credentials | None:
    """The stored keys, None when there are none; refuses a file others can read."""
    path = keys_path(data_dir)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{path} is readable by others (mode {oct(mode & 0o777)}): chmod 600 it")
    try:
        doc = json.loads(path.read_text())
        return Credentials(str(doc["api_key"]), str(doc["api_secret"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: unreadable API keys ({type(exc).__name__})") from None


def describe(data_dir: Path) -> dict[str, Any]:
    """What may be shown about the keys: present or not, and when they were saved."""
    path = keys_path(data_dir)
    if not path.exists():
        return {"present": False}
    try:
        saved = int(json.loads(path.read_text()).get("ts_saved_ns", 0))
    except (OSError, ValueError, AttributeError):
        saved = 0
    return {"present": True, "ts_saved_ns": saved, "mode": oct(path.stat().st_mode & 0o777)}
