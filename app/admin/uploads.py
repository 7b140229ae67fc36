"""Uploads (models, backup archives) streamed to disk with a size limit, never held in memory.

The file lands in ``<data-dir>/uploads/`` (0750, readable by the engine's group) under a name the
panel chooses; the browser's file name is kept only as a label. Parsing uses python-multipart's
streaming parser directly (Starlette's ``form()`` would spool the whole part first).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    from python_multipart.multipart import MultipartParser, parse_options_header
except ImportError:  # pragma: no cover - releases before the rename (Debian's may lag)
    from multipart.multipart import (  # type: ignore[import-untyped,import-not-found,no-redef,unused-ignore]
        MultipartParser,
        parse_options_header,
    )

FILE_FIELD = "model"
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


class UploadError(ValueError):
    """The upload was refused: too large, malformed or missing its file."""


@dataclass(frozen=True)
class Upload:
    path: Path
    original_name: str
    size: int
    fields: dict[str, str]


def _prepare(dest_dir: Path) -> None:
    dest_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(dest_dir, 0o750)  # noqa: S103 - the engine's group must read the upload


def remove_leftovers(dest_dir: Path) -> int:
    """Delete uploads a crashed panel left behind; returns how many. Called at the panel's start:
    an upload belongs to the request that received it, and no request outlives the process."""
    removed = 0
    for leftover in dest_dir.glob("upload-*"):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
            removed += 1
    return removed


def _disposition(headers: dict[bytes, bytes]) -> tuple[str, str | None]:
    _, params = parse_options_header(headers.get(b"content-disposition", b""))
    name = params.get(b"name", b"").decode("utf-8", "replace")
    filename = params.get(b"filename")
    return name, None if filename is None else filename.decode("utf-8", "replace")


# Long on purpose: a streaming multipart parser: one state machine reads best as one loop.
async def receive_upload(  # noqa: PLR0915
    content_type: str,
    stream: AsyncIterator[bytes],
    dest_dir: Path,
    max_bytes: int,
    field: str = FILE_FIELD,
    suffix: str = ".onnx",
) -> Upload:
    """Parse a multipart body from ``stream``; write its ``field`` part to ``dest_dir`` as
    ``upload-<random><suffix>``."""
    ctype, params = parse_options_header(content_type.encode("latin-1"))
    if ctype != b"multipart/form-data" or b"boundary" not in params:
        raise UploadError("expected a multipart/form-data upload")
    await asyncio.to_thread(_prepare, dest_dir)
    target = dest_dir / f"upload-{secrets.token_hex(8)}{suffix}"
    state: dict[str, Any] = {
        "headers": {},
        "field": b"",
        "value": b"",
        "size": 0,
        "name": "",
        "filename": None,
        "file": None,
        "found": False,
        "too_big": False,
    }
    fields: dict[str, str] = {}

    def on_part_begin() -> None:
        state["headers"] = {}
        state["value"] = b""

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["headers"][state["field"].lower()] = (
            state["headers"].get(state["field"].lower(), b"") + data[start:end]
        )

    def on_header_end() -> None:
        state["field"] = b""

    def on_headers_finished() -> None:
        name, filename = _disposition(state["headers"])
        state["name"], state["filename"] = name, filename
        if name == field and filename is not None and not state["found"]:
            state["found"] = True
            state["original"] = filename
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            state["file"] = os.fdopen(fd, "wb")

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if state["file"] is not None and state["name"] == field:
            state["size"] += end - start
            if state["size"] > max_bytes:
                state["too_big"] = True
                return
            state["file"].write(data[start:end])
        elif len(state["value"]) < 4096:
            state["value"] += data[start:end]

    def on_part_end() -> None:
        if state["file"] is not None and state["name"] == field:
            state["file"].close()
            state["file"] = None
        elif state["name"] and state["filename"] is None:
            fields[state["name"]] = state["value"].decode("utf-8", "replace")

    callbacks: Any = {
        "on_part_begin": on_part_begin,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished,
        "on_part_data": on_part_data,
        "on_part_end": on_part_end,
    }
    parser = MultipartParser(params[b"boundary"], callbacks)
    try:
        async for chunk in stream:
            parser.write(chunk)
            if state["too_big"]:
                raise UploadError(f"the file is larger than {max_bytes // (1024 * 1024)} MiB")
        parser.finalize()
    except BaseException:
        if state["file"] is not None:
            state["file"].close()
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
        # Stopped reading early: close the body stream now rather than leave it to the collector.
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()
        raise
    if not state["found"]:
        raise UploadError(f"no file in the upload (field {field!r})")
    if state["size"] == 0:
        target.unlink(missing_ok=True)
        raise UploadError("the uploaded file is empty")
    label = _SAFE.sub("_", str(state.get("original", "")))[:100]
    return Upload(target, label, int(state["size"]), fields)
