"""``appliance admin`` (the panel's process) and ``appliance set-password``.

``register(subparsers)`` adds both to the main CLI. ``--data-dir`` may be given before or after the
subcommand.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import socket
import sys
from pathlib import Path

from app.admin.config import DEFAULT_WEB_DIR, AdminConfig
from app.admin.passwords import PasswordStore, consume_setup_code, ensure_setup_code
from app.clock import SystemClock
from app.config import DEFAULT_ADMIN_PORT
from app.errors import ConfigError

log = logging.getLogger("appliance.admin")


def _config(ns: argparse.Namespace) -> AdminConfig:
    web = Path(os.environ.get("APPLIANCE_WEB_DIR", "") or DEFAULT_WEB_DIR)
    return AdminConfig(
        data_dir=ns.data_dir.resolve(),
        host=getattr(ns, "host", "127.0.0.1"),
        port=getattr(ns, "port", DEFAULT_ADMIN_PORT),
        https=getattr(ns, "https", False),
        web_dir=web,
        **({"update_key": ns.update_key} if getattr(ns, "update_key", None) else {}),
        **({"os_release": ns.os_release} if getattr(ns, "os_release", None) else {}),
    )


def serve(cfg: AdminConfig) -> int:
    """Run the panel until SIGTERM/SIGINT. Binds first, then logs the address it got."""
    import uvicorn

    from app.admin.app import create_app
    from app.admin.state import build_panel
    from app.admin.tls import ensure_certificate

    clock = SystemClock()
    fingerprint = ""
    ssl_kwargs: dict[str, str] = {}
    if cfg.https:
        tls = ensure_certificate(cfg.tls_dir)
        fingerprint = tls.fingerprint
        ssl_kwargs = {"ssl_certfile": str(tls.cert), "ssl_keyfile": str(tls.key)}
        log.warning("TLS certificate SHA-256 fingerprint: %s", fingerprint)
    panel = build_panel(cfg, clock, fingerprint)
    ensure_setup_code(cfg, panel.passwords, clock)
    family = socket.AF_INET6 if ":" in cfg.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((cfg.host, cfg.port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {cfg.host}:{cfg.port}: {exc}") from exc
    sock.listen(128)
    port = sock.getsockname()[1]
    scheme = "https" if cfg.https else "http"
    config = uvicorn.Config(
        create_app(panel),
        log_level="warning",
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=3,
        # The panel pushes with SSE, not WebSockets; "auto" would load websockets' deprecated
        # legacy server on the uvicorn Debian trixie ships.
        ws="none",
        **ssl_kwargs,  # type: ignore[arg-type]
    )
    server = uvicorn.Server(config)
    log.info("panel listening on %s://%s:%d (data in %s)", scheme, cfg.host, port, cfg.data_dir)
    asyncio.run(server.serve(sockets=[sock]))
    return 0


def _cmd_admin(ns: argparse.Namespace) -> int:
    return serve(_config(ns))


def _read_new_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("new password: ")
        if first != getpass.getpass("again: "):
            raise ConfigError("the two passwords differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def _cmd_set_password(ns: argparse.Namespace) -> int:
    """Set the administrator's password from stdin; ends every session; the recovery path."""
    cfg = _config(ns)
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    store = PasswordStore(cfg)
    store.set(_read_new_password())
    consume_setup_code(cfg)
    from app.admin.paneldb import PanelDb
    from app.admin.sessions import Sessions

    pdb = PanelDb(cfg.panel_db)
    try:
        ended = Sessions(cfg, pdb, SystemClock()).revoke_all()
    finally:
        pdb.close()
    print(f"password set; {ended} session(s) ended", file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``admin`` and ``set-password`` to the main parser's subcommands."""
    p_admin = sub.add_parser("admin", help="run the admin panel (web)")
    p_admin.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS, help="state directory")
    p_admin.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p_admin.add_argument("--port", type=int, default=DEFAULT_ADMIN_PORT, help="0: any free port")
    p_admin.add_argument("--update-key", type=Path, help="public key of update bundles (PEM)")
    p_admin.add_argument(
        "--os-release", type=Path, help="where the running version is read (/etc/os-release)"
    )
    p_admin.add_argument(
        "--https", action="store_true", help="HTTPS with a self-signed certificate"
    )
    p_admin.set_defaults(func=_cmd_admin)

    p_pw = sub.add_parser("set-password", help="set the panel's password (read from stdin)")
    p_pw.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS, help="state directory")
    p_pw.set_defaults(func=_cmd_set_password)
