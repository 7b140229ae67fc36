"""``appliance backup {create,list,verify,restore}``: archives of the whole state, offline.

These work on the files directly, without the engine: ``create`` while the engine runs (SQLite's
online backup API gives a consistent copy), ``restore FILE`` only while it is stopped (the swap
must happen while no database is open; a running engine restores with ``appliance ctl
backup.restore name=...``). On the board run them as root to include the panel's files, which live
in ``/var/lib/appliance-panel`` and are the panel user's alone.

API keys: ``create --include-keys`` seals them into the archive with a passphrase, and ``restore``
asks for it when the archive holds them (``verify --check-keys`` tries one). The passphrase is read
from the terminal without echo (twice when it is new) or, when stdin is not a terminal, as one line
from stdin: never from the command line, where the process list and shell history would show it.
"""

from __future__ import annotations

import argparse
import getpass
import json
import socket
import sys
import time
from pathlib import Path
from typing import Any

from app.store import archive, restore
from app.store.archive import ArchiveError, Layout


def _layout(ns: argparse.Namespace) -> Layout:
    data_dir = Path(ns.data_dir).resolve()
    panel = ns.panel_dir.resolve() if ns.panel_dir else archive.default_panel_dir(data_dir)
    return Layout(data_dir, panel)


def _engine_answers(data_dir: Path) -> bool:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(2.0)
        sock.connect(str(data_dir / "control.sock"))
    except OSError:
        return False
    finally:
        sock.close()
    return True


def _print(body: Any) -> None:
    json.dump(body, sys.stdout, indent=2)
    sys.stdout.write("\n")


MIN_PASSPHRASE = 8


def _new_passphrase() -> str:
    """A passphrase to seal the keys with: typed twice on a terminal, else one line of stdin."""
    if sys.stdin.isatty():
        first = getpass.getpass("passphrase for the API keys in the archive: ")
        if first != getpass.getpass("again: "):
            raise ArchiveError("the two passphrases differ: no archive written")
    else:
        first = sys.stdin.readline().rstrip("\r\n")
    if len(first) < MIN_PASSPHRASE:
        raise ArchiveError(
            f"the passphrase must have at least {MIN_PASSPHRASE} characters: no archive written"
        )
    return first


def _passphrase_for(name: str) -> str | None:
    """The passphrase of an archive's keys; None (empty, or end of input): leave them out."""
    if sys.stdin.isatty():
        try:
            typed = getpass.getpass(
                f"passphrase for the API keys in {name} (empty: restore without them): "
            )
        except EOFError:
            typed = ""
    else:
        typed = sys.stdin.readline().rstrip("\r\n")
    return typed or None


def _cmd_create(ns: argparse.Namespace) -> int:
    passphrase = _new_passphrase() if ns.include_keys else None
    info = archive.create(_layout(ns), time.time_ns(), backup_dir=ns.out_dir, passphrase=passphrase)
    if archive.KEYS in archive.read_manifest(info.path).members:
        keys = "included, encrypted with the passphrase"
    elif ns.include_keys:
        keys = "none saved here: nothing to include"
    else:
        keys = "left out (--include-keys includes them, encrypted)"
    _print({"backup": str(info.path), "bytes": info.bytes, "sha256": info.sha256, "api_keys": keys})
    return 0


def _cmd_list(ns: argparse.Namespace) -> int:
    for a in archive.list_archives(_layout(ns).backup_dir):
        print(f"{a.path.name}\t{a.bytes}\t{a.label or 'on demand'}")
    return 0


def _cmd_verify(ns: argparse.Namespace) -> int:
    path = ns.file.resolve()
    passphrase = None
    if ns.check_keys and _holds_keys(path):
        passphrase = _passphrase_for(path.name)
    manifest = archive.verify(path, known=archive.SCHEMAS, passphrase=passphrase)
    summary = archive.manifest_summary(manifest)
    if passphrase is not None:
        summary["api_keys"] = "included, encrypted; the passphrase opens them"
    _print({"ok": True, **summary})
    return 0


def _holds_keys(path: Path) -> bool:
    try:
        return archive.KEYS in archive.read_manifest(path).members
    except ArchiveError:
        return False  # the full verification that follows says what is wrong with it


def _cmd_restore(ns: argparse.Namespace) -> int:
    layout = _layout(ns)
    if _engine_answers(layout.data_dir):
        print(
            "appliance backup: the engine is running: stop it first (systemctl stop "
            "appliance-engine), or restore through it: appliance ctl backup.restore "
            "name='\"<archive in backups/>\"'",
            file=sys.stderr,
        )
        return 2
    path = ns.file.resolve()
    passphrase = None
    if not ns.without_keys and path.is_file() and _holds_keys(path):
        passphrase = _passphrase_for(path.name)
    staged = restore.stage(layout, path, time.time_ns(), passphrase)
    report = restore.apply_pending_restore(layout.data_dir, layout.panel_dir)
    assert report is not None
    _print(
        {
            "restored": staged.archive,
            "pre_restore": staged.pre_restore,
            "replaced": report.replaced,
            "removed": report.removed,
            "problems": report.problems,
            "api_keys": report.keys,
            "next": "start the engine: it comes back paused; resume when its state looks right",
        }
    )
    if report.keys == restore.KEYS_NOT_RESTORED:
        print(f"appliance backup: the API keys were {report.keys}", file=sys.stderr)
    return 1 if report.problems else 0


def _run(fn: Any) -> Any:
    def wrapped(ns: argparse.Namespace) -> int:
        try:
            code: int = fn(ns)
        except ArchiveError as exc:
            print(f"appliance backup: {exc}", file=sys.stderr)
            return 1
        return code

    return wrapped


def register(sub: Any) -> None:
    """Add ``backup`` to the ``appliance`` parser."""
    p = sub.add_parser("backup", help="archives of the whole state: create, list, verify, restore")
    p.add_argument("--panel-dir", type=Path, help="the panel's data directory (default: found)")
    actions = p.add_subparsers(dest="action", required=True)
    a = actions.add_parser("create", help="write and verify an archive now")
    a.add_argument("--out-dir", type=Path, help="where (default: <data-dir>/backups)")
    a.add_argument(
        "--include-keys",
        action="store_true",
        help="include the API keys, encrypted with a passphrase read from the terminal (or stdin)",
    )
    a.set_defaults(func=_run(_cmd_create))
    a = actions.add_parser("list", help="the archives in <data-dir>/backups")
    a.set_defaults(func=_run(_cmd_list))
    a = actions.add_parser("verify", help="check an archive: checksums, integrity, schemas")
    a.add_argument("file", type=Path)
    a.add_argument(
        "--check-keys", action="store_true", help="ask for the passphrase and open the API keys"
    )
    a.set_defaults(func=_run(_cmd_verify))
    a = actions.add_parser("restore", help="restore an archive (the engine must be stopped)")
    a.add_argument("file", type=Path)
    a.add_argument(
        "--without-keys",
        action="store_true",
        help="do not ask for the passphrase: restore everything but the API keys",
    )
    a.set_defaults(func=_run(_cmd_restore))
