"""The decision loop in a real engine process against the real simulator."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from app import ctl

from .engineproc import REPO, appliance, running_engine, spawn, status, stop, wait_for

pytestmark = pytest.mark.slow

onnx = pytest.importorskip("onnx")


def _always_long(tmp_path: Path) -> Path:
    """The default model with its long threshold at 0: it signals long on every decision.

    Only the contract's threshold changes; the graph and its golden vectors stay valid, so the
    engine loads it through the same checks as any upload.
    """
    model = onnx.load(str(REPO / "models" / "default.onnx"))
    for prop in model.metadata_props:
        if prop.key == "long_threshold":
            prop.value = "0.001"
        elif prop.key == "short_threshold":
            prop.value = "0.0"
        elif prop.key == "model_version":
            prop.value = "always-long-test"
    path = tmp_path / "always_long.onnx"
    onnx.save(model, str(path))
    return path


def test_default_model_decides_within_60s(sim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "data"
    log = tmp_path / "engine.log"
    with running_engine(data, sim.rest_url, sim.ws_url, log=log) as proc:
        st = wait_for(
            "a first decision",
            lambda: (s := status(data))["trader"]["decisions"] and s,
            60,
            proc,
            log,
        )
        trader = st["trader"]
        assert trader["model"]["model_version"].startswith("default-")
        assert len(trader["model"]["sha256"]) == 64
        assert set(trader["last"]) <= {"BTCUSDT", "ETHUSDT"} and trader["last"]
        assert 0 <= next(iter(trader["last"].values()))["prob"] <= 1
        assert st["latency_us"]["n"] > 0


def test_paper_trades_when_the_model_signals(sim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "data"
    log = tmp_path / "engine.log"
    cfg = tmp_path / "appliance.toml"
    cfg.write_text(f'[model]\npath = "{_always_long(tmp_path)}"\n')
    args = ("--symbols", "btcusdt")
    urls = ("--rest-url", sim.rest_url, "--ws-url", sim.ws_url)
    proc = spawn([*appliance(data), "--config", str(cfg), "engine", *urls, *args], log)
    try:
        st = wait_for(
            "a paper position", lambda: (s := status(data))["positions"] and s, 90, proc, log
        )
        assert st["trader"]["model"]["model_version"] == "always-long-test"
        assert st["trader"]["orders"] >= 1
        assert float(st["positions"]["BTCUSDT"]) > 0
        assert float(st["fees"]) > 0
        # Paused: the next signals place no order.
        assert ctl.request(data / "control.sock", "pause", actor="test")["ok"]
        orders_then = status(data)["trader"]["orders"]
        wait_for(
            "a skipped decision",
            lambda: status(data)["trader"]["skipped"].get("paused", 0) > 0,
            30,
            proc,
            log,
        )
        assert status(data)["trader"]["orders"] == orders_then
        # The kill switch flattens the position.
        reply = ctl.request(data / "control.sock", "kill", {"reason": "test"}, actor="test")
        assert reply["ok"] and reply["result"]["flatten_orders"] == 1
        wait_for("a flat book", lambda: not status(data)["positions"], 30, proc, log)
    finally:
        stop(proc)
    conn = sqlite3.connect(f"file:{data / 'trading.db'}?mode=ro", uri=True)
    fills = conn.execute("SELECT side, qty, price, fee FROM fills ORDER BY rowid").fetchall()
    assert len(fills) >= 2 and fills[0][0] == "BUY" and fills[-1][0] == "SELL"
    purposes = [r[0] for r in conn.execute("SELECT purpose FROM orders ORDER BY rowid")]
    conn.close()
    assert purposes[0] == "entry" and purposes[-1] == "kill"
    # The kill switch survives a restart.
    with running_engine(data, sim.rest_url, sim.ws_url, *args, log=log):
        assert status(data)["state"] == "halted"
        assert status(data)["breakers"][0]["code"] == "kill_switch"
