"""JSON files that root writes into a directory another user owns (the panel's), and reads back.

Written as a new file opened with ``O_EXCL | O_NOFOLLOW`` (a link left at that name is refused,
never followed), then renamed over the old name (which replaces a link there instead of writing
through it). Read without following a link at the name.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write(path: Path, doc: object) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def read(path: Path) -> Any:
    """The document, or None when the file is missing, a link, or not JSON."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as f:
            return json.loads(f.read(1 << 20))
    except ValueError:
        return None
