"""Models: upload (streamed, then ``model.add``), list, activate, shadow, promote, roll back,
delete (with the password); the shadow's signals and paper PnL beside the active model's."""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from app import contract
from app.admin import modelview
from app.admin.errorpages import error_page
from app.admin.redact import hide_paths
from app.admin.render import render
from app.admin.state import actor_of, panel_of
from app.admin.uploads import UploadError, receive_upload
from app.admin.views.common import check_password, command, form_dict
from app.ctl import Reply

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


async def _page(
    request: Request, outcome: dict[str, Any] | None = None, code: int = 200
) -> Response:
    listing = await command(request, contract.MODEL_LIST)
    ctx = {**_listing_context(listing), "outcome": outcome}
    return await render(request, "models.html", ctx, status_code=code)


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
