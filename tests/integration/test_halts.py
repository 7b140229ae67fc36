"""Halts against the real engine and simulator: a stalled feed stops entries and raises an alarm
until data flows again; a kill on a 100 % full file system is saved before it is acknowledged."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app import ctl
from tests.integration.engineproc import running_engine, status, wait_for

pytestmark = pytest.mark.slow


def _stale(st: dict[str, Any]) -> set[str]:
    return {b["symbol"] for b in st["blockers"] if b["code"] == "stale_feed"}


def _silent(st: dict[str, Any]) -> set[str]:
    """Symbols with a stream that is stale or has not spoken yet."""
    return {b["symbol"] for b in st["blockers"] if "message" in b["message"] and b["symbol"]}


def _alarms(st: dict[str, Any]) -> set[str]:
    return {a["kind"] for a in st["alarms"]}


def test_a_stalled_feed_halts_entries_until_it_flows_again(sim: Any, tmp_path: Path) -> None:
    data, log = tmp_path / "data", tmp_path / "engine.log"
    with running_engine(data, sim.rest_url, sim.ws_url, log=log) as proc:
        wait_for("every stream flowing", lambda: not _silent(status(data)), 30, proc, log)
        stalled = time.monotonic()
        sim.set_faults(stall=True)
        st = wait_for("the halt", lambda: _stale(s := status(data)) and s, 30, proc, log)
        halted_s = time.monotonic() - stalled
        assert not st["trading"]
        blocker = next(b for b in st["blockers"] if b["code"] == "stale_feed")
        assert "no message for" in blocker["message"]
        wait_for(
            "the alarm",
            lambda: {"halt:stale_feed:btcusdt", "halt:stale_feed:ethusdt"} <= _alarms(status(data)),
            10,
            proc,
            log,
        )
        alarmed_s = time.monotonic() - stalled
        time.sleep(max(0.0, 12 - alarmed_s))  # past the feed's own reconnect (10 s of silence)
        assert _stale(status(data)) == {"btcusdt", "ethusdt"}
        flowing = time.monotonic()
        sim.set_faults(stall=False)
        wait_for("trading again", lambda: not _stale(status(data)), 30, proc, log)
        resumed_s = time.monotonic() - flowing
        wait_for(
            "the alarm cleared",
            lambda: not {k for k in _alarms(status(data)) if k.startswith("halt:stale")},
            10,
            proc,
            log,
        )
        journal = ctl.request(data / "control.sock", "journal", {"limit": 5})["result"]
        assert journal == []  # halts are alarms, not commands
    # The figures the closing note quotes (pytest -s shows them).
    print(f"stall -> halt {halted_s:.1f} s, -> alarm {alarmed_s:.1f} s; flow -> {resumed_s:.1f} s")
    # Not before feed.halt_after_s (5 s) counted from the last message, which came just before.
    assert halted_s >= 4.0


@contextlib.contextmanager
def _small_fs(root: Path, size_mb: int) -> Iterator[Path]:
    mount = root / "small"
    mount.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(mount)], check=True
    )
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(fs: Path) -> Path:
    """Fill ``fs`` to the last byte."""
    filler = fs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    return filler


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root (CI runs as root)")
def test_a_kill_on_a_full_disk_is_saved_before_it_answers(sim: Any, tmp_path: Path) -> None:
    with _small_fs(tmp_path, 64) as fs:
        data, log = fs / "data", tmp_path / "engine.log"
        with running_engine(data, sim.rest_url, sim.ws_url, log=log) as proc:
            wait_for("a model", lambda: status(data)["trader"]["model"], 60, proc, log)
            assert (data / ".trading.db.reserve").stat().st_size == 8 * 1024 * 1024
            filler = _fill(fs)
            assert os.statvfs(fs).f_bavail == 0
            reply = ctl.request(data / "control.sock", "kill", {"reason": "disk full"}, timeout=20)
            assert reply["ok"], reply
            assert reply["result"]["persisted"] is True and reply["result"]["warning"] == ""
            assert not (data / ".trading.db.reserve").exists()  # given to SQLite
            filler.unlink()
        # After a restart (space back), the kill switch still holds.
        with running_engine(data, sim.rest_url, sim.ws_url, log=log) as proc:
            st = status(data)
            assert (st["state"], st["halt_reason"]) == ("halted", "disk full")
            assert st["blockers"][0]["code"] == "kill_switch"
            # The reserve is made again once there is room (at start here).
            assert (data / ".trading.db.reserve").exists()
