"""A real engine's state archived while it trades on the simulator, the data directory wiped,
``appliance backup restore FILE``, and the engine started again: settings, journal, model store
and panel state are back, and the engine is paused."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from app import ctl
from app.admin.paneldb import PANEL_MIGRATIONS
from app.store import db

from .engineproc import REPO, appliance, running_engine, status, wait_for

pytestmark = pytest.mark.slow


def _ctl(data: Path, cmd: str, **args: object) -> dict[str, object]:
    reply = ctl.request(data / "control.sock", cmd, args, actor="test")
    assert reply["ok"], reply
    result: dict[str, object] = reply["result"]
    return result


def _cli(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        appliance(data, *args), cwd=REPO, capture_output=True, text=True, check=False, timeout=120
    )


def test_restore_through_a_real_engine_process(sim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "data"
    log = tmp_path / "engine.log"
    conn = db.connect(data / "panel.db")  # the panel's database, as the panel leaves it
    db.migrate(conn, PANEL_MIGRATIONS)
    conn.execute("INSERT INTO settings VALUES ('webhook', '\"http://127.0.0.1:9/h\"', 1)")
    conn.close()
    (data / "secrets").mkdir(mode=0o700)
    (data / "secrets" / "admin-password.hash").write_text("$argon2id$restored\n")
    with running_engine(data, sim.rest_url, sim.ws_url, log=log):
        _ctl(data, "settings.set", risk={"max_leverage": "2.5"})
        assert status(data)["state"] == "running"
        done = _cli(data, "backup", "create")  # while the engine writes: online backup API
        assert done.returncode == 0, done.stderr
        archive_path = Path(json.loads(done.stdout)["backup"])
        # The engine refuses to be restored under its feet.
        refused = _cli(data, "backup", "restore", str(archive_path))
        assert refused.returncode == 2 and "engine is running" in refused.stderr
    for path in data.iterdir():  # wiped, as a freshly flashed appliance with its backups copied
        if path.name != "backups":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    done = _cli(data, "backup", "restore", str(archive_path))
    assert done.returncode == 0, done.stderr
    assert "trading.db" in json.loads(done.stdout)["replaced"]
    with running_engine(data, sim.rest_url, sim.ws_url, log=log):
        st = wait_for("status", lambda: status(data), 30, None, log)
        assert st["state"] == "paused"
        settings = {s["key"]: s for s in _ctl(data, "settings.get")["settings"]}  # type: ignore[union-attr]
        assert settings["risk.max_leverage"]["value"] == "2.5"
        assert settings["risk.max_leverage"]["source"] == "saved"
        journal = _ctl(data, "journal", limit=100)
        cmds = [j["cmd"] for j in journal]  # type: ignore[union-attr]
        assert "settings.set" in cmds and "backup.restore:applied" in cmds
    conn = sqlite3.connect(data / "panel.db")
    assert conn.execute("SELECT value FROM settings").fetchone() == ('"http://127.0.0.1:9/h"',)
    conn.close()
    assert (data / "secrets" / "admin-password.hash").read_text() == "$argon2id$restored\n"
    assert (data / "models").is_dir()
