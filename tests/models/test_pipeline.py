"""Labels, datasets, backtests, training and the default-model command, end to end."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from app.engine.inference import load_model
from app.models.backtest import run_backtest
from app.models.dataset import DatasetSpec, build, read
from app.models.labels import horizon_label, triple_barrier
from app.models.replay import (
    ReplayBooks,
    SimSeries,
    load_depth_snapshots,
    recorded_filters,
    recording_events,
    sim_events,
)
from app.models.validate import validate
from tests.models.support import DEFAULT, REFERENCE, ROOT

WS = REFERENCE / "usdm_2021-07-22_ws.jsonl"


def test_labels() -> None:
    closes = np.asarray([100.0, 100.2, 99.7, 100.0, 100.0, 101.0])
    h = horizon_label(closes, 1, 5.0)
    assert h[:5].tolist()[:3] == [1.0, 0.0, 1.0] and np.isnan(h[3]) and np.isnan(h[5])
    label, outcome = triple_barrier(closes, 2, 15.0, 25.0)
    # 0: +20 bps at bar 1 (tp); 1: -50 bps at bar 2 (sl); 3: flat then +100 bps (tp);
    # 4: horizon runs out at the end of the series
    assert outcome.tolist()[:4] == [1.0, -1.0, 1.0, 1.0]
    assert label.tolist()[:4] == [1.0, 0.0, 1.0, 1.0] and np.isnan(outcome[5])


def test_dataset_from_the_reference_recording(tmp_path: Path) -> None:
    out = tmp_path / "ds.csv"
    spec = DatasetSpec(horizon_bars=5)
    summary = build([(str(WS), recording_events(WS))], spec, out)
    assert summary["rows"] > 50
    spec2, parts, meta = read(out)
    assert spec2 == spec and meta["sources"] == [str(WS)]
    ts = [int(line.split(",")[0]) for line in out.read_text().splitlines()[1:]]
    assert ts == sorted(ts)  # strictly by time (then symbol)
    assert {p.symbol for p in parts} == {"SUSHIUSDT", "AKROUSDT", "KEEPUSDT", "CTKUSDT"}


def test_gaps_are_flagged(tmp_path: Path) -> None:
    events = [
        e
        for e in sim_events(SimSeries(("btcusdt",), 2, minutes=2))
        if not 30e9 < e[0] - 1_704_067_200_000_000_000 < 50e9  # the feed drops for 20 s
    ]
    summary = build([("sim", iter(events))], DatasetSpec(horizon_bars=5), tmp_path / "g.csv")
    seg = summary["segments"]["0:BTCUSDT"]
    assert 15 <= seg["gap_bars"] <= 21 and seg["bars"] == 120


def test_backtest_smoke_on_the_reference_recording() -> None:
    books = ReplayBooks(
        load_depth_snapshots(REFERENCE / "usdm_2021-07-22_rest_depth_snapshots.txt")
    )
    filters = recorded_filters(REFERENCE / "usdm_2021-07-22_exchangeInfo.txt")
    result = run_backtest(
        load_model(DEFAULT), recording_events(WS), filters, ("SUSHIUSDT", "CTKUSDT"), books
    )
    assert result.events > 500 and 29 < result.span_s < 31
    assert result.orders == 0  # 30 s: windows and the 1-minute ATR never warm up
    assert all(b.synced for b in books.books.values())


@pytest.mark.slow
def test_backtest_on_a_simulator_series() -> None:
    series = SimSeries(("btcusdt",), 4, minutes=20)
    from app.models.replay import sim_filters

    result = run_backtest(
        load_model(DEFAULT), sim_events(series), sim_filters(["btcusdt"]), ("BTCUSDT",)
    )
    assert result.decisions > 1000 and result.orders > 0
    assert result.final_equity == result.initial_equity + result.pnl
    assert result.fees > 0 and 0 <= result.max_drawdown < 0.1 and 0 < result.exposure <= 1


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["mlp", "gru"])
def test_train_exports_a_valid_model(arch: str, tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="training needs the train extra")
    from app.models.train import TrainConfig, train

    spec = DatasetSpec(horizon_bars=20, threshold_bps=1.0)
    sources = [
        (f"sim{k}", sim_events(SimSeries(("btcusdt",), 10 + k, minutes=8))) for k in range(2)
    ]
    build(sources, spec, tmp_path / "ds.csv")
    spec, parts, meta = read(tmp_path / "ds.csv")
    cfg = TrainConfig(arch=arch, window=8, hidden=8, epochs=3, walk_forward=2)
    result = train(cfg, spec, parts, meta)
    path = tmp_path / f"{arch}.onnx"
    path.write_bytes(result.model)
    model = load_model(path)
    assert model.contract.golden.tolerance == 1e-5
    assert result.figures["torch_vs_onnxruntime_max_diff"] < 1e-5
    assert len(result.figures["walk_forward"]) == 2
    assert {"auc", "brier", "long_precision"} <= set(result.figures["test"])
    report = validate(path)
    assert report.ok, report.problems


@pytest.mark.slow
def test_one_command_regenerates_the_default_model(tmp_path: Path) -> None:
    out = tmp_path / "default.onnx"
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "train", "--default", "--seed", "3",
         "--segment-minutes", "10", "--out", str(out)],
        capture_output=True, text=True, timeout=110, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    report = validate(out)
    assert report.ok, report.problems
    model = load_model(out)
    worst = max(
        abs(model.predict(np.asarray(c.input)) - c.output) for c in model.contract.golden.cases
    )
    assert worst <= 1e-5
    assert json.loads(model.contract.metrics)["test"]["n"] > 0
    assert list(itertools.islice(iter(model.contract.features), 1)) == ["logret_1"]
