"""System updates from the panel: upload a bundle, see it checked, installed and rebooted into.

The panel checks what it can before asking anything of root, so that a wrong file is refused at
once with its reason: the password again (an update replaces the system), the bundle's signature
and checksums against the image's key (``app.update.bundle``), the version against the running
one, and the engine's trading (never during live trading with a position or an order open, unless
the owner ticks "flatten first": then, and only once the bundle has passed its checks, the kill
switch cancels the orders, closes the positions at market and halts trading until the owner
resumes it, and the update goes ahead once the engine reports nothing open). Then
it moves the file to its update spool and writes the request; root's
``appliance-update-request.service`` checks the bundle again itself, installs it and writes its
progress, which the page polls (``app/update/request.py``)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from app import contract
from app.admin.redact import hide_paths
from app.admin.render import render
from app.admin.state import actor_of, panel_of
from app.admin.uploads import UploadError, receive_upload
from app.admin.views.common import check_password, command, form_dict
from app.update import bundle, fetch, install, request, rollback
from app.update.bundle import BundleError

BUNDLE_FIELD = "bundle"
# How long "flatten first" waits for the closing orders to fill before it refuses (the kill switch
# stays on either way).
FLATTEN_WAIT_S = 30.0


def _check(path: Path, key: Path, running: str) -> bundle.Manifest:
    try:
        trusted = key.read_bytes()
    except OSError:
        raise BundleError("this system has no update key: it is not an appliance image") from None
    manifest = bundle.verify_bundle(path, trusted)
    install.check_version(manifest.version, running, allow_downgrade=False)
    return manifest


def _refuser(
    request_: Request, outcome: dict[str, Any]
) -> Callable[[str, int], Awaitable[Response]]:
    async def refuse(error: str, status: int) -> Response:
        outcome.update(ok=False, error=error)
        return await render(request_, "_update.html", {"update": outcome}, status_code=status)

    return refuse


async def upload_update(request_: Request) -> Response:
    """A bundle uploaded from the owner's computer."""
    panel = panel_of(request_)
    outcome: dict[str, Any] = {"action": "update"}
    refuse = _refuser(request_, outcome)
    try:
        up = await receive_upload(
            request_.headers.get("content-type", ""),
            request_.stream(),
            panel.cfg.uploads_dir,
            panel.cfg.update_upload_max_bytes,
            field=BUNDLE_FIELD,
            suffix=".update",
        )
    except (UploadError, ValueError) as exc:
        return await refuse(hide_paths(str(exc)), 400)
    try:
        why = await check_password(request_, up.fields.get("password", ""))
        if why:
            return await refuse(f"Not updated: {why}.", 403)
        return await _accept(request_, up.path, up.size, up.original_name, up.fields, outcome)
    finally:
        up.path.unlink(missing_ok=True)


async def update_from_url(request_: Request) -> Response:
    """A bundle fetched from the address the owner gives (remembered for the next time)."""
    panel = panel_of(request_)
    outcome: dict[str, Any] = {"action": "update"}
    refuse = _refuser(request_, outcome)
    fields = await form_dict(request_)
    why = await check_password(request_, fields.get("password", ""))
    if why:
        return await refuse(f"Not updated: {why}.", 403)
    try:
        url = fetch.check_url(fields.get("url", ""))
        await asyncio.to_thread(_remember_url, panel.cfg.update_url_file, url)
        path, size = await asyncio.to_thread(
            fetch.download, url, panel.cfg.uploads_dir, panel.cfg.update_upload_max_bytes
        )
    except BundleError as exc:
        return await refuse(str(exc), 422)
    try:
        return await _accept(request_, path, size, url, fields, outcome)
    finally:
        path.unlink(missing_ok=True)


