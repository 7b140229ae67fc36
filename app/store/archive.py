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
    keys.enc                   only when the owner gave a passphrase: the API keys file
                               (``<data-dir>/secrets/api-keys.json``) sealed by
                               ``app.store.secrets_box`` (scrypt + AES-256-GCM)

The manifest holds the format, the program's version, the time, every member's size and SHA-256,
each database's schema version (``PRAGMA user_version``) and what was left out and why. API keys
are left out by default: a file meant to be copied off the board must not carry them in clear.
With a passphrase (``appliance backup create --include-keys``) they are sealed in memory and only
the sealed bytes reach the scratch directory and the archive; ``keys.enc`` is checksummed like any
member (a changed byte is refused before anything is decrypted), and the archive's verification
opens it again with the passphrase before the archive is listed. Restoring them needs the
passphrase (``app.store.restore``).

An archive counts only once proven: written under a temporary name, read back (its zstd frames
walked end to end, decompressed, every member's SHA-256 compared with the manifest, ``PRAGMA
integrity_check`` and the schema version of every database checked), and only then renamed into
place, where listings see it. An archive made elsewhere (uploaded in the panel) enters the same way
(:func:`adopt`). Restore runs the same verification first (:func:`verify`); see
``app.store.restore``.
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

from app.store import db, schema, secrets_box, zstdframes
from app.store.files import fsync_dir, sha256_file

log = logging.getLogger(__name__)

FORMAT = 1
PREFIX = "appliance_"
SUFFIX = ".tar.zst"
MANIFEST = "manifest.json"
KEYS = "keys.enc"  # the sealed API keys, present only when a passphrase was given
KEYS_LEFT_OUT = "secrets/api-keys.json"  # how the manifest names them when they are left out
_NAME = re.compile(r"^appliance_(\d{8}T\d{6}Z)(?:-(\d+))?(?:_([a-z-]+))?\.tar\.zst$")
_ZSTD_LEVEL = 10  # models and databases: a few MB; level 10 costs a second on the board
# Archives written before the writer made one frame end with an empty second frame (~13 bytes).
_TAIL_MAX = 64

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

    @property
    def keys_file(self) -> Path:
        """The live API keys (``app.live.keys.keys_path``, which this layer must not import:
        tests/store/test_key_backup.py pins the two together)."""
        return self.data_dir / "secrets" / "api-keys.json"


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
    # Both closed on every path, also when the second cannot be opened.
    with (
        contextlib.closing(sqlite3.connect(f"file:{src}?mode=ro", uri=True)) as source,
        contextlib.closing(sqlite3.connect(dst)) as target,
    ):
        source.execute("PRAGMA busy_timeout = 5000")
        source.backup(target)
        return int(target.execute("PRAGMA user_version").fetchone()[0])


def _keys_member(
    layout: Layout, scratch: Path, passphrase: str | None
) -> tuple[dict[str, Path], dict[str, str]]:
    """The API keys sealed into ``scratch/keys.enc`` (0600) as {member: copy}, or why they are
    left out as {name: reason}.

    The plaintext stays in memory: only sealed bytes are written. Keys the owner asked for but
    that cannot be read stop the archive rather than leave them out silently.
    """
    if passphrase is None:
        reason = "left out unless a passphrase is given (appliance backup create --include-keys)"
        return {}, {KEYS_LEFT_OUT: reason}
    try:
        plaintext = layout.keys_file.read_bytes()
    except FileNotFoundError:
        return {}, {KEYS_LEFT_OUT: "does not exist (no API keys saved)"}
    except OSError as exc:
        raise ArchiveError(
            f"the API keys ({layout.keys_file}) cannot be read: {exc.strerror or exc} "
            "(run as their owner or as root)"
        ) from None
    try:
        sealed = secrets_box.seal(plaintext, passphrase)
    except secrets_box.SecretBoxError as exc:
        raise ArchiveError(f"the API keys cannot be included: {exc}") from None
    target = scratch / KEYS
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(sealed)
    return {KEYS: target}, {}


def open_keys(path: Path, passphrase: str, label: str = "") -> bytes:
    """The API keys file sealed in ``path`` (an extracted ``keys.enc``), opened with
    ``passphrase``; :class:`ArchiveError` for a wrong passphrase or altered bytes."""
    try:
        return secrets_box.open_sealed(path.read_bytes(), passphrase)
    except secrets_box.SecretBoxError as exc:
        raise ArchiveError(f"{label or path.name}: the API keys cannot be opened: {exc}") from None


