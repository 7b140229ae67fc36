"""``appliance train --normalize rolling:N``: the model declares a rolling z-score, its golden
cases carry the raw history, and the engine reproduces them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.cli import main
from app.engine.inference import load_model
from app.engine.model_contract import RollingZScore
from app.errors import ConfigError
from app.models.normalize import parse_normalize, rolling_zscore
from app.models.validate import validate
from tests.engine.test_rolling_zscore import reference


def test_parse_normalize() -> None:
    assert parse_normalize("fixed", 5.0) is None
    assert parse_normalize("rolling:500", 5.0) == RollingZScore(500, 5.0)
    for bad in ("rolling", "rolling:1", "rolling:-5", "rolling:x", "ewma:5", "rolling:100001"):
        with pytest.raises(ConfigError, match="use 'fixed' or 'rolling:N'"):
            parse_normalize(bad, 5.0)


def test_training_rows_are_the_engines() -> None:
    x = np.cumsum(np.random.default_rng(2).normal(size=(200, 3)), axis=0)
    x[50, 2] = np.nan
    got = rolling_zscore(x, RollingZScore(20))
    assert np.isnan(got[:19]).all() and np.isnan(got[50:70]).all()
    np.testing.assert_allclose(got[19:50], reference(x[:50], 20)[19:], atol=1e-6)
    np.testing.assert_allclose(got[70:], reference(x[51:], 20)[19:], atol=1e-6)


@pytest.mark.slow
def test_train_with_a_rolling_zscore(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch", reason="training needs the train extra")
    data, out = tmp_path / "ds.csv", tmp_path / "m.onnx"
    assert main(["dataset", "--sim-minutes", "12", "--horizon-bars", "20",
                 "--threshold-bps", "1", "--out", str(data)]) == 0  # fmt: skip
    capsys.readouterr()
    code = main(["train", "--data", str(data), "--out", str(out), "--window", "8",
                 "--hidden", "8", "--epochs", "2", "--walk-forward", "0",
                 "--normalize", "rolling:30", "--no-backtest"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    model = load_model(out)  # golden cases reproduced through the engine's normalisation
    c = model.contract
    assert c.scaler == RollingZScore(30, 5.0)
    assert c.window_shape == (8 + 29, len(c.features))
    assert all(len(case.input) == 37 for case in c.golden.cases)
    report = validate(out)  # the sandboxed validator, as an upload is checked
    assert report.ok, report.problems


def test_train_refuses_a_bad_normalize(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")  # without it, `train` stops first at "training needs torch"
    code = main(["train", "--data", str(tmp_path / "none.csv"), "--out", str(tmp_path / "m"),
                 "--normalize", "rolling:1"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "use 'fixed' or 'rolling:N'" in err and "Traceback" not in err
