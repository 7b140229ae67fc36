"""The health gate's probes against the real engine process and a real HTTP server."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

from app import config as config_mod
from app.update import health

from .engineproc import running_engine


def test_the_gate_sees_a_ready_engine_and_its_model(sim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "data"
    with running_engine(data, sim.rest_url, sim.ws_url):
        socket_path = config_mod.load(data.resolve(), None, None).control_socket
        control, model = health.probe_control_and_model(socket_path)
    assert control.ok and control.detail == "status answers: paper, running"
    assert model.ok and model.detail.startswith("trading default-")


def test_the_panel_probe_passes_on_an_answer_below_500() -> None:
    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the panel's answer before a login
            self.send_response(303)
            self.send_header("Location", "/login")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Redirect)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        probe = health.probe_panel(f"http://127.0.0.1:{server.server_port}/")
    finally:
        server.shutdown()
        server.server_close()
    assert probe.ok and probe.detail.endswith("HTTP 303")
