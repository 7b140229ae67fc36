"""The protobuf walker finds a tensor stored as external data wherever ONNX lets one be.

Built with the ``onnx`` package and read back by :func:`app.engine.onnxproto.read_header`, which
does not use it. Each case puts one external tensor in one place; the tiny model's other tensors
stay in the file, and the walker must name exactly that one.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="crafting models needs the onnx package")

from onnx import ModelProto, TensorProto, helper, numpy_helper  # noqa: E402

from app.engine.onnxproto import read_header  # noqa: E402
from tests.models.crafted import nested_ifs, tiny_graph_model  # noqa: E402


def _external(name: str = "t") -> TensorProto:
    tensor: TensorProto = numpy_helper.from_array(np.zeros(2, dtype=np.float32), name)
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "w.bin"
    return tensor


def _sparse(name: str) -> onnx.SparseTensorProto:
    values = _external(name)
    indices = numpy_helper.from_array(np.asarray([0, 1], dtype=np.int64), f"{name}_i")
    return helper.make_sparse_tensor(values, indices, [4])


def _node(model: ModelProto, node: onnx.NodeProto) -> None:
    model.graph.node.insert(0, node)


def _sparse_initializer(m: ModelProto) -> None:
    m.graph.sparse_initializer.append(_sparse("sp"))


def _constant_of_shape(m: ModelProto) -> None:
    _node(m, helper.make_node("ConstantOfShape", ["shape"], ["z"], name="cos", value=_external()))


def _tensors_list(m: ModelProto) -> None:
    attr = helper.make_attribute("tensors", [numpy_helper.from_array(np.ones(1), "a"), _external()])
    node = helper.make_node("Custom", [], ["z"], name="n", domain="x")
    node.attribute.append(attr)
    _node(m, node)


def _sparse_attribute(m: ModelProto) -> None:
    _node(m, helper.make_node("Constant", [], ["z"], name="n", sparse_value=_sparse("sp")))


def _sparse_list(m: ModelProto) -> None:
    node = helper.make_node("Custom", [], ["z"], name="n", domain="x")
    node.attribute.append(helper.make_attribute("sparse", [_sparse("sp")]))
    _node(m, node)


def _sub(name: str) -> onnx.GraphProto:
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    return helper.make_graph([], name, [], [out], [_external()])


def _loop_body(m: ModelProto) -> None:
    _node(m, helper.make_node("Loop", ["", ""], ["z"], name="loop", body=_sub("body")))


def _graphs_list(m: ModelProto) -> None:
    node = helper.make_node("Custom", [], ["z"], name="n", domain="x")
    bodies = [helper.make_graph([], "ok", [], []), _sub("b")]
    node.attribute.append(helper.make_attribute("bodies", bodies))
    _node(m, node)


def _function_default(m: ModelProto) -> None:
    f = helper.make_function("local", "F", [], ["y"], [], [helper.make_opsetid("", 17)])
    f.attribute_proto.append(helper.make_attribute("w", _external()))
    m.functions.append(f)


def _training_info(m: ModelProto) -> None:
    info = m.training_info.add()
    info.initialization.CopyFrom(_sub("init"))
    info.algorithm.CopyFrom(helper.make_graph([], "algo", [], []))


def _data_location_only(m: ModelProto) -> None:
    tensor = m.graph.initializer[0]
    tensor.data_location = TensorProto.EXTERNAL


CASES: dict[str, tuple[Callable[[ModelProto], None], str]] = {
    "sparse initializer": (_sparse_initializer, "graph 'tiny' > sparse initializer values 'sp'"),
    "ConstantOfShape value": (
        _constant_of_shape, "node 'cos' (ConstantOfShape) > attribute 'value' > tensor 't'",
    ),
    "attribute tensors list": (_tensors_list, "node 'n' (Custom) > attribute 'tensors' > tensor"),
    "sparse_value": (_sparse_attribute, "attribute 'sparse_value' > sparse tensor values 'sp'"),
    "sparse_tensors list": (_sparse_list, "attribute 'sparse' > sparse tensor values 'sp'"),
    "Loop body": (_loop_body, "attribute 'body' > graph 'body' > initializer 't'"),
    "graphs list": (_graphs_list, "attribute 'bodies' > graph 'b' > initializer 't'"),
    "function attribute default": (
        _function_default, "function 'F' (domain 'local') > default > attribute 'w' > tensor 't'",
    ),
    "training info": (_training_info, "training_info 0 initialization > graph 'init' > "
                      "initializer 't'"),
    "data_location without entries": (_data_location_only, "initializer 'flat_shape'"),
}  # fmt: skip


def test_an_inline_model_is_only_data() -> None:
    header = read_header(tiny_graph_model({}))
    assert header.external == () and header.too_deep == "" and header.data_problems() == []


@pytest.mark.parametrize("case", sorted(CASES))
def test_external_tensor_is_found(case: str) -> None:
    change, where = CASES[case]
    model = onnx.load_from_string(tiny_graph_model({}))
    change(model)
    header = read_header(model.SerializeToString())
    assert len(header.external) == 1 and where in header.external[0], header.external
    (problem,) = header.data_problems()
    assert "w.bin" not in problem


def test_many_external_tensors_are_counted() -> None:
    model = onnx.load_from_string(tiny_graph_model({}))
    model.graph.initializer.extend(_external(f"t{i}") for i in range(8))
    (problem,) = read_header(model.SerializeToString()).data_problems()
    assert problem.startswith("8 tensors stored as external data") and "; and 3 more." in problem


def test_long_names_are_cut() -> None:
    model = onnx.load_from_string(tiny_graph_model({}))
    model.graph.initializer.append(_external("n" * 5000))
    (problem,) = read_header(model.SerializeToString()).data_problems()
    assert len(problem) < 400 and "nnn..." in problem


def test_depth_limit() -> None:
    assert read_header(nested_ifs(8)).data_problems() == []
    (problem,) = read_header(nested_ifs(9)).data_problems()
    assert problem.startswith("subgraphs nested more than 8 levels deep (graph 'main' > node 'if0'")
