"""System: CPU, memory, disk, temperature, uptime, services, clock, logs, backups (download any,
back up now, upload an archive made elsewhere, restore an archive with the password re-entered);
and the login sessions (list, revoke) with the login audit.

An uploaded archive is streamed to the panel's uploads directory (``app.admin.uploads``, its own
size limit), then handed to the engine (``backup.import``), which verifies it as a restore would
and lists it among its backups: on the image the backups are the engine's, and the panel may not
write there. The panel removes its copy either way."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, Response

from app import contract
from app.admin import sysinfo
from app.admin.errorpages import error_page
from app.admin.redact import hide_paths
from app.admin.render import render
from app.admin.state import panel_of
from app.admin.uploads import UploadError, receive_upload
from app.admin.views import updates
from app.admin.views.common import check_password, command, form_dict
from app.store import archive
from app.update import health, install, rollback
from app.update import request as update_request

ARCHIVE_FIELD = "archive"
_MEMBER_WORDS = {
    "trading.db": "trading journal and settings",
    "orders.db": "order journal",
    "panel/panel.db": "the panel's database",
    "panel/admin-password.hash": "the panel's password",
}
_KINDS = {"": "archive", "scheduled": "daily archive", "pre-restore": "archive before a restore"}


def _kind(name: str) -> str:
    """What a file in the backups is, in words (shown under its name in the table)."""
    parsed = archive.parse_name(name)
    if parsed is not None:
        return _KINDS.get(parsed[1], f"archive ({parsed[1]})")
    if name.startswith("market_"):
        return "market week"
    return "trading database (old daily copy)" if name.startswith("trading_") else "file"


def _contents(members: list[str]) -> str:
    """An archive's members in words: the model store counted, not listed by its hashes."""
    words = [w for name, w in _MEMBER_WORDS.items() if name in members]
    if any(m.startswith("models/") for m in members):
        n = sum(1 for m in members if m.startswith("models/") and m.endswith(".onnx"))
        words.append(f"the model store ({n} model{'' if n == 1 else 's'})")
    return ", ".join(words) or "nothing"


async def _backups_context(request: Request) -> dict[str, Any]:
    backup_dir = panel_of(request).cfg.backup_dir
    backups, archives = await asyncio.gather(
        asyncio.to_thread(sysinfo.backups, backup_dir),
        asyncio.to_thread(archive.list_archives, backup_dir),
    )
    rows = [
        {"name": b.name, "size": b.size, "ts_ns": b.ts_ns, "kind": _kind(b.name)} for b in backups
    ]
    return {"backups": rows, "archives": archives}


async def system_page(request: Request) -> Response:
    panel = panel_of(request)
    snap, listing, journal = await asyncio.gather(
        asyncio.to_thread(sysinfo.snapshot, panel.cfg.data_dir),
        _backups_context(request),
        asyncio.to_thread(panel.reader.journal, 30),
    )
    ctx = {
        "sys": snap,
        **listing,
        "journal": journal,
        "archive_upload_max_bytes": panel.cfg.archive_upload_max_bytes,
        "updates": await asyncio.to_thread(
            updates_context, panel.cfg.data_dir, panel.cfg.os_release
        ),
        "update_upload_max_bytes": panel.cfg.update_upload_max_bytes,
        "update_url": await asyncio.to_thread(updates.remembered_url, panel.cfg.update_url_file),
        "update_progress": await asyncio.to_thread(
            update_request.read_status, panel.cfg.update_spool
        ),
    }
    return await render(request, "system.html", ctx)


def updates_context(panel_dir: Path, os_release: Path = install.OS_RELEASE) -> dict[str, Any]:
    """The running system version and the health gate's verdicts (app/update/health.py): after a
    rollback, the version that failed, why, and the one the appliance went back to."""
    running = install.running_version(os_release)
    verdicts = health.read_record(panel_dir / health.RECORD.name)
    # The newest rollback away from a version that is not the one running (once that version is
    # installed and running again, it is history, not news).
    rolled_back = (
        next(
            (
                v
                for v in verdicts
                if v.get("action") == "rolled back" and v.get("version") != running
            ),
            None,
        )
        if running
        else None
    )
    return {
        "running": running,
        "previous": rollback.read_previous(panel_dir, running) if running else None,
        "verdicts": verdicts[:5],
        "rolled_back": rolled_back,
        "failed_probes": [p for p in (rolled_back or {}).get("probes", []) if not p.get("ok")],
    }


async def backups_fragment(request: Request) -> Response:
    """The backups table and the restore form alone: refreshed after a backup or an upload."""
    return await render(request, "_backups.html", await _backups_context(request))


