"""``appliance backup {create,list,verify,restore}``: archives of the whole state, offline.

These work on the files directly, without the engine: ``create`` while the engine runs (SQLite's
online backup API gives a consistent copy), ``restore FILE`` only while it is stopped (the swap
must happen while no database is open; a running engine restores with ``appliance ctl
backup.restore name=...``). On the board run them as root to include the panel's files, which live
in ``/var/lib/appliance-panel`` and are the panel user's alone.
"""

from __future__ import annotations

import argparse
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


def _cmd_create(ns: argparse.Namespace) -> int:
    info = archive.create(_layout(ns), time.time_ns(), backup_dir=ns.out_dir)
    _print({"backup": str(info.path), "bytes": info.bytes, "sha256": info.sha256})
    return 0


def _cmd_list(ns: argparse.Namespace) -> int:
    for a in archive.list_archives(_layout(ns).backup_dir):
        print(f"{a.path.name}\t{a.bytes}\t{a.label or 'on demand'}")
    return 0


def _cmd_verify(ns: argparse.Namespace) -> int:
    manifest = archive.verify(ns.file.resolve(), known=archive.SCHEMAS)
    _print({"ok": True, **archive.manifest_summary(manifest)})
    return 0


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
    staged = restore.stage(layout, ns.file.resolve(), time.time_ns())
    report = restore.apply_pending_restore(layout.data_dir, layout.panel_dir)
    assert report is not None
    _print(
        {
            "restored": staged.archive,
            "pre_restore": staged.pre_restore,
            "replaced": report.replaced,
            "removed": report.removed,
            "problems": report.problems,
            "next": "start the engine: it comes back paused; resume when its state looks right",
        }
    )
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
    a.set_defaults(func=_run(_cmd_create))
    a = actions.add_parser("list", help="the archives in <data-dir>/backups")
    a.set_defaults(func=_run(_cmd_list))
    a = actions.add_parser("verify", help="check an archive: checksums, integrity, schemas")
    a.add_argument("file", type=Path)
    a.set_defaults(func=_run(_cmd_verify))
    a = actions.add_parser("restore", help="restore an archive (the engine must be stopped)")
    a.add_argument("file", type=Path)
    a.set_defaults(func=_run(_cmd_restore))
