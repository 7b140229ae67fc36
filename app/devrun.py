"""``appliance run``: the developer's stand-in for the appliance's systemd units.

Starts the exchange simulator (unless told not to, or the exchange is not the simulator), the
engine and the admin panel (unless ``--no-admin``; port ``--admin-port``, 8080 by default) as
child processes, restarts a child that dies (with backoff, like ``Restart=on-failure``)
and stops them all, engine first, on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from types import FrameType

from app.config import DEFAULT_ADMIN_PORT, AppConfig

log = logging.getLogger("appliance.run")

_BACKOFF_MAX_S = 10.0


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    backoff_s: float = 0.5
    next_start: float = 0.0
    started_at: float = 0.0

    def start(self) -> None:
        log.info("starting %s", self.name)
        self.proc = subprocess.Popen(self.argv)
        self.started_at = time.monotonic()

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0fs: killing it", self.name, timeout)
            self.proc.kill()
            self.proc.wait()


@dataclass
class Stopper:
    requested: bool = False
    signals: list[int] = field(default_factory=list)

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        self.signals.append(signum)


def _wait_port(host: str, port: int, timeout: float, child: Child) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.proc is not None and child.proc.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def children(cfg: AppConfig, ns: argparse.Namespace) -> list[Child]:
    """The child processes ``run`` supervises, in start order."""
    py = [
        sys.executable,
        "-m",
        "app.cli",
        "--data-dir",
        str(cfg.data_dir),
        "--log-level",
        ns.log_level,
    ]
    if ns.config is not None:
        py += ["--config", str(ns.config)]
    symbols = ",".join(cfg.feed.symbols)
    out: list[Child] = []
    engine = [*py, "engine", "--symbols", symbols]
    if cfg.exchange.profile == "sim" and not ns.no_sim:
        out.append(
            Child(
                "sim",
                [
                    *py,
                    "sim",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(ns.sim_port),
                    "--seed",
                    str(ns.seed),
                    "--symbols",
                    symbols,
                ],
            )
        )
        base = f"127.0.0.1:{ns.sim_port}"
        engine += ["--rest-url", f"http://{base}", "--ws-url", f"ws://{base}"]
    else:
        engine += ["--exchange", cfg.exchange.profile]
        if cfg.exchange.rest_url:
            engine += ["--rest-url", cfg.exchange.rest_url]
        if cfg.exchange.ws_url:
            engine += ["--ws-url", cfg.exchange.ws_url]
    out.append(Child("engine", engine))
    if not getattr(ns, "no_admin", False):
        port = getattr(ns, "admin_port", DEFAULT_ADMIN_PORT)
        out.append(Child("admin", [*py, "admin", "--host", "127.0.0.1", "--port", str(port)]))
    return out


def run_all(cfg: AppConfig, ns: argparse.Namespace) -> int:
    stopper = Stopper()
    signal.signal(signal.SIGTERM, stopper)
    signal.signal(signal.SIGINT, stopper)
    procs = children(cfg, ns)
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    log.info("data in %s; Ctrl-C stops everything", cfg.data_dir)
    try:
        for child in procs:
            child.start()
            if child.name == "sim" and not _wait_port("127.0.0.1", ns.sim_port, 30, child):
                log.error("the simulator did not come up on port %d", ns.sim_port)
                return 1
        while not stopper.requested:
            now = time.monotonic()
            for child in procs:
                assert child.proc is not None
                code = child.proc.poll()
                if code is None:
                    if now - child.started_at > 60:
                        child.backoff_s = 0.5
                    continue
                if child.next_start == 0.0:
                    log.warning(
                        "%s exited with %s; restarting in %.1fs", child.name, code, child.backoff_s
                    )
                    child.next_start = now + child.backoff_s
                elif now >= child.next_start:
                    child.restarts += 1
                    child.next_start = 0.0
                    child.backoff_s = min(child.backoff_s * 2, _BACKOFF_MAX_S)
                    child.start()
            time.sleep(0.1)
    finally:
        for child in reversed(procs):
            child.stop()
    log.info("stopped")
    return 0