def _collect(
    layout: Layout, scratch: Path, passphrase: str | None = None
) -> tuple[dict[str, Path], dict[str, int], dict[str, str]]:
    """Copy every member into ``scratch``; return member -> copy, schema versions, left out."""
    copies, left_out = _keys_member(layout, scratch, passphrase)
    versions: dict[str, int] = {}
    for name, path in layout.databases().items():
        if not path.exists():
            left_out[name] = "does not exist"
            continue
        copy = scratch / name
        copy.parent.mkdir(parents=True, exist_ok=True)
        try:
            versions[name] = _snapshot_db(path, copy)
        except (sqlite3.Error, OSError) as exc:
            copy.unlink(missing_ok=True)
            if not name.startswith("panel/"):
                # The engine's own journal unreadable: a backup without it would only look whole.
                raise ArchiveError(f"{name} cannot be copied: {exc}") from exc
            # On the image the panel's files are the panel user's (0600): the engine cannot read
            # them. The manifest says so; `appliance backup create` as root includes them.
            left_out[name] = f"not readable here: {exc}"
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


def _backup_dir(backup_dir: Path) -> None:
    # 0750: the panel (the engine's group) lists and downloads archives; nobody else reads them.
    backup_dir.mkdir(mode=0o750, parents=True, exist_ok=True)


def _place(tmp: Path, final: Path) -> None:
    """Rename a verified archive into place, 0640 and, when made as root (``sudo appliance
    backup create``), owned like its directory: the engine prunes it, the panel serves it."""
    os.chmod(tmp, 0o640)
    if os.geteuid() == 0:
        st = final.parent.stat()
        os.chown(tmp, st.st_uid, st.st_gid)
    tmp.replace(final)


def create(
    layout: Layout,
    ts_ns: int,
    label: str = "",
    backup_dir: Path | None = None,
    passphrase: str | None = None,
) -> ArchiveInfo:
    """Write, verify and list one archive of the state under ``layout``.

    ``label`` tags why it was made (``scheduled``, ``pre-restore``; empty: on demand).
    ``passphrase``: include the API keys, sealed with it (:data:`KEYS`); None leaves them out.
    Raises :class:`ArchiveError` when it does not verify; nothing is then left under an archive's
    name.
    """
    if label and not re.fullmatch(r"[a-z-]+", label):
        raise ValueError(f"bad archive label {label!r}")
    backup_dir = backup_dir or layout.backup_dir
    _backup_dir(backup_dir)
    final = _unique_path(backup_dir, ts_ns, label)
    tmp = final.with_name(f".{final.name}.partial")
    with tempfile.TemporaryDirectory(prefix=".archive-", dir=backup_dir) as scratch_name:
        scratch = Path(scratch_name)
        copies, versions, left_out = _collect(layout, scratch, passphrase)
        members = {
            name: Member(name, copy.stat().st_size, sha256_file(copy), versions.get(name))
            for name, copy in copies.items()
        }
        manifest = Manifest(FORMAT, app_version(), ts_ns, label, members, left_out)
        try:
            _write(tmp, manifest, copies)
            verify(tmp, passphrase=passphrase)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    _place(tmp, final)
    fsync_dir(backup_dir)
    info = ArchiveInfo(final, final.stat().st_size, sha256_file(final), ts_ns, label)
    log.info(
        "backup archive %s: %d members, %d bytes, verified", final.name, len(members), info.bytes
    )
    return info


def adopt(
    source: Path, backup_dir: Path, ts_ns: int, shown: str = "", label: str = "uploaded"
) -> tuple[ArchiveInfo, Manifest]:
    """Take an archive made elsewhere (an upload, a copy from another board) into ``backup_dir``.

    Copied under a temporary name and verified as a restore would (a database newer than this
    program knows is refused) before it is listed, as ``appliance_<ts_ns>_<label>.tar.zst``: named
    for when it arrived, so that retention counts from then (its manifest keeps when it was
    made). ``shown`` names it in messages (the uploader's file name). Raises
    :class:`ArchiveError`; nothing is then left in ``backup_dir``.
    """
    _backup_dir(backup_dir)
    final = _unique_path(backup_dir, ts_ns, label)
    tmp = final.with_name(f".{final.name}.partial")
    try:
        shutil.copyfile(source, tmp)
        with tmp.open("rb+") as handle:
            os.fsync(handle.fileno())
        manifest = verify(tmp, known=SCHEMAS, label=shown or source.name)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _place(tmp, final)
    fsync_dir(backup_dir)
    info = ArchiveInfo(final, final.stat().st_size, sha256_file(final), ts_ns, label)
    log.info("backup archive %s taken in from %s, verified", final.name, shown or source.name)
    return info, manifest


def _write(tmp: Path, manifest: Manifest, copies: Mapping[str, Path]) -> None:
    cctx = zstandard.ZstdCompressor(level=_ZSTD_LEVEL, write_checksum=True)
    with open(tmp, "wb") as raw:
        # Closing the writer ends the one frame (its checksum last); an explicit frame flush
        # before it would leave a second, empty frame behind.
        with (
            cctx.stream_writer(raw, closefd=False) as zout,
            tarfile.open(fileobj=zout, mode="w|", format=tarfile.PAX_FORMAT) as tar,
        ):
            _add_bytes(tar, MANIFEST, manifest.to_json(), manifest.ts_created_ns)
            for name in sorted(copies):
                info = tarfile.TarInfo(name)
                info.size = copies[name].stat().st_size
                info.mtime = manifest.ts_created_ns // 1_000_000_000
                info.mode = 0o600
                with copies[name].open("rb") as handle:
                    tar.addfile(info, handle)
        raw.flush()
        os.fsync(raw.fileno())


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, ts_ns: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = ts_ns // 1_000_000_000
    info.mode = 0o600
    tar.addfile(info, io.BytesIO(data))


