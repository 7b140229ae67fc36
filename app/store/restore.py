"""Restoring a backup archive: verify and stage while running, swap in at start, come back paused.

Two steps, so that the swap happens while no writer has a database open:

1. :func:`stage` (the engine's ``backup.restore`` command, or ``appliance backup restore FILE``):
   the archive is verified (checksums, ``integrity_check``, schema versions: a newer schema than
   this program knows is refused) and extracted into ``<data-dir>/restore/staged/``; the current
   state is itself archived (label ``pre-restore``); then the marker ``restore/pending.json`` is
   written atomically. Nothing live has been touched yet, and a crash here leaves no marker (or a
   complete one).
2. :func:`apply_pending_restore` runs at the engine's start, before any database is opened (and
   directly from ``appliance backup restore`` when the engine is not running): each member replaces
   its live file (stale ``-wal``/``-shm`` removed first, so SQLite cannot replay an old log over a
   new file), the model store directory is swapped whole, the engine's saved flags are set to
   *paused*, and the marker is removed last. Every step is idempotent, so a crash mid-way is
   finished by the next start. An older schema is migrated by the normal migrations at open; a
   live engine reconciles against the exchange before it trades (it always does at start).

The panel's database is written with SQLite's backup API into the live file rather than renamed
over it: the panel process keeps its connection open and sees the restored rows (sessions
included: log in again with the restored password).

API keys: an archive made with a passphrase holds them sealed (``keys.enc``). :func:`stage` opens
them with the passphrase it is given (a wrong one refuses the whole restore, before anything is
staged or archived) and stages the plain file 0600 in the 0700 staging directory, beside the live
keys' own protection; the pre-restore archive then includes the keys it replaces, sealed with the
same passphrase. Without a passphrase everything else is restored, the keys saved here are kept,
and the report says plainly that the archive's keys were not restored. At apply the keys file is
renamed over the live one (0600 in a 0700 ``secrets/``), like every other member.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.store import archive, trading
from app.store.archive import ArchiveError, Layout
from app.store.files import fsync_dir, sha256_file

log = logging.getLogger(__name__)

RESTORE_DIR = "restore"
MARKER = "pending.json"
STAGED = "staged"
STAGED_KEYS = "secrets/api-keys.json"  # under staged/: the opened keys, waiting to be applied
KEYS_RESTORED = "restored"
KEYS_NOT_IN_ARCHIVE = "not in the archive (keys saved here, if any, are kept)"
KEYS_NOT_RESTORED = (
    "NOT restored: the archive holds them encrypted and no passphrase was given "
    "(keys saved here, if any, are kept; enter the keys again if there are none)"
)


@dataclass(frozen=True)
class Staged:
    """A verified archive waiting in ``restore/staged/`` for the next start."""

    archive: str
    pre_restore: str  # the archive of the state it replaces ('' when there was none)
    members: list[str]
    keys: str = KEYS_NOT_IN_ARCHIVE  # what becomes of the API keys (KEYS_*)


@dataclass(frozen=True)
class RestoreReport:
    """What :func:`apply_pending_restore` did."""

    archive: str
    pre_restore: str
    replaced: list[str]
    removed: list[str]
    problems: list[str] = field(default_factory=list)
    keys: str = KEYS_NOT_IN_ARCHIVE  # what became of the API keys (KEYS_*)


def _restore_dir(data_dir: Path) -> Path:
    return data_dir / RESTORE_DIR


def _has_state(layout: Layout) -> bool:
    return any(p.exists() for p in layout.databases().values()) or layout.models_dir.is_dir()


def stage(layout: Layout, path: Path, ts_ns: int, passphrase: str | None = None) -> Staged:
    """Verify ``path``, back up the current state, and stage the archive for the next start.

    ``passphrase`` opens the API keys when the archive holds them; None restores everything else
    (:attr:`Staged.keys` says so). Raises :class:`ArchiveError` (nothing staged, nothing changed)
    when the archive does not verify, holds a database newer than this program knows, or its keys
    do not open with ``passphrase``.
    """
    if not path.is_file():
        raise ArchiveError(f"{path} does not exist")
    root = _restore_dir(layout.data_dir)
    staged = root / STAGED
    marker = root / MARKER
    marker.unlink(missing_ok=True)  # a newer request replaces an unapplied one
    if staged.exists():
        shutil.rmtree(staged)
    staged.mkdir(parents=True, mode=0o700)
    try:
        manifest = archive.verify(path, into=staged, known=archive.SCHEMAS)
        keys, keys_sha256 = _stage_keys(staged, manifest, passphrase, path.name)
        (staged / "models").mkdir(exist_ok=True)  # the store as archived, even when empty
        pre = ""
        if _has_state(layout):
            # Keys about to be replaced are kept too, sealed with the passphrase just proven.
            keep = passphrase if keys == KEYS_RESTORED else None
            pre = archive.create(layout, ts_ns, label="pre-restore", passphrase=keep).path.name
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    body = {
        "archive": path.name,
        "archive_sha256": sha256_file(path),
        "pre_restore": pre,
        "ts_staged_ns": ts_ns,
        "manifest": json.loads(manifest.to_json()),
        "keys": keys,
        "keys_sha256": keys_sha256,
    }
    tmp = marker.with_name(MARKER + ".tmp")
    with tmp.open("w") as handle:
        json.dump(body, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(marker)
    fsync_dir(root)
    log.warning(
        "restore of %s staged (API keys: %s); it is applied at the engine's next start",
        path.name,
        keys,
    )
    return Staged(path.name, pre, sorted(manifest.members), keys)


def _stage_keys(
    staged: Path, manifest: archive.Manifest, passphrase: str | None, label: str
) -> tuple[str, str]:
    """Open the archive's sealed keys into ``staged`` (0600); return (what becomes of the keys,
    SHA-256 of the staged file or '')."""
    if archive.KEYS not in manifest.members:
        return KEYS_NOT_IN_ARCHIVE, ""
    sealed = staged / archive.KEYS
    if passphrase is None:
        sealed.unlink()
        return KEYS_NOT_RESTORED, ""
    plaintext = archive.open_keys(sealed, passphrase, label)
    target = staged / STAGED_KEYS
    target.parent.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(plaintext)
        out.flush()
        os.fsync(out.fileno())
    sealed.unlink()
    return KEYS_RESTORED, sha256_file(target)


def pending(data_dir: Path) -> dict[str, Any] | None:
    """The staged restore's marker, if one waits."""
    try:
        body: dict[str, Any] = json.loads((_restore_dir(data_dir) / MARKER).read_text())
    except FileNotFoundError:
        return None
    return body


