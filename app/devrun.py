"""``appliance run``: the developer's stand-in for the appliance's systemd units.

Starts the exchange simulator (unless told not to, or the exchange is not the simulator), the
engine and the admin panel (unless ``--no-admin``; port ``--admin-port``, 8080 by default) as
child processes, restarts a child that dies (with backoff, like ``Restart=on-failure``)
and stops them all, engine first, on Ctrl-C or SIGTERM.

While they run it logs what a developer watching the terminal wants to see happen, read from the
engine's trading database (read-only, once a second; the engine stays its only writer): one line
per decision that sends an order, per fill, and per breaker, kill switch or resume.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import FrameType

from app.config import DEFAULT_ADMIN_PORT, AppConfig
from app.store import db

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


# Order purpose (app/engine/orders.py) -> what the decision was.
_PURPOSES = {
    "entry": "open",
    "reduce": "close on signal",
    "exit:stop": "stop-loss",
    "exit:take_profit": "take-profit",
    "kill": "kill switch: flatten",
    "liquidation": "liquidation",
}
_EVENT_KINDS = ("breaker", "kill", "resume")


def _num(text: object) -> str:
    """A stored decimal without its trailing zeros (prices and quantities come at tick size)."""
    try:
        value = Decimal(str(text)).normalize()
    except ArithmeticError:
        return str(text)
    return f"{value:f}"


@dataclass
class TradeLog:
    """Logs new orders, fills and breaker events from ``trading.db`` (see the module docstring).

    Starts at what is already there: a restart does not replay the history.
    """

    path: Path
    started: bool = False
    order_ts_ns: int = 0
    fill_id: int = 0
    event_id: int = 0

    def poll(self) -> list[str]:
        """The lines for what is new since the last call (also logged)."""
        if not self.path.exists():
            return []
        try:
            conn = db.connect(self.path, readonly=True)
        except sqlite3.Error:
            return []
        try:
            lines = self._read(conn)
        except sqlite3.OperationalError as exc:
            # Tables appear with the engine's first migration: nothing to say until then.
            log.debug("trade log: %s", exc)
            return []
        finally:
            conn.close()
        if not self.started:
            self.started = True
            return []
        for line in lines:
            log.info("%s", line)
        return lines

    def _read(self, conn: sqlite3.Connection) -> list[str]:
        lines: list[tuple[int, str]] = []
        for ts, symbol, side, qty, purpose, model in conn.execute(
            "SELECT ts_created_ns, symbol, side, qty, purpose, model_version FROM orders "
            "WHERE ts_created_ns > ? ORDER BY ts_created_ns",
            (self.order_ts_ns,),
        ):
            self.order_ts_ns = max(self.order_ts_ns, int(ts))
            what = _PURPOSES.get(purpose, purpose)
            lines.append(
                (ts, f"decision {symbol}: {what}, {side.lower()} {_num(qty)} (model {model})")
            )
        for fid, ts, symbol, side, price, qty, fee, realized in conn.execute(
            "SELECT id, ts_ns, symbol, side, price, qty, fee, realized_pnl FROM fills "
            "WHERE id > ? ORDER BY id",
            (self.fill_id,),
        ):
            self.fill_id = max(self.fill_id, int(fid))
            pnl = Decimal(str(realized))
            tail = f", realised {pnl:+.4f}" if pnl else ""
            lines.append(
                (
                    ts,
                    f"fill {symbol}: {side.lower()} {_num(qty)} at {_num(price)}, "
                    f"fee {Decimal(str(fee)):.4f}{tail}",
                )
            )
        marks = ", ".join("?" * len(_EVENT_KINDS))
        for eid, ts, kind, code, symbol, message in conn.execute(
            "SELECT id, ts_ns, kind, code, symbol, message FROM risk_events "  # noqa: S608
            f"WHERE id > ? AND kind IN ({marks}) ORDER BY id",
            (self.event_id, *_EVENT_KINDS),
        ):
            self.event_id = max(self.event_id, int(eid))
            where = f" {symbol}" if symbol else ""
            lines.append((ts, f"{kind}{where}: {code}: {message}"))
        return [text for _, text in sorted(lines, key=lambda pair: pair[0])]


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
    trades = TradeLog(cfg.data_dir / "trading.db")
    next_poll = 0.0
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
            if now >= next_poll:
                trades.poll()
                next_poll = now + 1.0
            time.sleep(0.1)
    finally:
        for child in reversed(procs):
            child.stop()
    log.info("stopped")
    return 0
