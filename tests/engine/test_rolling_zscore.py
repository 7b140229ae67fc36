"""The rolling z-score normalisation: the streaming statistics against numpy, the warm-up rule,
and a model declaring it that loads, reproduces its golden cases and decides in a backtest."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from app.engine.inference import RollingZ, WindowBuffer, load_model
from app.engine.model_contract import Golden, GoldenCase, RollingZScore, to_metadata

onnx = pytest.importorskip("onnx", reason="building test graphs needs the onnx package")

from tests.engine.test_model_load import tiny_contract, tiny_model_bytes  # noqa: E402


def reference(x: np.ndarray, n: int, clip: float | None = None) -> np.ndarray:
    """numpy's rolling z-score: row t against rows t-n+1..t (population std), NaN before."""
    z = np.full(x.shape, np.nan)
    for t in range(n - 1, len(x)):
        seg = x[t - n + 1 : t + 1]
        z[t] = (x[t] - seg.mean(axis=0)) / seg.std(axis=0)
    return z if clip is None else np.clip(z, -clip, clip)


def stream(x: np.ndarray, n: int, clip: float | None = None) -> np.ndarray:
    """The engine's streaming z-scores of each row (float32, as the window stores them)."""
    rz = RollingZ(n, x.shape[1], clip)
    out = np.full(x.shape, np.nan, dtype=np.float32)
    view = out.data.cast("B").cast("f")
    for t, row in enumerate(x.tolist()):
        rz.push([None if math.isnan(v) else v for v in row], view, t * x.shape[1])
    return out.astype(np.float64)


@pytest.mark.parametrize(
    ("n", "level"),
    [(5, 0.0), (50, 0.0), (500, 0.0), (50, 60_000.0)],  # a price level: cancellation
)
def test_streaming_equals_numpy(n: int, level: float) -> None:
    rng = np.random.default_rng(n)
    steps = rng.normal(size=(3 * n + 17, 3)) * np.asarray([1e-4, 1.0, 30.0])
    x = level + np.cumsum(steps, axis=0)  # random walks: the statistics move
    got, want = stream(x, n), reference(x, n)
    assert np.isnan(got[: n - 1]).all() and np.isfinite(got[n - 1 :]).all()
    np.testing.assert_allclose(got[n - 1 :], want[n - 1 :], rtol=0, atol=1e-6)


def test_clip_and_constant_features() -> None:
    x = np.zeros((40, 2))
    x[:, 0] = np.arange(40.0) ** 2
    x[35, 0] = 1e6  # a spike, clipped
    x[:, 1] = 7.0  # constant: z = 0, not 0/0
    got = stream(x, 20, clip=3.0)  # one spike in 20 rows: z = sqrt(19) before the clip
    want = reference(x[:, :1], 20, clip=3.0)
    np.testing.assert_allclose(got[19:, 0], want[19:, 0], atol=1e-6)
    assert got[35, 0] == 3.0
    assert (got[19:, 1] == 0.0).all()


def test_a_missing_value_restarts_the_warm_up() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(30, 2))
    x[12, 1] = np.nan
    got = stream(x, 5)
    assert np.isfinite(got[4:12]).all()
    assert np.isnan(got[12:17]).all()  # the missing row and the next 4: warming again
    np.testing.assert_allclose(got[17:], reference(x[13:], 5)[4:], atol=1e-6)


def test_window_warm_up_is_n_plus_window_minus_one() -> None:
    w = WindowBuffer(3, 2, RollingZScore(5))
    assert w.needed == 7
    rows = np.random.default_rng(4).normal(size=(10, 2))
    ready = [w.push(r) for r in rows.tolist()]
    assert ready == [False] * 6 + [True] * 4
    assert w.filled == 7
    np.testing.assert_allclose(w.view(), reference(rows, 5)[-3:], atol=1e-6)
    w.push([None, 1.0])
    assert not w.ready and w.filled == 0
    w.clear()
    assert w.filled == 0


def rolling_contract(n: int = 6, clip: float | None = 4.0, **changes: object) -> object:
    """The tiny model (sigmoid of the window's mean) declaring a rolling z-score."""
    c = tiny_contract(**changes)
    rng = np.random.default_rng(9)
    cases = []
    for k in range(3):
        raw = rng.normal(size=(c.window + n - 1, len(c.features))) * (k + 1) + 10.0 * k
        z = reference(raw, n, clip)[-c.window :].astype(np.float32)
        p = float(1.0 / (1.0 + np.exp(-np.mean(z.astype(np.float64)))))
        cases.append(GoldenCase(tuple(tuple(float(v) for v in row) for row in raw), p))
    return dataclasses.replace(c, scaler=RollingZScore(n, clip), golden=Golden(1e-5, tuple(cases)))


def test_a_model_declaring_it_loads_and_reproduces_its_golden_cases(tmp_path: Path) -> None:
    c = rolling_contract()
    path = tmp_path / "rolling.onnx"
    path.write_bytes(tiny_model_bytes(to_metadata(c)))  # type: ignore[arg-type]
    model = load_model(path)
    assert model.contract.scaler == RollingZScore(6, 4.0)
    window = model.new_window()
    for row in c.golden.cases[1].input:  # type: ignore[attr-defined]
        window.push(row)
    assert window.ready
    assert abs(model.bind(window)() - c.golden.cases[1].output) < 1e-5  # type: ignore[attr-defined]


def test_golden_cases_are_checked_through_the_normalisation(tmp_path: Path) -> None:
    c = rolling_contract()
    wrong = dataclasses.replace(c, scaler=RollingZScore(6, 1.0))  # type: ignore[type-var]
    path = tmp_path / "wrong.onnx"
    path.write_bytes(tiny_model_bytes(to_metadata(wrong)))
    with pytest.raises(Exception, match="golden mismatch"):
        load_model(path)


@pytest.mark.slow
def test_a_model_declaring_it_decides_in_a_backtest(tmp_path: Path) -> None:
    from app.models.backtest import run_backtest
    from app.models.dataset import DEFAULT_FEATURES
    from app.models.replay import SimSeries, sim_events, sim_filters

    n, window = 30, 4
    c = rolling_contract(
        n,
        5.0,
        features=DEFAULT_FEATURES,
        long_threshold=0.51,
        short_threshold=0.49,
    )
    path = tmp_path / "rolling.onnx"
    path.write_bytes(
        tiny_model_bytes(
            to_metadata(c),  # type: ignore[arg-type]
            input_shape=(1, window, len(DEFAULT_FEATURES)),
        )
    )
    model = load_model(path)
    result = run_backtest(
        model,
        sim_events(SimSeries(("btcusdt",), 5, minutes=3)),
        sim_filters(["btcusdt"]),
        ("BTCUSDT",),
    )
    # 180 one-second bars; the features warm up (~20 bars), then n + window - 1 = 33 more.
    assert 60 < result.decisions <= 180 - (n + window - 1)
