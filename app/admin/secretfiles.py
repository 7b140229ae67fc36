"""Secret files under the data directory: written atomically with mode 0600, never logged."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path


def write_secret(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``; the file is 0600 from its first byte (no window)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def read_secret(path: Path) -> bytes | None:
    """The file's bytes, or None when it does not exist."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def load_or_create_key(path: Path) -> bytes:
    """The panel's 32-byte signing key (CSRF tokens), made on first start."""
    key = read_secret(path)
    if key is None or len(key) < 32:
        key = secrets.token_bytes(32)
        write_secret(path, key)
    return key