# Long on purpose: one branch per member kind of an archive.
def apply_pending_restore(data_dir: Path, panel_dir: Path | None = None) -> RestoreReport | None:  # noqa: PLR0912
    """Swap a staged archive's members in; None when no restore waits.

    Call before any database under ``data_dir`` is opened. The restored engine comes back paused.
    Raises :class:`ArchiveError` when the staged files are not what was verified (the marker stays:
    the next start tries again, and the operator sees why in the log).
    """
    body = pending(data_dir)
    if body is None:
        return None
    layout = Layout(data_dir, panel_dir or archive.default_panel_dir(data_dir))
    root = _restore_dir(data_dir)
    staged = root / STAGED
    manifest = archive.Manifest.from_json(json.dumps(body["manifest"]).encode())
    replaced: list[str] = []
    removed: list[str] = []
    problems: list[str] = []
    # Check first, swap after: a staged file that changed since verification stops everything.
    for name, expected in manifest.members.items():
        source = staged / name
        if source.exists() and sha256_file(source) != expected.sha256:
            raise ArchiveError(f"staged {name} differs from the verified archive: not restored")
    keys_source = staged / STAGED_KEYS
    if keys_source.exists() and sha256_file(keys_source) != body.get("keys_sha256"):
        raise ArchiveError("the staged API keys differ from the ones opened: not restored")
    for name, live in {**layout.databases(), **layout.files()}.items():
        source = staged / name
        member = manifest.members.get(name)
        try:
            if member is None:
                if _remove(live):
                    removed.append(name)
            elif source.exists():
                if name == "panel/panel.db":
                    _write_db_into(source, live)
                elif name.endswith(".db"):
                    _replace_db(source, live)
                else:
                    _replace_file(source, live)
                replaced.append(name)
            # else: moved in by an earlier, interrupted run
        except OSError as exc:
            if not name.startswith("panel/"):
                raise
            # On the image the engine may not write the panel's directory: say so, go on.
            problems.append(f"{name} not restored ({exc}): run appliance backup restore as root")
    if keys_source.exists():
        _replace_keys(keys_source, layout.keys_file)
        replaced.append(STAGED_KEYS)
    # else: no keys staged, or moved in by an earlier, interrupted run
    if (staged / "models").exists():
        _swap_models(staged / "models", layout.models_dir, root)
        replaced.append("models/")
    _pause(layout.data_dir / "trading.db", body)
    (root / MARKER).unlink()
    shutil.rmtree(staged, ignore_errors=True)
    fsync_dir(root)
    report = RestoreReport(
        body["archive"],
        body.get("pre_restore", ""),
        replaced,
        removed,
        problems,
        str(body.get("keys", KEYS_NOT_IN_ARCHIVE)),
    )
    log.warning(
        "restored %s (replaced %s; removed %s; API keys: %s)%s; the engine starts paused",
        report.archive,
        ", ".join(replaced) or "nothing",
        ", ".join(removed) or "nothing",
        report.keys,
        "; " + "; ".join(problems) if problems else "",
    )
    return report


