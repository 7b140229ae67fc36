"""Crafted ONNX files for the "models are only data" tests (built with the ``onnx`` package).

Each model computes the tiny contract's ``sigmoid(mean(window))`` (see
``tests/engine/test_model_load.py``) as a linear model: the window flattened to ``[1, 12]``, times
a float32 ``[12, 1]`` weight tensor ``w`` of twelfths, then ``Sigmoid``. The weights can sit in
one of several places: a graph initializer, a ``Constant`` node's attribute, a ``Constant``
inside an ``If`` branch, or a ``Constant`` in a model-local function's body. With ``external=``
their 48 bytes are stored as external data in a file of that name (:func:`external_payload`
gives the bytes to write there), as ``onnx.save_model(..., save_as_external_data=True)`` would:
with the file in the current directory, onnxruntime reads it and the model works, golden cases
and all.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="crafting models needs the onnx package")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

PLACES = ("initializer", "constant", "if", "function")
INPUT_SHAPE = (1, 4, 3)  # the tiny contract's window x features
OUT_SHAPE = np.asarray([1, 1], dtype=np.int64)
N_INPUTS = int(np.prod(INPUT_SHAPE))
WEIGHTS = np.full((N_INPUTS, 1), 1 / N_INPUTS, dtype=np.float32)


def external_payload() -> bytes:
    """What the external file must hold for the model to work: the weights' raw bytes."""
    return WEIGHTS.tobytes()


def _weights(external: str | None, name: str = "w_value") -> TensorProto:
    tensor: TensorProto = numpy_helper.from_array(WEIGHTS, name)
    if external is not None:
        tensor.ClearField("raw_data")
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (("location", external), ("offset", "0"), ("length", "48")):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
    return tensor


def _constant(output: str, external: str | None, name: str = "const") -> onnx.NodeProto:
    return helper.make_node("Constant", [], [output], name=name, value=_weights(external))


def tiny_graph_model(
    meta: dict[str, str],
    place: str = "initializer",
    *,
    external: str | None = None,
    sigmoid: bool = True,
) -> bytes:
    """The tiny model with its weights at ``place`` (one of :data:`PLACES`), stored in the file
    or, with ``external``, in that file; without ``sigmoid`` its output is the mean (a logit)."""
    nodes = [
        helper.make_node("Reshape", ["window", "flat_shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["m"]),
        helper.make_node("Sigmoid", ["m"], ["prob_up"])
        if sigmoid
        else helper.make_node("Identity", ["m"], ["prob_up"]),
    ]
    initializers = [numpy_helper.from_array(np.asarray([1, N_INPUTS], np.int64), "flat_shape")]
    functions: list[onnx.FunctionProto] = []
    opsets = [helper.make_opsetid("", 17)]
    if place == "initializer":
        initializers.append(_weights(external, "w"))
    elif place == "constant":
        nodes.insert(0, _constant("w", external))
    elif place == "if":
        yes = helper.make_graph(
            [_constant("branch_w", external, "then_w")], "then", [],
            [helper.make_tensor_value_info("branch_w", TensorProto.FLOAT, [N_INPUTS, 1])],
        )  # fmt: skip
        no = helper.make_graph(
            [_constant("branch_w", None, "else_w")], "else", [],
            [helper.make_tensor_value_info("branch_w", TensorProto.FLOAT, [N_INPUTS, 1])],
        )  # fmt: skip
        cond = numpy_helper.from_array(np.asarray(True), "cond_value")
        nodes[:0] = [
            helper.make_node("Constant", [], ["cond"], name="cond", value=cond),
            helper.make_node("If", ["cond"], ["w"], name="choose", then_branch=yes, else_branch=no),
        ]
    elif place == "function":
        body = helper.make_function(
            "local", "Weights", [], ["o"], [_constant("o", external, "body_w")],
            [helper.make_opsetid("", 17)],
        )  # fmt: skip
        functions.append(body)
        opsets.append(helper.make_opsetid("local", 1))
        nodes.insert(0, helper.make_node("Weights", [], ["w"], name="call", domain="local"))
    else:
        raise ValueError(place)
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("window", TensorProto.FLOAT, list(INPUT_SHAPE))],
        [helper.make_tensor_value_info("prob_up", TensorProto.FLOAT, [1, 1])],
        initializers,
    )
    model = helper.make_model(
        graph, opset_imports=opsets, ir_version=8, producer_name="test", functions=functions
    )
    helper.set_model_props(model, meta)
    data: bytes = model.SerializeToString()
    return data


def nested_ifs(levels: int) -> bytes:
    """A model whose graph holds ``levels`` If nodes, each inside the previous one's branches
    (no contract: only the walk's depth is under test)."""

    def branch(level: int, name: str) -> onnx.GraphProto:
        out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
        if level == levels:
            value = numpy_helper.from_array(np.asarray([0.5], dtype=np.float32), "v")
            return helper.make_graph(
                [helper.make_node("Constant", [], ["y"], value=value)], name, [], [out]
            )
        inner = helper.make_node(
            "If", ["c"], ["y"], name=f"if{level}",
            then_branch=branch(level + 1, f"then{level + 1}"),
            else_branch=branch(level + 1, f"else{level + 1}"),
        )  # fmt: skip
        return helper.make_graph([inner], name, [], [out])

    top = branch(0, "main")
    top.input.append(helper.make_tensor_value_info("c", TensorProto.BOOL, []))
    model = helper.make_model(top, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    data: bytes = model.SerializeToString()
    return data


def file_reader_model(location: str, content: bytes, contract_meta: dict[str, str]) -> bytes:
    """The issue's model: a uint8 initializer of ``len(content)`` bytes stored as external data
    at ``location``; its output is their mean / 255, and ``contract_meta``'s golden outputs are
    replaced by that figure for ``content``. Accepted, it proves the file was read."""
    weights = numpy_helper.from_array(np.frombuffer(content, dtype=np.uint8), "w")
    weights.ClearField("raw_data")
    weights.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(len(content)))):
        entry = weights.external_data.add()
        entry.key, entry.value = key, value
    inits = [
        weights,
        numpy_helper.from_array(np.asarray(1 / 255, dtype=np.float32), "inv255"),
        numpy_helper.from_array(np.asarray(0.0, dtype=np.float32), "zero"),
        numpy_helper.from_array(OUT_SHAPE, "out_shape"),
    ]
    nodes = [
        helper.make_node("Cast", ["w"], ["wf"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["wf"], ["wm"], keepdims=0),
        helper.make_node("Mul", ["wm", "inv255"], ["p"]),
        helper.make_node("ReduceMean", ["window"], ["m"], keepdims=0),
        helper.make_node("Mul", ["m", "zero"], ["m0"]),
        helper.make_node("Add", ["p", "m0"], ["s"]),
        helper.make_node("Expand", ["s", "out_shape"], ["prob_up"]),
    ]
    graph = helper.make_graph(
        nodes, "reader",
        [helper.make_tensor_value_info("window", TensorProto.FLOAT, list(INPUT_SHAPE))],
        [helper.make_tensor_value_info("prob_up", TensorProto.FLOAT, [1, 1])],
        inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    want = float(np.float32(np.frombuffer(content, dtype=np.uint8).astype(np.float32).mean()))
    golden = json.loads(contract_meta["golden"])
    for case in golden["cases"]:
        case["output"] = want * float(np.float32(1 / 255))
    helper.set_model_props(model, {**contract_meta, "golden": json.dumps(golden)})
    data: bytes = model.SerializeToString()
    return data