def _backup_path(request: Request, name: str) -> Any:
    panel = panel_of(request)
    for backup in sysinfo.backups(panel.cfg.backup_dir):
        if backup.name == name:  # only names the listing offers: no path tricks
            return panel.cfg.backup_dir / backup.name
    return None


async def download_backup(request: Request) -> Response:
    path = _backup_path(request, request.path_params["name"])
    if path is None:
        return error_page(
            request, 404, "There is no backup of that name (it may have been pruned)."
        )
    return FileResponse(path, filename=path.name, media_type="application/zstd")


async def backup_now(request: Request) -> Response:
    reply = await command(request, contract.BACKUP)
    outcome = {"action": "backup", "ok": reply.ok, "error": reply.error}
    if reply.result is not None:
        name = reply.result.backup.rsplit("/", 1)[-1]
        outcome["message"] = f"{name} ({reply.result.bytes:,} bytes, verified)"
    response = await render(
        request, "_outcome.html", {"outcome": outcome}, status_code=200 if reply.ok else 422
    )
    if reply.ok:
        response.headers["HX-Trigger"] = "backups-changed"
    return response


async def upload_backup(request: Request) -> Response:
    """An archive from elsewhere: streamed to disk, verified and listed by the engine
    (``backup.import``), then offered for restore like the archives made here."""
    panel = panel_of(request)
    outcome: dict[str, Any] = {"action": "upload"}
    try:
        up = await receive_upload(
            request.headers.get("content-type", ""),
            request.stream(),
            panel.cfg.uploads_dir,
            panel.cfg.archive_upload_max_bytes,
            field=ARCHIVE_FIELD,
            suffix=archive.SUFFIX,
        )
    except (UploadError, ValueError) as exc:
        outcome.update(ok=False, error=hide_paths(str(exc)))
        return await render(request, "_backup_upload.html", {"outcome": outcome}, status_code=400)
    try:
        args = contract.PathArgs(path=str(up.path), name=up.original_name)
        reply = await command(request, contract.BACKUP_IMPORT, args)
    finally:
        # The engine keeps its own verified copy; a refused file is kept by nobody. (A crash in
        # between leaves it for the next start: ``uploads.remove_leftovers``.)
        up.path.unlink(missing_ok=True)
    label = repr(up.original_name or "the upload")
    outcome.update(
        ok=reply.ok,
        error=reply.error.replace(up.path.name, label),
        file=up.original_name,
        size=up.size,
        imported=reply.result,
        contents=_contents(reply.result.members) if reply.result else "",
    )
    response = await render(
        request,
        "_backup_upload.html",
        {"outcome": outcome},
        status_code=200 if reply.ok else 422,
    )
    if reply.ok:
        response.headers["HX-Trigger"] = "backups-changed"
    return response


async def restore_backup(request: Request) -> Response:
    """Restore an archive on the appliance: the password again, then ``backup.restore``: the
    engine verifies it, archives the current state, and restarts into it, paused."""
    form = await form_dict(request)
    outcome: dict[str, Any] = {"action": "restore"}
    name = form.get("name", "")
    if archive.parse_name(name) is None or _backup_path(request, name) is None:
        outcome.update(ok=False, error="no such backup archive")
        return await render(request, "_outcome.html", {"outcome": outcome}, status_code=404)
    problem = await check_password(request, form.get("password", ""))
    if problem:
        outcome.update(ok=False, error=problem)
        return await render(request, "_outcome.html", {"outcome": outcome}, status_code=403)
    reply = await command(request, contract.BACKUP_RESTORE, contract.BackupRef(name=name))
    outcome.update(ok=reply.ok, error=reply.error)
    if reply.result is not None:
        pre = reply.result.pre_restore
        outcome["message"] = (
            f"{reply.result.archive} verified; the engine restarts into it and comes back "
            "paused" + (f" (the replaced state is kept as {pre})" if pre else "")
        )
    response = await render(
        request, "_outcome.html", {"outcome": outcome}, status_code=200 if reply.ok else 422
    )
    if reply.ok:
        response.headers["HX-Trigger"] = "backups-changed"  # the pre-restore archive is listed
    return response


async def sessions_page(request: Request) -> Response:
    panel = panel_of(request)
    ctx = {"sessions": panel.sessions.active(), "logins": panel.db.recent_logins(20)}
    return await render(request, "sessions.html", ctx)


async def revoke_session(request: Request) -> Response:
    panel = panel_of(request)
    form = await form_dict(request)
    panel.sessions.revoke(form.get("id", ""))
    if form.get("id") == request.state.session.id_hash:
        response = Response(status_code=204)
        response.headers["HX-Redirect"] = "/login"
        return response
    return await sessions_page(request)
