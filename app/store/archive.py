"""Backup archives of the appliance's whole state: one verified ``.tar.zst`` per backup.

An archive (``<backups>/appliance_<UTC time>[-n][_<label>].tar.zst``) is a zstd-compressed tar
whose first member is ``manifest.json``, then:

    trading.db, orders.db      the engine's journals, copied with SQLite's online backup API
                               (consistent while the engine writes: saved settings, orders, fills,
                               equity, breakers and the command journal are all in them)
    panel/panel.db             the panel's database (sessions, login audit, webhook), same way
    panel/admin-password.hash  the panel password's argon2 hash
    models/...                 the model store: content-addressed files, ``store.json`` (the
                               active/shadow pointer, rollback stack and history)

The manifest holds the format, the program's version, the time, every member's size and SHA-256,
each database's schema version (``PRAGMA user_version``) and what was left out and why. API keys
(``<data-dir>/secrets/``) are never archived: no authenticated-encryption library is installed
(neither ``cryptography`` nor PyNaCl), and keys in clear in a file meant to be copied off the board
are worse than keys typed in again after a restore.

An archive counts only once proven: written under a temporary name, read back (decompressed, every
member's SHA-256 compared with the manifest, ``PRAGMA integrity_check`` and the schema version of
every database checked), and only then renamed into place, where listings see it. Restore runs the
same verification first (:func:`verify`); see ``app.store.restore``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import shutil
import sqlite3
import tarfile
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import IO, Any

import zstandard

from app.store import db, schema
from app.store.files import fsync_dir, sha256_file

log = logging.getLogger(__name__)

FORMAT = 1
PREFIX = "appliance_"
SUFFIX = ".tar.zst"
MANIFEST = "manifest.json"
_NAME = re.compile(r"^appliance_(\d{8}T\d{6}Z)(?:-(\d+))?(?:_([a-z-]+))?\.tar\.zst$")
_ZSTD_LEVEL = 10  # models and databases: a few MB; level 10 costs a second on the board

# The newest schema version (number of migrations) this program knows for each database. The
# trading database's comes from its migrations; the order journal's and the panel's are owned by
# app.live and app.admin, which this layer must not import: tests/store/test_archive.py pins these
# two to their owners' migration lists, so a new migration without a bump here fails a test.
SCHEMAS: dict[str, int] = {
    "trading.db": len(schema.TRADING_MIGRATIONS),
    "orders.db": 1,
    "panel/panel.db": 1,
}


class ArchiveError(Exception):
    """An archive could not be made, or does not verify, or cannot be restored here."""


@dataclass(frozen=True)
class Layout:
    """Where each member lives: the engine's data directory and the panel's (the same one in a
    working copy; ``/var/lib/appliance-panel`` on the image)."""

    data_dir: Path
    panel_dir: Path

    @property
    def backup_dir(self) -> Path:
        return self.data_dir / "backups"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    def databases(self) -> dict[str, Path]:
        """Archive member -> the live database file."""
        return {
            "trading.db": self.data_dir / "trading.db",
            "orders.db": self.data_dir / "orders.db",
            "panel/panel.db": self.panel_dir / "panel.db",
        }

    def files(self) -> dict[str, Path]:
        """Archive member -> a plain file (besides the model store)."""
        return {"panel/admin-password.hash": self.panel_dir / "secrets" / "admin-password.hash"}


def default_panel_dir(data_dir: Path) -> Path:
    """The panel's data directory: its own on the image, the engine's in a working copy."""
    image = Path("/var/lib/appliance-panel")
    if data_dir.resolve() == Path("/var/lib/appliance") and image.is_dir():
        return image
    return data_dir


@dataclass(frozen=True)
class Member:
    name: str
    bytes: int
    sha256: str
    schema_version: int | None = None  # databases only


@dataclass(frozen=True)
class Manifest:
    format: int
    app_version: str
    ts_created_ns: int
    label: str
    members: dict[str, Member]
    left_out: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> bytes:
        body = {
            "format": self.format,
            "app_version": self.app_version,
            "ts_created_ns": self.ts_created_ns,
            "label": self.label,
            "members": {
                n: {"bytes": m.bytes, "sha256": m.sha256, "schema_version": m.schema_version}
                for n, m in self.members.items()
            },
            "left_out": self.left_out,
        }
        return json.dumps(body, indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        try:
            body = json.loads(raw)
            members = {
                str(n): Member(str(n), int(m["bytes"]), str(m["sha256"]), m.get("schema_version"))
                for n, m in body["members"].items()
            }
            return cls(
                int(body["format"]),
                str(body["app_version"]),
                int(body["ts_created_ns"]),
                str(body.get("label", "")),
                members,
                {str(k): str(v) for k, v in body.get("left_out", {}).items()},
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ArchiveError(f"the manifest is malformed: {exc}") from exc


@dataclass(frozen=True)
class ArchiveInfo:
    """One archive in the backup directory."""

    path: Path
    bytes: int
    sha256: str
    ts_created_ns: int
    label: str


def app_version() -> str:
    try:
        return metadata.version("appliance")
    except metadata.PackageNotFoundError:
        return "unknown"


# -- writing ---------------------------------------------------------------------------------------


def _snapshot_db(src: Path, dst: Path) -> int:
    """A consistent copy of a live database (online backup API); returns its schema version."""
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
    target = sqlite3.connect(dst)
    try:
        source.execute("PRAGMA busy_timeout = 5000")
        source.backup(target)
        version = int(target.execute("PRAGMA user_version").fetchone()[0])
    finally:
        target.close()
        source.close()
    return version


def _collect(
    layout: Layout, scratch: Path
) -> tuple[dict[str, Path], dict[str, int], dict[str, str]]:
    """Copy every member into ``scratch``; return member -> copy, schema versions, left out."""
    copies: dict[str, Path] = {}
    versions: dict[str, int] = {}
    left_out: dict[str, str] = {"secrets/api-keys.json": "API keys are never archived"}
    for name, path in layout.databases().items():
        if not path.exists():
            left_out[name] = "does not exist"
            continue
        copy = scratch / name
        copy.parent.mkdir(parents=True, exist_ok=True)
        try:
            versions[name] = _snapshot_db(path, copy)
        except (sqlite3.Error, OSError) as exc:
            # On the image the panel's files are the panel user's (0600): the engine cannot read
            # them. The manifest says so; `appliance backup create` as root includes them.
            left_out[name] = f"not readable here: {exc}"
            copy.unlink(missing_ok=True)
            continue
        copies[name] = copy
    for name, path in layout.files().items():
        copy = scratch / name
        copy.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copyfile(path, copy)
        except FileNotFoundError:
            left_out[name] = "does not exist"
            continue
        except OSError as exc:
            left_out[name] = f"not readable here: {exc}"
            continue
        copies[name] = copy
    models = layout.models_dir
    if models.is_dir():
        for path in sorted(models.rglob("*")):
            rel = path.relative_to(models).as_posix()
            if not path.is_file() or rel.startswith(".") or rel.endswith(".tmp"):
                continue  # a half-written model or pointer is not state
            name = f"models/{rel}"
            copy = scratch / name
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, copy)
            copies[name] = copy
    else:
        left_out["models/"] = "no model store"
    return copies, versions, left_out


def _unique_path(backup_dir: Path, ts_ns: int, label: str) -> Path:
    stamp = datetime.fromtimestamp(ts_ns / 1e9, UTC).strftime("%Y%m%dT%H%M%SZ")
    tail = f"_{label}" if label else ""
    for n in range(1000):
        path = backup_dir / f"{PREFIX}{stamp}{f'-{n}' if n else ''}{tail}{SUFFIX}"
        if not path.exists():
            return path
    raise ArchiveError(f"too many archives named {PREFIX}{stamp}*")


def create(
    layout: Layout, ts_ns: int, label: str = "", backup_dir: Path | None = None
) -> ArchiveInfo:
    """Write, verify and list one archive of the state under ``layout``.

    ``label`` tags why it was made (``scheduled``, ``pre-restore``; empty: on demand). Raises
    :class:`ArchiveError` when it does not verify; nothing is then left under an archive's name.
    """
    if label and not re.fullmatch(r"[a-z-]+", label):
        raise ValueError(f"bad archive label {label!r}")
    backup_dir = backup_dir or layout.backup_dir
    backup_dir.mkdir(parents=True, exist_ok=True)
    final = _unique_path(backup_dir, ts_ns, label)
    tmp = final.with_name(f".{final.name}.partial")
    with tempfile.TemporaryDirectory(prefix=".archive-", dir=backup_dir) as scratch_name:
        scratch = Path(scratch_name)
        copies, versions, left_out = _collect(layout, scratch)
        members = {
            name: Member(name, copy.stat().st_size, sha256_file(copy), versions.get(name))
            for name, copy in copies.items()
        }
        manifest = Manifest(FORMAT, app_version(), ts_ns, label, members, left_out)
        try:
            _write(tmp, manifest, copies)
            verify(tmp)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    tmp.replace(final)
    fsync_dir(backup_dir)
    info = ArchiveInfo(final, final.stat().st_size, sha256_file(final), ts_ns, label)
    log.info(
        "backup archive %s: %d members, %d bytes, verified", final.name, len(members), info.bytes
    )
    return info


def _write(tmp: Path, manifest: Manifest, copies: Mapping[str, Path]) -> None:
    cctx = zstandard.ZstdCompressor(level=_ZSTD_LEVEL, write_checksum=True)
    with open(tmp, "wb") as raw, cctx.stream_writer(raw, closefd=False) as zout:
        with tarfile.open(fileobj=zout, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            _add_bytes(tar, MANIFEST, manifest.to_json(), manifest.ts_created_ns)
            for name in sorted(copies):
                info = tarfile.TarInfo(name)
                info.size = copies[name].stat().st_size
                info.mtime = manifest.ts_created_ns // 1_000_000_000
                info.mode = 0o600
                with copies[name].open("rb") as handle:
                    tar.addfile(info, handle)
        zout.flush(zstandard.FLUSH_FRAME)
        raw.flush()
        os.fsync(raw.fileno())


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, ts_ns: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = ts_ns // 1_000_000_000
    info.mode = 0o600
    tar.addfile(info, io.BytesIO(data))


# -- reading and verifying -------------------------------------------------------------------------


@contextlib.contextmanager
def _open_tar(path: Path) -> Iterator[tarfile.TarFile]:
    dctx = zstandard.ZstdDecompressor()
    with (
        path.open("rb") as raw,
        dctx.stream_reader(raw) as zin,
        tarfile.open(fileobj=zin, mode="r|") as tar,
    ):
        yield tar


def _safe_name(name: str) -> bool:
    parts = name.split("/")
    return bool(name) and not name.startswith("/") and ".." not in parts and "" not in parts


def verify(
    path: Path, into: Path | None = None, known: Mapping[str, int] | None = None
) -> Manifest:
    """Prove an archive: decompress it, compare every member with the manifest's SHA-256, run
    ``PRAGMA integrity_check`` on every database and check its schema version.

    ``into``: extract the members there (for a restore); otherwise they go to a scratch directory
    that is removed. ``known``: the newest schema version this program can open per database (a
    newer one is refused); None skips that check (the archive was just written by this program).
    Raises :class:`ArchiveError` naming the archive and what is wrong.
    """
    label = path.name
    try:
        with contextlib.ExitStack() as stack:
            if into is None:
                into = Path(
                    stack.enter_context(
                        tempfile.TemporaryDirectory(prefix=".verify-", dir=path.parent)
                    )
                )
            manifest = _extract(path, into)
            _check_databases(label, manifest, into, known)
            return manifest
    except ArchiveError:
        raise
    except (tarfile.TarError, zstandard.ZstdError, EOFError) as exc:
        raise ArchiveError(f"{label} is damaged (it does not decompress or unpack: {exc})") from exc


def _extract(path: Path, into: Path) -> Manifest:
    label = path.name
    manifest: Manifest | None = None
    seen: set[str] = set()
    with _open_tar(path) as tar:
        for entry in tar:
            if manifest is None:
                if entry.name != MANIFEST or not entry.isfile():
                    raise ArchiveError(f"{label} is not an appliance backup (no manifest first)")
                handle = tar.extractfile(entry)
                assert handle is not None
                manifest = Manifest.from_json(handle.read(1 << 20))
                if manifest.format > FORMAT:
                    raise ArchiveError(
                        f"{label} has archive format {manifest.format}, newer than this program "
                        f"reads ({FORMAT}); it was made by version {manifest.app_version}"
                    )
                continue
            name = entry.name
            member = manifest.members.get(name)
            if member is None or not entry.isfile() or not _safe_name(name) or name in seen:
                raise ArchiveError(f"{label}: unexpected member {name!r} (not in its manifest)")
            seen.add(name)
            target = into / name
            target.parent.mkdir(parents=True, exist_ok=True)
            handle = tar.extractfile(entry)
            assert handle is not None
            digest = _copy_hashing(handle, target)
            if digest != member.sha256:
                raise ArchiveError(
                    f"{label}: {name} does not match its checksum (SHA-256 {digest[:12]}…, "
                    f"manifest {member.sha256[:12]}…): the archive was altered or damaged"
                )
    if manifest is None:
        raise ArchiveError(f"{label} is empty")
    missing = sorted(set(manifest.members) - seen)
    if missing:
        raise ArchiveError(f"{label} is incomplete: {', '.join(missing)} missing")
    return manifest


def _copy_hashing(handle: IO[bytes], target: Path) -> str:
    digest = hashlib.sha256()
    with target.open("wb") as out:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest()


def _check_databases(
    label: str, manifest: Manifest, into: Path, known: Mapping[str, int] | None
) -> None:
    for name, member in manifest.members.items():
        if member.schema_version is None:
            continue
        copy = into / name
        ok, message = db.integrity_ok(copy)
        if not ok:
            raise ArchiveError(f"{label}: {name} fails integrity_check: {message}")
        conn = sqlite3.connect(f"file:{copy}?mode=ro", uri=True)
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        finally:
            conn.close()
        if version != member.schema_version:
            raise ArchiveError(
                f"{label}: {name} has schema version {version}, its manifest says "
                f"{member.schema_version}"
            )
        newest = (known or {}).get(name)
        if known is not None and newest is not None and version > newest:
            raise ArchiveError(
                f"{label}: {name} has schema version {version}, newer than this program knows "
                f"({newest}): it was made by version {manifest.app_version}; restore it with "
                "that version or a newer one"
            )


# -- listing and retention -------------------------------------------------------------------------


def parse_name(name: str) -> tuple[int, str] | None:
    """(creation time in ns, label) from an archive's name, or None if it is not one."""
    m = _NAME.match(name)
    if m is None:
        return None
    ts = datetime.strptime(m.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    return int(ts.timestamp()) * 1_000_000_000, m.group(3) or ""


def list_archives(backup_dir: Path) -> list[ArchiveInfo]:
    """The archives in ``backup_dir``, newest first (sha256 left empty: reading them is slow)."""
    if not backup_dir.is_dir():
        return []
    out = []
    for path in backup_dir.iterdir():
        parsed = parse_name(path.name)
        if parsed is not None and path.is_file():
            out.append(ArchiveInfo(path, path.stat().st_size, "", parsed[0], parsed[1]))
    return sorted(out, key=lambda a: (a.ts_created_ns, a.path.name), reverse=True)


def find(backup_dir: Path, name: str) -> Path:
    """The archive called ``name`` in ``backup_dir`` (only names a listing offers: no paths)."""
    for info in list_archives(backup_dir):
        if info.path.name == name:
            return info.path
    raise ArchiveError(f"no backup archive {name!r} in {backup_dir}")


def made_on(backup_dir: Path, ts_ns: int, label: str) -> bool:
    """True when an archive with ``label`` was made on ``ts_ns``'s UTC day."""
    day = datetime.fromtimestamp(ts_ns / 1e9, UTC).date()
    return any(
        a.label == label and datetime.fromtimestamp(a.ts_created_ns / 1e9, UTC).date() == day
        for a in list_archives(backup_dir)
    )


def prune(backup_dir: Path, now_ns: int, retention_days: int, keep_min: int) -> list[Path]:
    """Delete archives older than ``retention_days``, always keeping the newest ``keep_min``."""
    removed: list[Path] = []
    for info in list_archives(backup_dir)[keep_min:]:
        if (now_ns - info.ts_created_ns) / 86_400e9 > retention_days:
            info.path.unlink(missing_ok=True)
            removed.append(info.path)
    if removed:
        fsync_dir(backup_dir)
    return removed


def manifest_summary(manifest: Manifest) -> dict[str, Any]:
    """What a person wants to see of a manifest (``appliance backup verify``)."""
    return {
        "app_version": manifest.app_version,
        "made": datetime.fromtimestamp(manifest.ts_created_ns / 1e9, UTC).isoformat(),
        "label": manifest.label,
        "members": {
            n: {"bytes": m.bytes, "schema_version": m.schema_version}
            for n, m in sorted(manifest.members.items())
        },
        "left_out": manifest.left_out,
    }
