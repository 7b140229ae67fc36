"""The command contract against the real engine process: every command a client can send is
handled, every reply has the declared shape, read-only commands are not journalled, and settings
are validated, applied, journalled and kept across a restart."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from app import contract, ctl
from app.engine.onnxproto import read_header, with_metadata
from app.node.engine import EXIT_RESTART
from tests.handlers import call_engine
from tests.integration.engineproc import REPO, appliance, spawn, status, stop, tail, wait_for

pytestmark = pytest.mark.slow


def _engine(data: Path, sim: Any, log: Path, config: Path | None = None) -> Any:
    top = ["--config", str(config)] if config else []
    urls = ["--rest-url", sim.rest_url, "--ws-url", sim.ws_url]
    proc = spawn([*appliance(data), *top, "engine", *urls], log)
    wait_for("the control socket", lambda: status(data), 30, proc, log)
    return proc


def test_every_command_is_handled_with_the_declared_shape(sim: Any, tmp_path: Path) -> None:
    data, log = tmp_path / "data", tmp_path / "engine.log"
    sock = data / "control.sock"
    proc = _engine(data, sim, log)
    try:
        listed = call_engine(sock, contract.HELP)
        assert {c.name for c in listed} == set(contract.COMMANDS)
        assert {c.name: c.args for c in listed}["kill"] == {"reason": "str = 'kill switch'"}
        # Every read-only command answers, and the client could convert what it answered.
        read_only = [
            s for s in contract.COMMANDS.values() if not s.changes and s.args is contract.NoArgs
        ]
        assert len(read_only) == 7
        for spec in read_only:
            call_engine(sock, spec)
        wait_for("a model", lambda: call_engine(sock, contract.STATUS).trader.model, 60, proc, log)
        call_engine(sock, contract.PAUSE)
        journal = call_engine(sock, contract.JOURNAL, contract.JournalArgs(limit=100))
        assert [j.cmd for j in journal] == ["pause"]  # none of the reads
        assert journal[0].actor.startswith("test:contract (uid ")
        wrong = ctl.request(sock, "journal", {"limit": "many"})
        assert wrong == {
            "id": wrong["id"],
            "ok": False,
            "error": "bad arguments for 'journal': Expected `int`, got `str` - at `$.limit`",
        }
    finally:
        stop(proc)


def _serves_btcusdt_only(tmp: Path) -> Path:
    raw = (REPO / "models" / "default.onnx").read_bytes()
    meta = {**dict(read_header(raw).metadata), "symbols": "btcusdt", "model_version": "btc-only"}
    path = tmp / "btc-only.onnx"
    path.write_bytes(with_metadata(raw, meta))
    return path


def test_settings_are_checked_saved_and_kept_across_a_restart(sim: Any, tmp_path: Path) -> None:
    data, log = tmp_path / "data", tmp_path / "engine.log"
    sock = data / "control.sock"
    toml = tmp_path / "appliance.toml"
    toml.write_text(
        f'[feed]\nsymbols = "btcusdt"\n[model]\npath = "{_serves_btcusdt_only(tmp_path)}"\n'
    )
    proc = _engine(data, sim, log, toml)
    try:
        view = {v.key: v for v in call_engine(sock, contract.SETTINGS_GET).settings}
        assert (view["feed.symbols"].value, view["feed.symbols"].source) == ("btcusdt", "toml")
        assert (view["risk.losing_streak"].value, view["risk.losing_streak"].source) == (
            "3",
            "default",
        )
        change = contract.SettingsSetArgs(risk=contract.RiskLimits(losing_streak=5))
        done = call_engine(sock, contract.SETTINGS_SET, change)
        assert done.changed == [contract.SettingChange(key="risk.losing_streak", old="3", new="5")]
        assert not done.restarting
        wait_for("a model", lambda: call_engine(sock, contract.STATUS).trader.model, 60, proc, log)
        refused = ctl.request(
            sock, "settings.set", {"symbols": ["btcusdt", "ethusdt"]}, actor="test"
        )
        assert not refused["ok"]
        assert "ethusdt: the active model (btc-only) does not trade it" in refused["error"]
        unknown = ctl.request(sock, "settings.set", {"symbols": ["zzzusdt"]}, actor="test")
        assert "zzzusdt: not a symbol the exchange trades" in unknown["error"]
        out_of_bounds = ctl.request(sock, "settings.set", {"risk": {"max_leverage": "11"}})
        assert "risk.max_leverage: 11 is outside [0.1, 10]" in out_of_bounds["error"]
    finally:
        assert stop(proc) == 0
    proc = _engine(data, sim, log, toml)
    try:
        view = {v.key: v for v in call_engine(sock, contract.SETTINGS_GET).settings}
        assert (view["risk.losing_streak"].value, view["risk.losing_streak"].source) == (
            "5",
            "saved",
        )
        journal = call_engine(sock, contract.JOURNAL, contract.JournalArgs(limit=100))
        sets = [j for j in journal if j.cmd == "settings.set"]
        assert [j.ok for j in sets] == [False, False, False, True]  # newest first
        assert sets[-1].result["changed"] == [{"key": "risk.losing_streak", "old": "3", "new": "5"}]
    finally:
        stop(proc)


def test_a_symbol_change_restarts_the_engine_on_the_new_symbols(sim: Any, tmp_path: Path) -> None:
    data, log = tmp_path / "data", tmp_path / "engine.log"
    sock = data / "control.sock"
    proc = _engine(data, sim, log)
    try:
        assert status(data)["symbols"] == ["btcusdt", "ethusdt"]
        done = call_engine(
            sock, contract.SETTINGS_SET, contract.SettingsSetArgs(symbols=["BTCUSDT"])
        )
        assert done.restarting
        assert done.changed == [
            contract.SettingChange(key="feed.symbols", old="btcusdt,ethusdt", new="btcusdt")
        ]
        # The engine stops by itself for its supervisor (systemd, `appliance run`) to restart.
        assert proc.wait(30) == EXIT_RESTART, tail(log)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the engine did not restart:\n{tail(log)}") from None
    finally:
        stop(proc)
    proc = _engine(data, sim, log)
    try:
        assert status(data)["symbols"] == ["btcusdt"]
        streams = wait_for(
            "the new subscription",
            lambda: call_engine(sock, contract.HEALTH).streams,
            30,
            proc,
            log,
        )
        assert {name.split("@")[0] for name in streams} == {"btcusdt"}
        view = {v.key: v for v in call_engine(sock, contract.SETTINGS_GET).settings}
        assert view["feed.symbols"].source == "saved"
    finally:
        stop(proc)
