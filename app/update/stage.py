"""Unpack a verified bundle into the directory the slot writer installs from.

The root helper calls :func:`stage` with the uploaded bundle: it checks the bundle against the
image's key (:func:`app.update.bundle.verify_bundle`), then copies each payload out of it while
hashing what it reads again (the file may have changed since the check: the copy must be of the
signed bytes, not of what the check saw), decompresses the system image, and compares the result
with the manifest's installed size and digest. Only then are the files renamed into place, named
as systemd-sysupdate's transfer definitions match them (``appliance_<version>.root.raw``,
``appliance_<version>.efi``). Anything wrong leaves nothing behind but the message.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
from pathlib import Path
from typing import IO, Any, cast

from app.update import bundle
from app.update.bundle import BundleError, Manifest, Payload

_CHUNK = 1 << 20
# Room left on the data partition after staging: the trading database keeps growing meanwhile.
RESERVE_BYTES = 256 << 20


def staged_names(version: str) -> tuple[str, str]:
    return f"appliance_{version}.root.raw", f"appliance_{version}.efi"


class _SignedReader(io.RawIOBase):
    """One payload's bytes from the bundle, hashed as they are read: :meth:`finish` refuses them
    unless they are the signed ones."""

    def __init__(self, f: IO[bytes], p: Payload) -> None:
        super().__init__()
        f.seek(p.offset)
        self._f, self._p, self._left = f, p, p.size
        self._hash = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        want = min(len(buffer), self._left, _CHUNK)
        if not want:
            return 0
        chunk = self._f.read(want)
        if not chunk:
            raise BundleError(f"refused: {self._p.name} is cut short")
        self._hash.update(chunk)
        self._left -= len(chunk)
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def finish(self) -> None:
        if self.read(1):
            raise BundleError(f"refused: {self._p.name} has data after its zstd stream")
        if self._hash.hexdigest() != self._p.sha256:
            raise BundleError(f"refused: {self._p.name} changed while it was being copied")


def _write(f: IO[bytes], p: Payload, out: Path, decompress: bool) -> None:
    import zstandard

    h = hashlib.sha256()
    size = 0
    reader = _SignedReader(f, p)
    with out.open("wb") as dst:
        # Bounded reads: a stretch of free space in a file system image is a few bytes of zstd
        # that unpack to hundreds of MiB, which must not land in memory at once.
        source: Any = (
            zstandard.ZstdDecompressor().stream_reader(
                cast("IO[bytes]", reader), read_size=_CHUNK, closefd=False
            )
            if decompress
            else reader
        )
        while data := source.read(_CHUNK):
            h.update(data)
            size += len(data)
            if size > p.installed_size:
                raise BundleError(f"refused: {p.name} unpacks to more than its manifest says")
            dst.write(data)
        reader.finish()
        dst.flush()
        os.fsync(dst.fileno())
    if (size, h.hexdigest()) != (p.installed_size, p.installed_sha256):
        raise BundleError(f"refused: {p.name} does not unpack to what its manifest says")


def stage(path: Path, trusted_pem: bytes, dest: Path) -> Manifest:
    """Verify ``path`` and unpack it into ``dest``; returns its manifest."""
    manifest = bundle.verify_bundle(path, trusted_pem)
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    need = manifest.root.installed_size + manifest.uki.installed_size + RESERVE_BYTES
    free = shutil.disk_usage(dest).free
    if free < need:
        raise BundleError(
            f"refused: not enough space to unpack version {manifest.version}: it needs "
            f"{need >> 20} MiB on {dest} ({RESERVE_BYTES >> 20} MiB of it kept free), "
            f"{free >> 20} MiB are free"
        )
    names = staged_names(manifest.version)
    partial = [dest / f".partial-{n}" for n in names]
    try:
        with path.open("rb") as f:
            _write(f, manifest.root, partial[0], decompress=True)
            _write(f, manifest.uki, partial[1], decompress=False)
        for tmp, name in zip(partial, names, strict=True):
            tmp.rename(dest / name)
        fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        for tmp in partial:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        raise
    return manifest
