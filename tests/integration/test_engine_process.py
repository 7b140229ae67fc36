"""The engine as a real process against the real simulator: streams, recording, kill -9, run."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from app.store import db, rawlog
from tests.simproc import free_port

from .engineproc import appliance, running_engine, spawn, status, stop, tail, wait_for

pytestmark = pytest.mark.slow

TABLES = ("trades", "tops", "marks", "book_snapshots")
KINDS = ("aggTrade", "depth20@100ms", "bookTicker", "markPrice@1s")


def _market_files(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "market").glob("market_*.db"))


def _counts(data_dir: Path) -> dict[str, int]:
    counts = dict.fromkeys((*TABLES, "frames"), 0)
    for path in _market_files(data_dir):
        conn = db.connect(path, readonly=True)
        if conn.execute("PRAGMA user_version").fetchone()[0] == 0:
            conn.close()  # just created: the writer has not migrated it yet
            continue
        for table in TABLES:
            counts[table] += conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        counts["frames"] += conn.execute(
            "SELECT coalesce(sum(frames), 0) FROM raw_blocks"
        ).fetchone()[0]
        conn.close()
    return counts


def _streams_live(data_dir: Path) -> bool:
    from app import ctl

    health = ctl.request(data_dir / "control.sock", "health", actor="test")["result"]["streams"]
    wanted = {f"{s}@{k}" for s in ("btcusdt", "ethusdt") for k in KINDS}
    live = {name for name, h in health.items() if h.get("messages", 0) > 0}
    return wanted <= live


def test_engine_receives_all_streams_and_records_them(sim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "data"
    log = tmp_path / "engine.log"
    with running_engine(
        data, sim.rest_url, sim.ws_url, "--symbols", "btcusdt,ethusdt", log=log
    ) as proc:
        wait_for(
            "all four stream types for both symbols", lambda: _streams_live(data), 30, proc, log
        )
        wait_for("rows in every table", lambda: all(_counts(data).values()), 30, proc, log)
        st = status(data)
        assert st["mode"] == "paper" and st["state"] == "running"
        assert st["recorder"]["recording"] and st["alarms"] == []
    counts = _counts(data)
    # Every recorded raw frame reads back, in receive order, from the week's file.
    frames = [f for path in _market_files(data) for f in rawlog.iter_frames(path)]
    assert len(frames) == counts["frames"] > 0
    assert all(a[0] <= b[0] for a, b in zip(frames, frames[1:], strict=False))
    assert b'"stream":"btcusdt@aggTrade"' in b"".join(f[1] for f in frames)


def test_kill_9_loses_no_committed_row_and_files_stay_sound(sim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "data"
    log = tmp_path / "engine.log"
    urls = (sim.rest_url, sim.ws_url)
    with running_engine(data, *urls, log=log) as proc:
        from app import ctl

        assert ctl.request(data / "control.sock", "pause", actor="test:kill9")["ok"]
        wait_for("recorded rows", lambda: _counts(data)["frames"] > 200, 30, proc, log)
        before = _counts(data)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    after = _counts(data)
    for name, count in before.items():
        assert after[name] >= count, (
            f"{name}: {count} committed rows before kill -9, {after[name]} after"
        )
    for path in [*_market_files(data), data / "trading.db"]:
        assert db.integrity_ok(path) == (True, "ok"), path
    # The restarted engine opens the same files, keeps its persisted pause, and records on.
    with running_engine(data, *urls, log=log) as proc:
        assert status(data)["state"] == "paused"
        wait_for(
            "recording to continue",
            lambda: _counts(data)["frames"] > after["frames"],
            30,
            proc,
            log,
        )
        journal = ctl.request(data / "control.sock", "journal", {"limit": 50}, actor="test")[
            "result"
        ]
        assert any(j["cmd"] == "pause" and j["actor"].startswith("test:kill9") for j in journal)


def test_kill_switch_persists_until_resume(sim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "data"
    urls = (sim.rest_url, sim.ws_url)
    with running_engine(data, *urls):
        out = subprocess.run(
            appliance(data, "ctl", "kill", "reason=test"),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 0, out.stderr
        assert status(data)["state"] == "halted"
    with running_engine(data, *urls):
        st = status(data)
        assert (st["state"], st["halt_reason"]) == ("halted", "test")
        out = subprocess.run(
            appliance(data, "ctl", "resume"), capture_output=True, text=True, timeout=30
        )
        assert out.returncode == 0 and status(data)["state"] == "running"
        bad = subprocess.run(
            appliance(data, "ctl", "no-such"), capture_output=True, text=True, timeout=30
        )
        # Refused by ctl itself (the contract has no such command), before any request.
        assert bad.returncode == 2 and "unknown command 'no-such'" in bad.stderr


def test_ctl_without_engine_says_so(tmp_path: Path) -> None:
    out = subprocess.run(
        appliance(tmp_path, "ctl", "status"), capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 2 and "engine not running" in out.stderr


def test_run_restarts_a_killed_child_and_stops_all(tmp_path: Path) -> None:
    data = tmp_path / "data"
    log = tmp_path / "run.log"
    port = free_port()
    proc = spawn(appliance(data, "run", "--sim-port", str(port), "--seed", "3"), log)
    try:
        first = wait_for("the engine under run", lambda: status(data)["pid"], 60, proc, log)
        wait_for("market data", lambda: status(data)["messages"] > 0, 30, proc, log)
        os.kill(first, signal.SIGKILL)
        second = wait_for(
            "a restarted engine", lambda: (p := status(data)["pid"]) != first and p, 60, proc, log
        )
        assert second != first
        wait_for("market data again", lambda: status(data)["messages"] > 0, 30, proc, log)
    finally:
        code = stop(proc, timeout=30)
    assert code == 0, tail(log)
    assert "engine exited with -9" in log.read_text()
    assert not (data / "control.sock").exists()  # the engine stopped cleanly
    # And so did the simulator: refused at once (a timeout would mean something still holds it).
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=10).close()


def test_engine_speaks_sd_notify(sim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """READY once the control socket listens, then WATCHDOG pings, as systemd expects."""
    data = tmp_path / "data"
    log = tmp_path / "engine.log"
    notify = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify))
    sock.settimeout(30)
    env = {"NOTIFY_SOCKET": str(notify), "WATCHDOG_USEC": "1000000"}
    with log.open("ab") as handle:
        proc = subprocess.Popen(
            appliance(data, "engine", "--rest-url", sim.rest_url, "--ws-url", sim.ws_url),
            env={**os.environ, **env},
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    try:
        messages: list[str] = []
        while not (
            any("WATCHDOG=1" in m for m in messages)
            and any(m.startswith("STATUS=paper running;") for m in messages)
        ):
            messages.append(sock.recv(4096).decode())
        ready = next(i for i, m in enumerate(messages) if m.startswith("READY=1"))
        assert ready < next(i for i, m in enumerate(messages) if "WATCHDOG=1" in m)
        assert (data / "control.sock").exists()
    finally:
        stop(proc)
        sock.close()
    assert proc.returncode == 0, tail(log)
