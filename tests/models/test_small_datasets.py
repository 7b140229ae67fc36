"""Small or degenerate datasets end in one clear line, never a traceback."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from app.cli import main
from app.models.dataset import DatasetSpec, SymbolSeries, label, write

pytest.importorskip("torch")


@pytest.mark.parametrize(
    ("minutes", "label", "expected"),
    [
        (2, "triple", "no symbol has enough bars for one window and its horizon"),
        (6, "triple", "too few usable windows"),
        (2, "horizon", "no symbol has enough bars for one window and its horizon"),
    ],
)
def test_train_on_a_small_dataset_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], minutes: int, label: str, expected: str
) -> None:
    data = tmp_path / "small.csv"
    assert main(["dataset", "--sim-minutes", str(minutes), "--out", str(data)]) == 0
    capsys.readouterr()
    code = main(["train", "--data", str(data), "--out", str(tmp_path / "m.onnx"),
                 "--label", label, "--epochs", "1", "--no-backtest"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("appliance: ") and expected in err
    assert "Traceback" not in err
    assert not (tmp_path / "m.onnx").exists()


def test_dataset_with_no_bars_says_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["dataset", "--sim-minutes", "0", "--out", str(tmp_path / "empty.csv")])
    err = capsys.readouterr().err
    assert code == 2
    assert "no bar closes" in err and "Traceback" not in err


def _synthetic(path: Path, closes: np.ndarray, x: np.ndarray) -> None:
    """A dataset file and sidecar as ``appliance dataset`` writes them, from given closes and
    feature rows (one symbol, 1-second bars)."""
    spec = DatasetSpec(features=("logret_1", "rsi_14"), horizon_bars=5, threshold_bps=1.0)
    s = SymbolSeries("BTCUSDT", 0, list(range(1000, 1000 + 1000 * len(closes), 1000)))
    s.closes, s.rows, s.gap = closes.tolist(), x.tolist(), [False] * len(closes)
    write(path, [label(s, spec)], spec)
    path.with_name(path.name + ".json").write_text(json.dumps({"spec": asdict(spec)}))


def _train_error(tmp_path: Path, data: Path, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    out = str(tmp_path / "m.onnx")
    code = main(["train", "--data", str(data), "--out", out, "--window", "4",
                 "--epochs", "1", "--walk-forward", "0", "--no-backtest"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("appliance: ") and "Traceback" not in err, err
    assert not (tmp_path / "m.onnx").exists()
    return err


def test_one_class_only_says_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(1)
    closes = 100.0 * np.exp(np.arange(600) * 1e-3)  # always up: every label is 1
    _synthetic(tmp_path / "up.csv", closes, rng.normal(size=(600, 2)))
    err = _train_error(tmp_path, tmp_path / "up.csv", capsys)
    assert "the train split holds one class only (every label is 1" in err


def test_constant_features_say_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(2)
    closes = 100.0 * np.exp(np.cumsum(rng.normal(scale=1e-3, size=600)))
    _synthetic(tmp_path / "flat.csv", closes, np.full((600, 2), 0.5))
    err = _train_error(tmp_path, tmp_path / "flat.csv", capsys)
    assert "every feature is constant over the training split (logret_1, rsi_14)" in err


def test_missing_or_foreign_dataset_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "does not exist" in _train_error(tmp_path, tmp_path / "none.csv", capsys)
    (tmp_path / "bare.csv").write_text("a,b\n1,2\n")
    assert "has no sidecar bare.csv.json" in _train_error(tmp_path, tmp_path / "bare.csv", capsys)
    (tmp_path / "bare.csv.json").write_text("{}")
    err = _train_error(tmp_path, tmp_path / "bare.csv", capsys)
    assert "is not one appliance dataset wrote" in err