def _own_like_parent(path: Path) -> None:
    """As root (``appliance backup restore`` on the board), give files to the directory's owner."""
    if os.geteuid() == 0:
        st = path.parent.stat()
        os.chown(path, st.st_uid, st.st_gid)


def _remove(live: Path) -> bool:
    existed = live.exists()
    for p in (live, live.with_name(live.name + "-wal"), live.with_name(live.name + "-shm")):
        p.unlink(missing_ok=True)
    return existed


def _replace_db(source: Path, live: Path) -> None:
    live.parent.mkdir(parents=True, exist_ok=True)
    # An old -wal beside a new main file would be replayed into it: remove the log first.
    for suffix in ("-wal", "-shm"):
        live.with_name(live.name + suffix).unlink(missing_ok=True)
    os.chmod(source, 0o640)
    os.replace(source, live)
    _own_like_parent(live)
    fsync_dir(live.parent)


def _write_db_into(source: Path, live: Path) -> None:
    if not live.exists():
        live.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(source, 0o600)
        os.replace(source, live)
        _own_like_parent(live)
        fsync_dir(live.parent)
        return
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(live)
    try:
        dst.execute("PRAGMA busy_timeout = 10000")
        src.backup(dst)
    except sqlite3.Error as exc:
        raise OSError(f"could not write {live.name}: {exc}") from exc
    finally:
        dst.close()
        src.close()
    source.unlink()


def _replace_file(source: Path, live: Path) -> None:
    live.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(source, 0o600)
    os.replace(source, live)
    _own_like_parent(live)
    fsync_dir(live.parent)


def _replace_keys(source: Path, live: Path) -> None:
    """The API keys renamed into place (atomic): 0600 in a 0700 directory, the engine's."""
    created = not live.parent.exists()
    live.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(live.parent, 0o700)
    if created:
        _own_like_parent(live.parent)
    os.chmod(source, 0o600)
    os.replace(source, live)
    _own_like_parent(live)
    fsync_dir(live.parent)


def _swap_models(source: Path, live: Path, root: Path) -> None:
    """The model store directory swapped whole (the old one was archived before staging).

    :func:`stage` always stages a ``models`` directory (empty when the archive has none), so a
    missing one means an earlier, interrupted run already moved it in.
    """
    old = root / "models.replaced"
    if source.exists():
        if old.exists():
            shutil.rmtree(old)
        if live.exists():
            live.rename(old)
        source.rename(live)
        for path in [live, *live.rglob("*")]:
            with contextlib.suppress(OSError):
                _own_like_parent(path)
        fsync_dir(live.parent)
    if old.exists():
        shutil.rmtree(old)


def _pause(trading_db: Path, body: dict[str, Any]) -> None:
    """Saved flags say paused, and the journal says why, before the engine reads either."""
    if not trading_db.exists():
        return
    conn = sqlite3.connect(trading_db, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        flags = trading.get_setting(conn, "engine.flags", {})
        flags = dict(flags) if isinstance(flags, dict) else {}
        flags["paused"] = True
        ts = int(body.get("ts_staged_ns", 0))
        trading.set_setting(conn, "engine.flags", flags, ts)
        trading.journal(
            conn,
            ts,
            "restore",
            "backup.restore:applied",
            {"archive": body["archive"]},
            True,
            {"pre_restore": body.get("pre_restore", ""), "paused": True},
        )
    finally:
        conn.close()
