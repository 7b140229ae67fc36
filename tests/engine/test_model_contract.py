"""The model contract v1: metadata parsing, signal mapping, and the shipped default model."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from app.engine.features import FeatureSet
from app.engine.inference import load_model
from app.engine.model_contract import (
    REQUIRED_KEYS,
    Direction,
    Golden,
    GoldenCase,
    Layout,
    ModelContract,
    RollingZScore,
    Scaler,
    TensorInfo,
    check_io,
    parse_contract,
    to_metadata,
)
from app.errors import ModelError, OperatorError

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "models" / "default.onnx"


def contract(**changes: object) -> ModelContract:
    """A small valid contract: 2 features, window 3."""
    base = ModelContract(
        schema_version=1,
        model_version="t1",
        features=("logret_1", "rsi_14"),
        window=3,
        bar_interval_s=1,
        layout=Layout.WINDOW,
        input_name="window",
        output_name="prob_up",
        scaler=None,
        output="prob_up",
        long_threshold=0.6,
        short_threshold=0.4,
        horizon_bars=10,
        label="1 when up more than 5 bps over 10 bars",
        training_range="none",
        golden=Golden(1e-4, (GoldenCase(((0.0, 50.0),) * 3, 0.5),)),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize("clip", [None, 5.0])
def test_metadata_round_trip(clip: float | None) -> None:
    c = contract(
        scaler=Scaler((0.0, 50.0), (1e-4, 10.0), clip),
        layout=Layout.FLAT,
        symbols=("btcusdt",),
        description="d",
        metrics='{"auc": 0.5}',
    )
    meta = to_metadata(c)
    assert all(isinstance(v, str) for v in meta.values())
    parsed, problems = parse_contract(meta)
    assert problems == []
    assert parsed == c


@pytest.mark.parametrize("clip", [None, 4.0])
def test_rolling_zscore_round_trips(clip: float | None) -> None:
    c = contract(
        scaler=RollingZScore(5, clip),
        golden=Golden(1e-4, (GoldenCase(((0.0, 50.0),) * 7, 0.5),)),
    )
    meta = to_metadata(c)
    assert json.loads(meta["scaler"]) == {"kind": "rolling_zscore", "window": 5} | (
        {} if clip is None else {"clip": clip}
    )
    parsed, problems = parse_contract(meta)
    assert problems == []
    assert parsed == c
    assert parsed.raw_rows == 7 and parsed.window_shape == (7, 2)


def test_fixed_scaler_may_name_its_kind() -> None:
    meta = to_metadata(contract()) | {
        "scaler": '{"kind": "fixed", "mean": [0, 1], "scale": [1, 2]}'
    }
    parsed, problems = parse_contract(meta)
    assert problems == [] and parsed is not None
    assert parsed.scaler == Scaler((0.0, 1.0), (1.0, 2.0))


def test_every_required_key_missing_is_its_own_message() -> None:
    meta = to_metadata(contract())
    for key in REQUIRED_KEYS:
        if key == "schema_version":
            continue
        partial = {k: v for k, v in meta.items() if k != key}
        parsed, problems = parse_contract(partial)
        assert parsed is None
        assert f"missing metadata key {key!r}" in problems


def test_missing_keys_are_all_listed() -> None:
    meta = {k: v for k, v in to_metadata(contract()).items() if k not in ("window", "label")}
    _, problems = parse_contract(meta)
    assert "missing metadata key 'window'" in problems
    assert "missing metadata key 'label'" in problems


def test_unknown_schema_version() -> None:
    meta = to_metadata(contract()) | {"schema_version": "2"}
    parsed, problems = parse_contract(meta)
    assert parsed is None
    assert problems == ["unknown schema version '2': this engine reads version 1"]


def test_unknown_feature_names_the_bad_one() -> None:
    meta = to_metadata(contract()) | {"features": json.dumps(["logret_1", "rsi_x"])}
    _, problems = parse_contract(meta)
    assert len(problems) == 1
    assert "unknown feature name 'rsi_x'" in problems[0]
    assert "known features" in problems[0]  # the catalogue's own explanation


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("window", "0", "metadata window=0 must be at least 1"),
        ("window", "x", "metadata window='x' is not an integer"),
        ("layout", "nchw", "metadata layout='nchw' must be one of window, flat"),
        ("output", "price", "metadata output='price' is not one of prob_up"),
        ("long_threshold", "0.3", "short_threshold=0.4 must be below long_threshold=0.3"),
        ("short_threshold", "1.5", "metadata short_threshold=1.5 must be within [0, 1]"),
        ("features", "[]", "metadata features must be a non-empty JSON list of feature names"),
        ("features", '["rsi_14","rsi_14"]', "metadata features lists rsi_14 more than once"),
        ("scaler", '{"mean": [0], "scale": [1]}', "has 1 means and 1 scales for 2 features"),
        (
            "scaler",
            '{"mean": [0, 0], "scale": [1, 1], "clip": -5}',
            "metadata scaler clip must be a positive number, got -5",
        ),
        (
            "scaler",
            '{"mean": [0, 0], "scale": [1, 1], "clip": true}',
            "metadata scaler clip must be a positive number, got True",
        ),
        (
            "scaler",
            '{"kind": "rolling_zscore", "window": 1}',
            "metadata scaler rolling_zscore window must be an integer from 2 to 100000 (bars "
            "per feature), got 1",
        ),
        (
            "scaler",
            '{"kind": "rolling_zscore", "window": 500.5}',
            "rolling_zscore window must be an integer from 2 to 100000",
        ),
        (
            "scaler",
            '{"kind": "rolling_zscore", "window": 1000001}',
            "rolling_zscore window must be an integer from 2 to 100000",
        ),
        (
            "scaler",
            '{"kind": "rolling_zscore", "window": "500"}',
            "rolling_zscore window must be an integer from 2 to 100000",
        ),
        ("scaler", '{"kind": "rolling_zscore"}', "got None"),
        (
            "scaler",
            '{"kind": "rolling_zscore", "window": 50, "clip": 0}',
            "metadata scaler clip must be a positive number, got 0",
        ),
        (
            "scaler",
            '{"kind": "rolling_zscore", "window": 50, "min_periods": 10}',
            "metadata scaler rolling_zscore has unknown keys min_periods",
        ),
        ("scaler", '{"kind": "ewma", "window": 50}', "metadata scaler kind 'ewma' is not one of"),
        ("scaler", '"fixed"', 'metadata scaler must be "baked", JSON {"mean"'),
        (
            "scaler",
            '{"kind": "rolling_zscore", "window": 5}',
            "input is 3 rows of 2 values, the contract declares window x features = 7x2 "
            "(window 3 + 4 rows of history)",
        ),
        ("golden", "{", "metadata golden is not valid JSON"),
        ("golden", '{"tolerance": 0.1, "cases": []}', "metadata golden has no cases"),
        (
            "golden",
            '{"tolerance": 0.1, "cases": [{"input": [[1, 2]], "output": 0.5}]}',
            "input is 1 rows of 2 values, the contract declares window x features = 3x2",
        ),
    ],
)
def test_bad_values_are_named(key: str, value: str, expected: str) -> None:
    meta = to_metadata(contract()) | {key: value}
    parsed, problems = parse_contract(meta)
    assert parsed is None
    assert any(expected in p for p in problems), problems


def test_signal_maps_output_to_side_and_confidence() -> None:
    c = contract()
    assert c.signal(0.7) == (Direction.LONG, 0.7)
    assert c.signal(0.6) == (Direction.LONG, 0.6)
    side, conf = c.signal(0.25)
    assert side is Direction.SHORT
    assert conf == pytest.approx(0.75)
    assert c.signal(0.45) == (None, 0.55)
    assert c.signal(float("nan")) == (None, 0.0)


def test_serves_every_symbol_unless_declared() -> None:
    assert contract().serves("solusdt")
    only = contract(symbols=("btcusdt",))
    assert only.serves("BTCUSDT")
    assert not only.serves("ethusdt")


def test_check_io_names_each_mismatch() -> None:
    c = contract()  # input [1, 3, 2]
    good_in = [TensorInfo("window", ("N", 3, 2), "tensor(float)")]
    good_out = [TensorInfo("prob_up", (None, 1), "tensor(float)")]
    assert check_io(c, good_in, good_out) == []
    problems = check_io(
        c,
        [TensorInfo("x", (1, 4, 2), "tensor(double)")],
        [TensorInfo("y", (1, 2), "tensor(float)")],
    )
    assert problems == [
        "input name mismatch: the graph's input is 'x', the contract declares 'window'",
        "input dtype mismatch: tensor(double), the contract needs tensor(float)",
        "input shape mismatch: the graph takes [1, 4, 2], the contract declares [1, 3, 2] = "
        "[1, window=3, features=2] (layout window)",
        "output name mismatch: the graph's output is 'y', the contract declares 'prob_up'",
        "output shape mismatch: the graph gives [1, 2], the contract needs [1, 1] or [1] "
        "(one value per window)",
    ]
    flat = contract(layout=Layout.FLAT)
    assert check_io(flat, [TensorInfo("window", (1, 6), "tensor(float)")], good_out) == []


# -- the shipped default model and files that are not models ---------------------------------


def test_default_model_loads_and_reproduces_its_golden_vectors() -> None:
    model = load_model(DEFAULT_MODEL)
    c = model.contract
    assert c.schema_version == 1
    assert c.window == 16
    assert c.bar_interval_s == 1
    assert c.output == "prob_up"
    assert c.symbols == ()  # one model for every configured symbol
    assert 0.0 < c.short_threshold < 0.5 < c.long_threshold < 1.0
    assert len(c.golden.cases) >= 3
    # Its features are the engine's own: a FeatureSet accepts them in the declared order.
    assert FeatureSet(c.features, c.bar_interval_s).names == c.features
    for case in c.golden.cases:
        got = model.predict(np.asarray(case.input))
        assert abs(got - case.output) <= c.golden.tolerance
    assert {"auc", "brier", "accuracy"} <= json.loads(c.metrics)["test"].keys()
    # The file's own hash (computed here, not by the code under test): what the store keys on.
    expected = hashlib.sha256(DEFAULT_MODEL.read_bytes()).hexdigest()
    assert model.sha256 == expected
    assert model.describe()["sha256"] == expected


def _refusal(path: Path) -> ModelError:
    with pytest.raises(ModelError) as info:
        load_model(path)
    assert isinstance(info.value, OperatorError)
    assert str(path) in str(info.value)
    return info.value


def test_random_bytes_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "noise.onnx"
    path.write_bytes(np.random.default_rng(7).bytes(4096))
    err = _refusal(path)
    assert len(err.problems) == 1
    assert err.problems[0].startswith("not an ONNX model, or truncated or corrupt: ")


def test_truncated_model_is_refused(tmp_path: Path) -> None:
    data = DEFAULT_MODEL.read_bytes()
    path = tmp_path / "truncated.onnx"
    path.write_bytes(data[: len(data) // 2])
    err = _refusal(path)
    assert err.problems[0].startswith("not an ONNX model, or truncated or corrupt: ")


def test_empty_and_missing_files_are_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    assert _refusal(empty).problems == ("not an ONNX model: the file is empty",)
    err = _refusal(tmp_path / "absent.onnx")
    assert err.problems[0].startswith("cannot read the file: ")
    assert os.strerror(2) in err.problems[0]