# -- reading and verifying -------------------------------------------------------------------------


def _check_frames(path: Path, label: str) -> None:
    """Whole zstd, end to end: the streaming reader below would not notice a cut-off end."""
    try:
        frames = zstdframes.walk(path)
    except zstdframes.FrameError as exc:
        if exc.kind == "foreign":
            raise ArchiveError(
                f"{label} is not an appliance backup (an appliance_*.tar.zst archive): {exc}"
            ) from exc
        if exc.kind == "truncated":
            raise ArchiveError(
                f"{label} is truncated: {exc} (an incomplete download or copy?)"
            ) from exc
        raise ArchiveError(f"{label} is damaged: {exc}") from exc
    if frames.count == 1:
        return
    with path.open("rb") as raw:
        raw.seek(frames.first_end)
        tail = raw.read(_TAIL_MAX + 1)
    while tail and len(tail) <= _TAIL_MAX:
        dobj = zstandard.ZstdDecompressor().decompressobj()
        if dobj.decompress(tail):
            break
        tail = dobj.unused_data
    if tail:
        raise ArchiveError(f"{label} is damaged: it holds data after its archive")


@contextlib.contextmanager
def _open_tar(path: Path, label: str) -> Iterator[tarfile.TarFile]:
    dctx = zstandard.ZstdDecompressor()
    with contextlib.ExitStack() as stack:
        raw = stack.enter_context(path.open("rb"))
        zin = stack.enter_context(dctx.stream_reader(raw))
        try:
            tar = stack.enter_context(tarfile.open(fileobj=zin, mode="r|"))
        except tarfile.ReadError as exc:  # at the first header: some other zstd file
            raise ArchiveError(
                f"{label} is not an appliance backup: no tar archive inside ({exc})"
            ) from exc
        yield tar


def _safe_name(name: str) -> bool:
    parts = name.split("/")
    return bool(name) and not name.startswith("/") and ".." not in parts and "" not in parts


def verify(
    path: Path,
    into: Path | None = None,
    known: Mapping[str, int] | None = None,
    label: str = "",
    passphrase: str | None = None,
) -> Manifest:
    """Prove an archive: walk its zstd frames (a cut-off end is refused), decompress it, compare
    every member with the manifest's SHA-256, run ``PRAGMA integrity_check`` on every database
    and check its schema version; with ``passphrase``, also open the sealed API keys (if any).

    ``into``: extract the members there (for a restore); otherwise they go to a scratch directory
    that is removed. ``known``: the newest schema version this program can open per database (a
    newer one is refused); None skips that check (the archive was just written by this program).
    ``label``: how messages name the archive (default: its file name). Raises
    :class:`ArchiveError` naming the archive and what is wrong.
    """
    label = label or path.name
    try:
        _check_frames(path, label)
        with contextlib.ExitStack() as stack:
            if into is None:
                into = Path(
                    stack.enter_context(
                        tempfile.TemporaryDirectory(prefix=".verify-", dir=path.parent)
                    )
                )
            manifest = _extract(path, into, label)
            _check_databases(label, manifest, into, known)
            if passphrase is not None and KEYS in manifest.members:
                open_keys(into / KEYS, passphrase, label)
            return manifest
    except ArchiveError:
        raise
    except (tarfile.TarError, zstandard.ZstdError, EOFError) as exc:
        raise ArchiveError(f"{label} is damaged (it does not decompress or unpack: {exc})") from exc


def read_manifest(path: Path, label: str = "") -> Manifest:
    """Only the manifest, unverified: what an archive says it holds (whether to ask for a
    passphrase before a restore, which verifies everything). Raises :class:`ArchiveError`."""
    label = label or path.name
    try:
        with _open_tar(path, label) as tar:
            entry = tar.next()
            if entry is None or entry.name != MANIFEST or not entry.isfile():
                raise ArchiveError(f"{label} is not an appliance backup (no manifest first)")
            handle = tar.extractfile(entry)
            assert handle is not None
            return Manifest.from_json(handle.read(1 << 20))
    except OSError as exc:
        raise ArchiveError(f"{label} cannot be read: {exc.strerror or exc}") from exc
    except (tarfile.TarError, zstandard.ZstdError, EOFError) as exc:
        raise ArchiveError(f"{label} is damaged (it does not decompress or unpack: {exc})") from exc


def _extract(path: Path, into: Path, label: str) -> Manifest:
    manifest: Manifest | None = None
    seen: set[str] = set()
    with _open_tar(path, label) as tar:
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
        "api_keys": "included, encrypted" if KEYS in manifest.members else "left out",
        "left_out": manifest.left_out,
    }
