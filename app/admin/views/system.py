"""System: CPU, memory, disk, temperature, uptime, services, clock, logs, backups (download any,
back up now, restore an archive with the password re-entered); and the login sessions (list,
revoke) with the login audit."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, Response

from app import contract
from app.admin import sysinfo
from app.admin.errorpages import error_page
from app.admin.render import render
from app.admin.state import panel_of
from app.admin.views.common import check_password, command, form_dict
from app.store import archive


async def system_page(request: Request) -> Response:
    panel = panel_of(request)
    snap, backups, archives, journal = await asyncio.gather(
        asyncio.to_thread(sysinfo.snapshot, panel.cfg.data_dir),
        asyncio.to_thread(sysinfo.backups, panel.cfg.backup_dir),
        asyncio.to_thread(archive.list_archives, panel.cfg.backup_dir),
        asyncio.to_thread(panel.reader.journal, 30),
    )
    ctx = {"sys": snap, "backups": backups, "archives": archives, "journal": journal}
    return await render(request, "system.html", ctx)


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
    return await render(
        request, "_outcome.html", {"outcome": outcome}, status_code=200 if reply.ok else 422
    )


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
    return await render(
        request, "_outcome.html", {"outcome": outcome}, status_code=200 if reply.ok else 422
    )


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