def _remember_url(path: Path, url: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(url + "\n")
    os.replace(tmp, path)


def remembered_url(path: Path) -> str:
    try:
        return fetch.check_url(path.read_text()[: fetch.MAX_URL + 1])
    except (OSError, BundleError, UnicodeDecodeError):
        return ""


async def _accept(
    request_: Request,
    path: Path,
    size: int,
    name: str,
    fields: dict[str, str],
    outcome: dict[str, Any],
) -> Response:
    """A bundle on disk from either source: checked, the trading guard, then queued for root."""
    panel = panel_of(request_)
    refuse = _refuser(request_, outcome)
    running = install.running_version(panel.cfg.os_release)
    flatten = fields.get("flatten", "") == "on"
    try:
        # The bundle first: a bad one must never cost the owner a position.
        manifest = await asyncio.to_thread(_check, path, panel.cfg.update_key, running)
        trading = await _trading(request_)
        if flatten and install.has_open_live(trading):
            outcome["flattened"] = True
            trading = await _flatten(request_, manifest.version)
        install.check_trading(trading)
    except BundleError as exc:
        return await refuse(str(exc), 422)
    spool = panel.cfg.update_spool
    await asyncio.to_thread(_queue, path, spool)
    req = request.Request(
        version=manifest.version,
        reboot=fields.get("reboot", "") == "on",
        actor=actor_of(request_),
        ts_ms=time.time_ns() // 1_000_000,
    )
    await asyncio.to_thread(request.write_request, spool, req)
    outcome.update(
        ok=True,
        version=manifest.version,
        running=running,
        size=size,
        file=name,
        key=manifest.key_id,
        reboot=req.reboot,
    )
    return await render(
        request_, "_update.html", {"update": outcome, "progress": None}, status_code=202
    )


async def go_back(request_: Request) -> Response:
    """The owner goes back to the previous version (root checks it is that, and marks the
    running one bad): never while live trading has a position or an order open."""
    panel = panel_of(request_)
    outcome: dict[str, Any] = {"action": "go back"}
    refuse = _refuser(request_, outcome)
    fields = await form_dict(request_)
    why = await check_password(request_, fields.get("password", ""))
    if why:
        return await refuse(f"Not changed: {why}.", 403)
    running = install.running_version(panel.cfg.os_release)
    previous = await asyncio.to_thread(rollback.read_previous, panel.cfg.data_dir, running)
    to = fields.get("version", "")
    try:
        if previous is None or to != previous:
            raise install.UpdateRefused(
                f"refused: version {to or '?'} is not the previous version on this appliance"
            )
        install.check_trading(await _trading(request_))
    except BundleError as exc:
        return await refuse(str(exc), 422)
    spool = panel.cfg.update_spool
    await asyncio.to_thread(_prepare_spool, spool)
    req = request.Request(
        version=previous,
        reboot=True,
        actor=actor_of(request_),
        ts_ms=time.time_ns() // 1_000_000,
        action="go back",
    )
    await asyncio.to_thread(request.write_request, spool, req)
    outcome.update(ok=True, version=previous, running=running)
    return await render(
        request_, "_update.html", {"update": outcome, "progress": None}, status_code=202
    )


async def _trading(request_: Request) -> install.Trading | None:
    status = await command(request_, contract.STATUS)
    return install.trading_of(status.result) if status.ok and status.result is not None else None


async def _flatten(request_: Request, version: str) -> install.Trading | None:
    """The kill switch, then the engine's trading once nothing is open (or at the deadline)."""
    kill = await command(
        request_, contract.KILL, contract.KillArgs(reason=f"system update to {version}")
    )
    if not kill.ok:
        raise install.UpdateRefused(
            f"refused: the kill switch was not confirmed ({kill.error or 'no answer'}); the "
            "Mode page shows what is open"
        )
    deadline = time.monotonic() + FLATTEN_WAIT_S
    while True:
        trading = await _trading(request_)
        if trading is not None and not install.has_open_live(trading):
            return trading
        if time.monotonic() >= deadline:
            raise install.UpdateRefused(
                f"refused: the kill switch is on and flattening, but after {FLATTEN_WAIT_S:.0f} s "
                "live trading still has something open; check the Mode page, then try again"
            )
        await asyncio.sleep(0.5)


def _prepare_spool(spool: Path) -> None:
    spool.mkdir(mode=0o750, exist_ok=True)
    (spool / request.STATUS).unlink(missing_ok=True)


def _queue(path: Path, spool: Path) -> None:
    _prepare_spool(spool)
    os.replace(path, spool / request.BUNDLE)


async def update_status(request_: Request) -> Response:
    """The install's progress, as root writes it: polled while it runs."""
    progress = await asyncio.to_thread(request.read_status, panel_of(request_).cfg.update_spool)
    return await render(request_, "_update_progress.html", {"progress": progress})
