"""The Starlette application, declared in one place: routes, middleware, lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TypedDict

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from app.admin import alerts, errorpages
from app.admin.gate import Gate
from app.admin.render import make_templates
from app.admin.security import SecurityHeaders
from app.admin.state import Panel
from app.admin.views import auth, dashboard, mode, models, pnl, settings, system, updates


class LifespanState(TypedDict):
    panel: Panel


def routes(panel: Panel) -> list[Route | Mount]:
    icon = panel.cfg.web_dir / "static" / "favicon.svg"

    async def favicon(request: Request) -> Response:
        # Browsers ask for /favicon.ico whatever the page says; the vendored SVG answers.
        return FileResponse(icon, media_type="image/svg+xml")

    return [
        Route("/favicon.ico", favicon, name="favicon"),
        Route("/login", auth.login_page, methods=["GET"], name="login"),
        Route("/login", auth.login_submit, methods=["POST"], name="login_submit"),
        Route("/logout", auth.logout, methods=["POST"], name="logout"),
        Route("/setup", auth.setup_page, methods=["GET"], name="setup"),
        Route("/setup", auth.setup_submit, methods=["POST"], name="setup_submit"),
        Route("/", dashboard.dashboard, name="dashboard"),
        Route("/fragments/dashboard", dashboard.dashboard_fragment, name="dashboard_fragment"),
        Route("/live/dashboard", dashboard.dashboard_stream, name="dashboard_stream"),
        Route("/pnl", pnl.pnl_page, name="pnl"),
        Route("/pnl/trades.csv", pnl.trades_csv, name="trades_csv"),
        Route("/pnl/round-trips.csv", pnl.round_trips_csv, name="round_trips_csv"),
        Route("/pnl/round-trips", pnl.round_trips_fragment, name="round_trips"),
        Route("/models", models.models_page, name="models"),
        Route("/models/table", models.models_table, name="models_table"),
        Route("/models/upload", models.upload, methods=["POST"], name="model_upload"),
        Route("/models/reports/{report_id}", models.report_page, name="model_report"),
        Route("/models/{action}", models.model_action, methods=["POST"], name="model_action"),
        Route("/mode", mode.mode_page, name="mode"),
        Route("/fragments/status", mode.status_fragment, name="status_fragment"),
        Route("/mode/preflight", mode.preflight, methods=["POST"], name="mode_preflight"),
        Route("/mode/live", mode.go_live, methods=["POST"], name="mode_live"),
        Route("/mode/paper", mode.go_paper, methods=["POST"], name="mode_paper"),
        Route("/mode/kill", mode.kill, methods=["POST"], name="mode_kill"),
        Route("/mode/resume", mode.resume, methods=["POST"], name="mode_resume"),
        Route("/mode/pause", mode.pause, methods=["POST"], name="mode_pause"),
        Route("/settings", settings.settings_page, name="settings"),
        Route("/settings/risk", settings.save_risk, methods=["POST"], name="settings_risk"),
        Route(
            "/settings/symbols", settings.save_symbols, methods=["POST"], name="settings_symbols"
        ),
        Route("/settings/keys", settings.save_keys, methods=["POST"], name="settings_keys"),
        Route(
            "/settings/webhook", settings.save_webhook, methods=["POST"], name="settings_webhook"
        ),
        Route(
            "/settings/password",
            settings.change_password,
            methods=["POST"],
            name="settings_password",
        ),
        Route("/system", system.system_page, name="system"),
        Route("/system/restore", system.restore_backup, methods=["POST"], name="system_restore"),
        Route("/system/backup", system.backup_now, methods=["POST"], name="system_backup"),
        Route("/system/upload", system.upload_backup, methods=["POST"], name="system_upload"),
        Route("/system/backups", system.backups_fragment, name="system_backups"),
        Route("/system/update", updates.upload_update, methods=["POST"], name="system_update"),
        Route("/system/update/status", updates.update_status, name="system_update_status"),
        Route("/system/goback", updates.go_back, methods=["POST"], name="system_go_back"),
        Route(
            "/system/update/url",
            updates.update_from_url,
            methods=["POST"],
            name="system_update_url",
        ),
        Route("/system/backups/{name}", system.download_backup, name="system_backup_download"),
        Route("/sessions", system.sessions_page, name="sessions"),
        Route("/sessions/revoke", system.revoke_session, methods=["POST"], name="sessions_revoke"),
        Mount("/static", StaticFiles(directory=str(panel.cfg.web_dir / "static")), name="static"),
    ]


def create_app(panel: Panel) -> Starlette:
    """The panel's ASGI app; ``panel`` becomes the lifespan state (``request.state.panel``)."""
    panel.extra["templates"] = make_templates(panel.cfg)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[LifespanState]:
        stop = asyncio.Event()
        watcher = asyncio.create_task(alerts.watch(panel, stop), name="alerts")
        try:
            yield {"panel": panel}
        finally:
            stop.set()
            await watcher
            panel.db.close()

    return Starlette(
        routes=routes(panel),
        middleware=[Middleware(SecurityHeaders), Middleware(Gate)],
        exception_handlers={HTTPException: errorpages.http_error},
        lifespan=lifespan,
    )
