"""The panel's long-lived objects, built once and handed to the app as lifespan state."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from app.admin.config import AdminConfig
from app.admin.paneldb import PanelDb
from app.admin.passwords import PasswordStore
from app.admin.readers import EngineReader
from app.admin.redact import PanelEngineClient
from app.admin.secretfiles import load_or_create_key
from app.admin.sessions import Session, Sessions
from app.admin.throttle import Throttle
from app.admin.uploads import remove_leftovers
from app.clock import Clock

log = logging.getLogger(__name__)


@dataclass
class Panel:
    """Everything a request handler needs; one per process."""

    cfg: AdminConfig
    clock: Clock
    db: PanelDb
    passwords: PasswordStore
    sessions: Sessions
    throttle: Throttle
    key: bytes
    engine: PanelEngineClient
    reader: EngineReader
    tls_fingerprint: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def build_panel(cfg: AdminConfig, clock: Clock, tls_fingerprint: str = "") -> Panel:
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    removed = remove_leftovers(cfg.uploads_dir)
    if removed:
        log.warning("removed %d upload(s) left by an earlier run", removed)
    pdb = PanelDb(cfg.panel_db)
    return Panel(
        cfg=cfg,
        clock=clock,
        db=pdb,
        passwords=PasswordStore(cfg),
        sessions=Sessions(cfg, pdb, clock),
        throttle=Throttle(cfg, pdb, clock),
        key=load_or_create_key(cfg.key_file),
        engine=PanelEngineClient(cfg.control_socket, cfg.control_timeout_s, actor="panel"),
        reader=EngineReader(cfg.data_dir),
        tls_fingerprint=tls_fingerprint,
    )


def panel_of(request: Request) -> Panel:
    panel: Panel = request.state.panel
    return panel


def session_of(request: Request) -> Session:
    """The caller's session (the gate let the request through, so there is one)."""
    session: Session = request.state.session
    return session


def client_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def actor_of(request: Request) -> str:
    """``panel:<user>@<client ip>``: who the engine journals for this request's commands."""
    return f"panel:{session_of(request).user}@{client_of(request)}"
