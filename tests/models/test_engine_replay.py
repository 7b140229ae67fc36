"""A backtest of the engine's own recording decides and fills where the engine did, from the first
bar: the engine records the moment its model was loaded and the klines it warmed its risk ATR
from (``app.models.warmup``), and the replay uses both.

The real engine runs against the real simulator with a model that trades at once (the default
graph under thresholds it crosses often); its status gives its decision count and each symbol's
last decision, its database its fills. The replay of its market file must reach the same count at
the same last decisions (same ``prob_up``, same action), make the same fills at the same receive
times, prices and quantities (the quantity is sized on the ATR, so equal quantities are an equal
ATR), and never wait for "atr warming".
"""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from app.engine.inference import load_model
from app.models.backtest import run_backtest
from app.models.replay import recording_inputs, sim_filters
from tests.integration.engineproc import appliance, spawn, status, stop, wait_for
from tests.models.support import variant
from tests.simproc import running_sim

pytestmark = pytest.mark.slow

SYMBOLS = ("BTCUSDT", "ETHUSDT")


def _engine_fills(db: Path, until_ns: int) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(
            "SELECT f.ts_ns, o.symbol, o.side, o.purpose, f.price, f.qty FROM fills f "
            "JOIN orders o USING (client_id) WHERE f.ts_ns <= ? ORDER BY f.id",
            (until_ns,),
        ).fetchall()
    finally:
        conn.close()
    return [
        (ts, sym, side, purpose, Decimal(p), Decimal(q)) for ts, sym, side, purpose, p, q in rows
    ]


def _ready(data: Path) -> dict[str, Any] | None:
    st = status(data)
    trader = st["trader"]
    if trader["orders"] >= 2 and trader["decisions"] >= 30 and len(trader["last"]) == len(SYMBOLS):
        return st
    return None


@pytest.mark.timeout(300)
def test_a_replay_of_an_engine_recording_reproduces_its_decisions(tmp_path: Path) -> None:
    model_path = variant(tmp_path, "eager", 0.55, 0.45)
    cfg = tmp_path / "appliance.toml"
    cfg.write_text(f'[model]\npath = "{model_path}"\n')
    data, log = tmp_path / "data", tmp_path / "engine.log"
    with running_sim("--seed", "11") as sim:
        urls = ("--rest-url", sim.rest_url, "--ws-url", sim.ws_url)
        engine = spawn([*appliance(data), "--config", str(cfg), "engine", *urls], log)
        try:
            wait_for("the control socket", lambda: status(data), 30, engine, log)
            st = wait_for("decisions and orders", lambda: _ready(data), 180, engine, log)
        finally:
            assert stop(engine) == 0
    trader = st["trader"]
    assert st["recorder"]["dropped_records"] == 0
    assert "atr warming" not in trader["skipped"], trader  # the engine warmed from REST klines
    last = {s: trader["last"][s] for s in SYMBOLS}
    cutoff_ms = max(v["ts_ms"] for v in last.values())

    (market,) = sorted((data / "market").glob("market_*.db"))
    model = load_model(model_path)
    result = run_backtest(
        model, recording_inputs(market), sim_filters([s.lower() for s in SYMBOLS]), SYMBOLS
    )
    assert result.trace.warmups == len(SYMBOLS)
    assert "atr warming" not in result.skipped
    decisions = result.trace.decisions
    # The same number of decisions up to each symbol's last one in the engine's status...
    upto = [d for d in decisions if d.ts_ms <= last[d.symbol]["ts_ms"]]
    assert len(upto) == trader["decisions"], (len(upto), trader["decisions"])
    # ...ending on the same decision: same bar, same probability, same action.
    for symbol, engine_last in last.items():
        mine = [d for d in upto if d.symbol == symbol][-1]
        assert mine.ts_ms == engine_last["ts_ms"]
        assert mine.prob == pytest.approx(engine_last["prob"], abs=1e-6)
        assert mine.action == engine_last["action"]
    # The same fills, at the same receive times, prices and (ATR-sized) quantities.
    until_ns = cutoff_ms * 1_000_000
    engine_fills = _engine_fills(data / "trading.db", until_ns)
    replay_fills = [
        (f.ts_ns, f.symbol, str(f.side), f.purpose, f.price, f.qty)
        for f in result.trace.fills
        if f.ts_ns <= until_ns
    ]
    assert engine_fills, "the engine made no fill: nothing to compare"
    assert replay_fills == engine_fills
