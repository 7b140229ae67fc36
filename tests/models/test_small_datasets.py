"""Small or degenerate datasets end in one clear line, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.cli import main

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
