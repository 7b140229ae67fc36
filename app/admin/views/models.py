"""Models: upload (streamed, then ``model.add``), list, activate, shadow, promote, roll back,
delete (with the password); the shadow's signals and paper PnL beside the active model's; the
backtest reports saved under the data directory (``appliance backtest --save``), each served as
its own self-contained page under a CSP that lets nothing load or run."""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal, InvalidOperation
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from app import contract
from app.admin import modelview
from app.admin.errorpages import error_page
from app.admin.redact import hide_paths
from app.admin.render import render
from app.admin.security import report_csp
from app.admin.state import actor_of, panel_of
from app.admin.uploads import UploadError, receive_upload
from app.admin.views.common import check_password, command, form_dict
from app.ctl import Reply
from app.store import reports as reportstore

log = logging.getLogger(__name__)

ACTIONS = ("activate", "shadow", "promote", "rollback", "delete")
NEEDS_PASSWORD = frozenset({"delete"})


def _listing_context(listing: Reply[contract.ModelList]) -> dict[str, Any]:
    models = listing.result
    return {
        "listing": listing,
        "models": models,
        "rows": modelview.rows(models) if models is not None else [],
        "compare": modelview.comparison(models) if models is not None else None,
    }


def _report_rows(reports: list[reportstore.SavedReport]) -> list[dict[str, Any]]:
    rows = []
    for r in reports:
        try:
            pnl = None if r.pnl is None else Decimal(r.pnl)
        except InvalidOperation:
            pnl = None
        rows.append({"report": r, "pnl": pnl, "period": _period(r.start, r.end)})
    return rows


def _period(start: str, end: str) -> str:
    """``2024-01-01 00:00 – 06:00 UTC`` (the date once when both ends share it)."""
    if len(start) < 16 or len(end) < 16:
        return ""
    a, b = start[:16].replace("T", " "), end[:16].replace("T", " ")
    return f"{a} – {b[11:] if a[:10] == b[:10] else b} UTC"


async def _page(
    request: Request, outcome: dict[str, Any] | None = None, code: int = 200
) -> Response:
    listing, reports = await asyncio.gather(
        command(request, contract.MODEL_LIST),
        asyncio.to_thread(reportstore.list_reports, panel_of(request).cfg.data_dir),
    )
    ctx = {**_listing_context(listing), "outcome": outcome, "reports": _report_rows(reports)}
    return await render(request, "models.html", ctx, status_code=code)


async def report_page(request: Request) -> Response:
    """A saved report's page, looked up among the listed ids (never by path)."""
    rid = request.path_params["report_id"]
    report = await asyncio.to_thread(reportstore.find_report, panel_of(request).cfg.data_dir, rid)
    missing = "There is no saved backtest report of that name."
    if report is None:
        return error_page(request, 404, missing)
    try:
        html = await asyncio.to_thread((report.path / reportstore.HTML_NAME).read_bytes)
    except OSError:
        return error_page(request, 404, missing)
    return Response(
        html,
        media_type="text/html; charset=utf-8",
        headers={"content-security-policy": report_csp(html)},
    )


async def models_page(request: Request) -> Response:
    return await _page(request)


async def models_table(request: Request) -> Response:
    """A part of the page alone: the installed models (``?part=table``, refreshed after an upload
    or an action, and while a model is being checked) or the shadow comparison (``?part=shadow``,
    refreshed every few seconds while a shadow runs)."""
    listing = await command(request, contract.MODEL_LIST)
    part = "_shadow_compare.html" if request.query_params.get("part") == "shadow" else None
    return await render(request, part or "_models_table.html", _listing_context(listing))


async def upload(request: Request) -> Response:
    panel = panel_of(request)
    try:
        up = await receive_upload(
            request.headers.get("content-type", ""),
            request.stream(),
            panel.cfg.uploads_dir,
            panel.cfg.upload_max_bytes,
        )
    except (UploadError, ValueError) as exc:
        # receive_upload removed its partial file; the message names no server path.
        outcome = {"action": "upload", "ok": False, "error": hide_paths(str(exc))}
        return await render(request, "_model_outcome.html", {"outcome": outcome}, status_code=400)
    try:
        reply = await panel.engine.call(
            contract.MODEL_ADD,
            contract.PathArgs(path=str(up.path), name=up.original_name),
            actor=actor_of(request),
        )
    finally:
        # The store keeps its own copy; a refused file is kept by nobody. (A crash in between
        # leaves it for the next start: ``uploads.remove_leftovers``.)
        up.path.unlink(missing_ok=True)
    outcome = {
        "action": "upload",
        "ok": reply.ok,
        # The engine client already cut the upload's path to its (made-up) name: show the label.
        "error": reply.error.replace(up.path.name, repr(up.original_name or "the upload")),
        "added": reply.result,
        "file": up.original_name,
        "size": up.size,
    }
    response = await render(
        request, "_model_outcome.html", {"outcome": outcome}, status_code=200 if reply.ok else 422
    )
    response.headers["HX-Trigger"] = "models-changed"
    return response


async def model_action(request: Request) -> Response:
    action = request.path_params["action"]
    if action not in ACTIONS:
        return error_page(request, 404, f"There is no model action {action!r}.")
    form = await form_dict(request)
    sha = form.get("sha256", "").strip()
    outcome: dict[str, Any] = {"action": action, "sha256": sha[:12]}
    if action in NEEDS_PASSWORD:
        problem = await check_password(request, form.get("password", ""))
        if problem:
            outcome.update(ok=False, error=problem)
            return await render(
                request, "_model_outcome.html", {"outcome": outcome}, status_code=403
            )
    reply: Reply[Any]
    if action == "activate":
        reply = await command(request, contract.MODEL_ACTIVATE, contract.ModelRef(sha256=sha))
    elif action == "shadow":
        ref = sha if sha and sha != "stop" else None
        reply = await command(request, contract.MODEL_SHADOW, contract.ShadowArgs(sha256=ref))
    elif action == "promote":
        reply = await command(request, contract.MODEL_PROMOTE)
    elif action == "rollback":
        reply = await command(request, contract.MODEL_ROLLBACK)
    else:
        reply = await command(request, contract.MODEL_DELETE, contract.ModelRef(sha256=sha))
    outcome.update(ok=reply.ok, error=reply.error, done=reply.result)
    response = await render(
        request, "_model_outcome.html", {"outcome": outcome}, status_code=200 if reply.ok else 422
    )
    if reply.ok:
        response.headers["HX-Trigger"] = "models-changed"
    return response
