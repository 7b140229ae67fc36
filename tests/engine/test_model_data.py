"""Models are only data: the loader refuses, before onnxruntime sees the file, any tensor stored
as external data and any file nested deeper than its reader walks; it reads the contract before
it builds a session, and builds that session once; golden outputs must be probabilities.

The external-data files are real: the bytes the model needs sit in the current directory under
the name the model gives, so without the check onnxruntime would read them and the model would
load (each case's inline twin does load, proving the crafted graph itself is sound).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx", reason="crafting models needs the onnx package")

from app.engine.inference import load_model
from app.engine.model_contract import (
    Golden,
    GoldenCase,
    parse_contract,
    read_model_file,
    to_metadata,
)
from app.engine.onnxproto import read_header
from app.errors import ModelError
from tests.engine.test_model_load import sample_window, tiny_contract, write
from tests.models.crafted import (
    PLACES,
    external_payload,
    nested_ifs,
    tiny_graph_model,
)

META = to_metadata(tiny_contract())
WEIGHTS = "weights.bin"


def refused(path: Path) -> tuple[str, ...]:
    with pytest.raises(ModelError) as info:
        load_model(path)
    return info.value.problems


@pytest.mark.parametrize("place", PLACES)
def test_inline_twin_loads(place: str, tmp_path: Path) -> None:
    model = load_model(write(tmp_path, tiny_graph_model(META, place)))
    window = sample_window(1)
    assert model.predict(window) == pytest.approx(
        1 / (1 + np.exp(-window.astype(np.float32).mean())), abs=1e-6
    )


WHERE = {
    "initializer": "graph 'tiny' > initializer 'w'",
    "constant": "graph 'tiny' > node 'const' (Constant) > attribute 'value' > tensor",
    "if": "graph 'tiny' > node 'choose' (If) > attribute 'then_branch' > graph 'then' > "
    "node 'then_w' (Constant) > attribute 'value' > tensor",
    "function": "function 'Weights' (domain 'local') > node 'body_w' (Constant) > "
    "attribute 'value' > tensor",
}


@pytest.mark.parametrize("place", PLACES)
def test_external_data_is_refused_before_onnxruntime(
    place: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sessions: list[bytes]
) -> None:
    monkeypatch.chdir(tmp_path)  # where onnxruntime would look: the file is there
    (tmp_path / WEIGHTS).write_bytes(external_payload())
    path = write(tmp_path, tiny_graph_model(META, place, external=WEIGHTS))
    (problem,) = refused(path)
    assert problem.startswith("1 tensor stored as external data"), problem
    assert WHERE[place] in problem, problem
    assert WEIGHTS not in problem and str(tmp_path) not in problem  # names no path
    assert len(sessions) == 0, "a session was built"


def test_external_data_naming_any_path_is_refused_without_echoing_it(tmp_path: Path) -> None:
    for location in ("/etc/passwd", "../../etc/passwd", "README.md", "*/_ORT_MEM_ADDR_*/"):
        path = write(tmp_path, tiny_graph_model(META, "constant", external=location))
        (problem,) = refused(path)
        assert "stored as external data" in problem and location not in problem, problem


def test_data_location_alone_or_external_data_alone_is_refused(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    for keep in ("data_location", "external_data"):
        model = onnx.load_from_string(tiny_graph_model(META, external=WEIGHTS))
        tensor = model.graph.initializer[0]
        if keep == "data_location":
            del tensor.external_data[:]
        else:
            tensor.ClearField("data_location")
        (problem,) = refused(write(tmp_path, model.SerializeToString()))
        assert "initializer 'w'" in problem, (keep, problem)


def test_too_deep_nesting_is_refused(tmp_path: Path) -> None:
    assert read_header(nested_ifs(8)).too_deep == ""  # as deep as the reader walks: read
    header = read_header(nested_ifs(9))
    assert header.too_deep.startswith("graph 'main' > node 'if0' (If)"), header.too_deep
    problems = refused(write(tmp_path, nested_ifs(9)))
    assert problems[0].startswith("subgraphs nested more than 8 levels deep"), problems


def _no_contract_heavy() -> bytes:
    """9 KB of graph without a contract whose optimisation would fold a 256 MB constant."""
    onnx = pytest.importorskip("onnx")
    helper, tp = onnx.helper, onnx.TensorProto
    shape = onnx.numpy_helper.from_array(np.asarray([8192, 8192], dtype=np.int64), "big_shape")
    nodes = [
        helper.make_node("ConstantOfShape", ["big_shape"], ["big"]),
        helper.make_node("ReduceSum", ["big"], ["total"], keepdims=1),
        helper.make_node("Add", ["x", "total"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "heavy",
        [helper.make_tensor_value_info("x", tp.FLOAT, [1, 1])],
        [helper.make_tensor_value_info("y", tp.FLOAT, [1, 1])],
        [shape],
        doc_string="x" * 9000,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    data: bytes = model.SerializeToString()
    return data


def test_no_contract_is_refused_without_a_session(tmp_path: Path, sessions: list[bytes]) -> None:
    problems = refused(write(tmp_path, _no_contract_heavy()))
    assert problems == ("missing metadata key 'schema_version' (this engine reads version 1)",)
    assert len(sessions) == 0, "a session was built"


def test_a_good_model_builds_one_session(tmp_path: Path, sessions: list[bytes]) -> None:
    data = tiny_graph_model(META)
    load_model(write(tmp_path, data))
    assert len(sessions) == 1 and sessions[0] == data, f"{len(sessions)} sessions built"


def _logit_meta() -> dict[str, str]:
    """The tiny contract for a graph without its Sigmoid: golden outputs are mean(window)."""
    cases = tuple(
        GoldenCase(
            tuple(tuple(float(v) for v in row) for row in sample_window(s) + shift),
            float(np.mean((sample_window(s) + shift).astype(np.float32), dtype=np.float64)),
        )
        for s, shift in ((1, 0.0), (2, 3.0), (3, -2.0))
    )
    return to_metadata(tiny_contract(golden=Golden(1e-5, cases)))


def test_logits_are_refused(tmp_path: Path, sessions: list[bytes]) -> None:
    meta = _logit_meta()
    (problem,) = refused(write(tmp_path, tiny_graph_model(meta, sigmoid=False)))
    assert problem.startswith("metadata golden outputs outside [0, 1] (case 1: 3."), problem
    assert "case 2: -2." in problem
    assert problem.endswith(
        "the model's output must be a probability in [0, 1]; add a final Sigmoid"
    )
    assert len(sessions) == 0, "a session was built"


def test_golden_outputs_at_the_bounds_are_probabilities() -> None:
    golden = json.loads(META["golden"])
    for output, fine in ((0.0, True), (1.0, True), (1.0000001, False), (-1e-9, False)):
        golden["cases"][0]["output"] = output
        contract, problems = parse_contract({**META, "golden": json.dumps(golden)})
        assert (contract is not None) is fine, (output, problems)


def test_read_model_file_reports_data_and_contract_problems_together() -> None:
    meta = {k: v for k, v in META.items() if k != "window"}
    header, contract, problems = read_model_file(tiny_graph_model(meta, external=WEIGHTS))
    assert header is not None and contract is None
    assert [p.split(" ")[:3] for p in problems] == [
        ["1", "tensor", "stored"],
        ["missing", "metadata", "key"],
    ]
