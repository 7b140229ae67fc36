"""Models: upload (streamed, then ``model.add``), list, activate, shadow, promote, roll back,
delete (with the password); the shadow's signals and paper PnL beside the active model's."""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from app.admin.render import render
from app.admin.state import panel_of
from app.admin.uploads import UploadError, receive_upload
from app.admin.views.common import check_password, command, command_done, form_dict

log = logging.getLogger(__name__)

# action -> control command; the engine validates everything again.
ACTIONS = {
    "activate": "model.activate",
    "shadow": "model.shadow",
    "promote": "model.promote",
    "rollback": "model.rollback",
    "delete": "model.delete",
}
NEEDS_PASSWORD = frozenset({"delete"})


def _models(result: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The model rows and the rest of ``model.list``'s reply (active, shadow, comparison)."""
    if isinstance(result, list):
        return [m for m in result if isinstance(m, dict)], {}
    if isinstance(result, dict):
        rows = result.get("models", [])
        rest = {k: v for k, v in result.items() if k != "models"}
        return [m for m in rows if isinstance(m, dict)], rest
    return [], {}


async def _page(
    request: Request, outcome: dict[str, Any] | None = None, code: int = 200
) -> Response:
    listing = await command(request, "model.list")
    models, extra = _models(listing.result) if listing.ok else ([], {})
    ctx = {"listing": listing, "models": models, "extra": extra, "outcome": outcome}
    return await render(request, "models.html", ctx, status_code=code)


async def models_page(request: Request) -> Response:
    return await _page(request)


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
        outcome = {"action": "upload", "ok": False, "error": str(exc)}
        return await render(request, "_model_outcome.html", {"outcome": outcome}, status_code=400)
    reply = await command_done(
        request, "model.add", {"path": str(up.path), "name": up.original_name}
    )
    if not reply.ok:
        up.path.unlink(missing_ok=True)  # the engine refused it: nothing keeps a reference
    outcome = {
        "action": "upload",
        "ok": reply.ok,
        "error": reply.error,
        "result": reply.result,
        "file": up.original_name,
        "size": up.size,
    }
    return await render(
        request, "_model_outcome.html", {"outcome": outcome}, status_code=200 if reply.ok else 422
    )


async def model_action(request: Request) -> Response:
    action = request.path_params["action"]
    if action not in ACTIONS:
        return Response("unknown action", 404)
    form = await form_dict(request)
    sha = form.get("sha256", "").strip()
    outcome: dict[str, Any] = {"action": action, "sha256": sha[:16]}
    if action in NEEDS_PASSWORD:
        problem = await check_password(request, form.get("password", ""))
        if problem:
            outcome.update(ok=False, error=problem)
            return await render(
                request, "_model_outcome.html", {"outcome": outcome}, status_code=403
            )
    # promote and rollback act on the store's own pointers; the others name a model.
    args = {"sha256": sha} if sha and action in ("activate", "shadow", "delete") else {}
    reply = await command(request, ACTIONS[action], args)
    outcome.update(ok=reply.ok, error=reply.error, result=reply.result)
    return await render(
        request, "_model_outcome.html", {"outcome": outcome}, status_code=200 if reply.ok else 422
    )
