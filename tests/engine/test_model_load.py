"""Loading models under the contract: each refusal with its own message, scaler and layouts.

The graphs are built here with the ``onnx`` package (a development dependency: the engine itself
only needs onnxruntime). A tiny model computes ``sigmoid(mean(window))`` so its golden outputs are
easy to compute with numpy.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="building test graphs needs the onnx package")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from app.engine.inference import load_model  # noqa: E402
from app.engine.model_contract import (  # noqa: E402
    Golden,
    GoldenCase,
    Layout,
    ModelContract,
    Scaler,
    to_metadata,
)
from app.errors import ModelError  # noqa: E402

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "models" / "default.onnx"
FEATURES = ("logret_1", "rsi_14", "obi_5")
WINDOW = 4


def sample_window(seed: int, window: int = WINDOW, n: int = len(FEATURES)) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(window, n))


def tiny_output(x: np.ndarray, scaler: Scaler | None = None) -> float:
    """What the tiny graph computes, in float64 from the float32 input predict feeds it."""
    x32 = x.astype(np.float32)
    if scaler is not None:
        x32 = (x32 - np.asarray(scaler.mean, dtype=np.float32)) * (
            1.0 / np.asarray(scaler.scale)
        ).astype(np.float32)
    return float(1.0 / (1.0 + np.exp(-np.mean(x32.astype(np.float64)))))


def tiny_contract(**changes: object) -> ModelContract:
    scaler = changes.get("scaler")
    assert scaler is None or isinstance(scaler, Scaler)
    cases = tuple(
        GoldenCase(
            tuple(tuple(float(v) for v in row) for row in sample_window(s)),
            tiny_output(sample_window(s), scaler),
        )
        for s in (1, 2, 3)
    )
    base = ModelContract(
        schema_version=1,
        model_version="tiny-1",
        features=FEATURES,
        window=WINDOW,
        bar_interval_s=1,
        layout=Layout.WINDOW,
        input_name="window",
        output_name="prob_up",
        scaler=None,
        output="prob_up",
        long_threshold=0.6,
        short_threshold=0.4,
        horizon_bars=10,
        label="test label",
        training_range="none",
        golden=Golden(1e-5, cases),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def tiny_model_bytes(
    meta: dict[str, str],
    *,
    input_shape: tuple[int | str, ...] = (1, WINDOW, len(FEATURES)),
    input_type: int = TensorProto.FLOAT,
    output_shape: tuple[int, ...] = (1, 1),
    input_name: str = "window",
    output_name: str = "prob_up",
) -> bytes:
    """A graph computing ``sigmoid(mean(input))`` reshaped to ``output_shape``."""
    nodes = []
    x = input_name
    if input_type != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", [x], ["x32"], to=TensorProto.FLOAT))
        x = "x32"
    nodes += [
        helper.make_node("ReduceMean", [x], ["m"], keepdims=0),
        helper.make_node("Sigmoid", ["m"], ["s"]),
        helper.make_node("Expand", ["s", "out_shape"], [output_name]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info(input_name, input_type, list(input_shape))],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, list(output_shape))],
        [numpy_helper.from_array(np.asarray(output_shape, dtype=np.int64), "out_shape")],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8, producer_name="test"
    )
    helper.set_model_props(model, meta)
    data: bytes = model.SerializeToString()
    return data


def write(tmp_path: Path, data: bytes, name: str = "m.onnx") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def refused(path: Path) -> tuple[str, ...]:
    with pytest.raises(ModelError) as info:
        load_model(path)
    return info.value.problems


def with_metadata(source: Path, **changes: str | None) -> bytes:
    """``source`` with metadata keys changed (None removes the key)."""
    model = onnx.load_from_string(source.read_bytes())
    props = {p.key: p.value for p in model.metadata_props}
    for key, value in changes.items():
        if value is None:
            props.pop(key, None)
        else:
            props[key] = value
    del model.metadata_props[:]
    helper.set_model_props(model, props)
    data: bytes = model.SerializeToString()
    return data


def test_tiny_model_loads_and_predicts(tmp_path: Path) -> None:
    c = tiny_contract()
    model = load_model(write(tmp_path, tiny_model_bytes(to_metadata(c))))
    assert model.contract == c
    x = sample_window(9)
    assert model.predict(x) == pytest.approx(tiny_output(x), abs=1e-6)


def test_symbolic_batch_dimension_is_accepted(tmp_path: Path) -> None:
    data = tiny_model_bytes(to_metadata(tiny_contract()), input_shape=("N", WINDOW, 3))
    assert load_model(write(tmp_path, data)).contract.window == WINDOW


def test_flat_layout_with_declared_scaler(tmp_path: Path) -> None:
    scaler = Scaler((0.5, -1.0, 2.0), (2.0, 0.5, 4.0))
    c = tiny_contract(layout=Layout.FLAT, scaler=scaler)
    data = tiny_model_bytes(to_metadata(c), input_shape=(1, WINDOW * len(FEATURES)))
    model = load_model(write(tmp_path, data))
    x = sample_window(11)
    assert model.predict(x) == pytest.approx(tiny_output(x, scaler), abs=1e-6)


def test_missing_metadata_key_is_refused(tmp_path: Path) -> None:
    data = with_metadata(DEFAULT_MODEL, horizon_bars=None)
    assert refused(write(tmp_path, data)) == ("missing metadata key 'horizon_bars'",)


def test_missing_schema_version_is_refused(tmp_path: Path) -> None:
    data = with_metadata(DEFAULT_MODEL, schema_version=None)
    (problem,) = refused(write(tmp_path, data))
    assert problem == "missing metadata key 'schema_version' (this engine reads version 1)"


def test_unknown_schema_version_is_refused(tmp_path: Path) -> None:
    data = with_metadata(DEFAULT_MODEL, schema_version="7")
    assert refused(write(tmp_path, data)) == (
        "unknown schema version '7': this engine reads version 1",
    )


def test_unknown_feature_is_refused(tmp_path: Path) -> None:
    meta = to_metadata(tiny_contract())
    meta["features"] = json.dumps(["logret_1", "rsi_14", "vpin_50"])
    (problem,) = refused(write(tmp_path, tiny_model_bytes(meta)))
    assert "unknown feature name 'vpin_50'" in problem


def test_wrong_input_shape_is_refused(tmp_path: Path) -> None:
    data = tiny_model_bytes(to_metadata(tiny_contract()), input_shape=(1, WINDOW + 1, 3))
    assert refused(write(tmp_path, data)) == (
        "input shape mismatch: the graph takes [1, 5, 3], the contract declares [1, 4, 3] = "
        "[1, window=4, features=3] (layout window)",
    )


def test_flat_graph_under_window_layout_is_refused(tmp_path: Path) -> None:
    data = tiny_model_bytes(to_metadata(tiny_contract()), input_shape=(1, WINDOW * 3))
    (problem,) = refused(write(tmp_path, data))
    assert problem.startswith("input shape mismatch: the graph takes [1, 12]")


def test_wrong_input_dtype_is_refused(tmp_path: Path) -> None:
    data = tiny_model_bytes(to_metadata(tiny_contract()), input_type=TensorProto.DOUBLE)
    assert refused(write(tmp_path, data)) == (
        "input dtype mismatch: tensor(double), the contract needs tensor(float)",
    )


def test_wrong_input_name_is_refused(tmp_path: Path) -> None:
    data = tiny_model_bytes(to_metadata(tiny_contract()), input_name="features")
    assert refused(write(tmp_path, data)) == (
        "input name mismatch: the graph's input is 'features', the contract declares 'window'",
    )


def test_wrong_output_shape_is_refused(tmp_path: Path) -> None:
    data = tiny_model_bytes(to_metadata(tiny_contract()), output_shape=(1, 2))
    assert refused(write(tmp_path, data)) == (
        "output shape mismatch: the graph gives [1, 2], the contract needs [1, 1] or [1] "
        "(one value per window)",
    )


def test_every_graph_mismatch_is_listed(tmp_path: Path) -> None:
    data = tiny_model_bytes(
        to_metadata(tiny_contract()),
        input_shape=(1, 2, 3),
        input_type=TensorProto.DOUBLE,
        output_shape=(1, 3),
    )
    problems = refused(write(tmp_path, data))
    assert [p.split(":")[0] for p in problems] == [
        "input dtype mismatch",
        "input shape mismatch",
        "output shape mismatch",
    ]


def test_golden_mismatch_is_refused_with_max_abs_error(tmp_path: Path) -> None:
    c = tiny_contract()
    bad = dataclasses.replace(c.golden.cases[1], output=c.golden.cases[1].output + 0.25)
    golden = Golden(c.golden.tolerance, (c.golden.cases[0], bad, c.golden.cases[2]))
    data = tiny_model_bytes(to_metadata(dataclasses.replace(c, golden=golden)))
    (problem,) = refused(write(tmp_path, data))
    assert problem.startswith("golden mismatch: max abs error 0.25 > tolerance 1e-05 (case 1 of 3")
    assert "computes wrong results" in problem


def test_default_model_with_altered_golden_output_is_refused(tmp_path: Path) -> None:
    golden = json.loads(onnx_meta(DEFAULT_MODEL)["golden"])
    golden["cases"][0]["output"] += 0.01
    data = with_metadata(DEFAULT_MODEL, golden=json.dumps(golden))
    (problem,) = refused(write(tmp_path, data))
    assert problem.startswith("golden mismatch: max abs error 0.01 > tolerance")


def onnx_meta(path: Path) -> dict[str, str]:
    model = onnx.load_from_string(path.read_bytes())
    return {p.key: p.value for p in model.metadata_props}
