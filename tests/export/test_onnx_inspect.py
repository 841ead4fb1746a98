"""What an ONNX file says about itself, read from small graphs built with onnx.helper."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from export.onnx_inspect import onnx_opset, onnx_precision, read_metadata


def identity_model(
    input_type: int = TensorProto.FLOAT, weights: list[np.ndarray] | None = None
) -> onnx.ModelProto:
    """y = x on batches of 2-vectors, `weights` as (unused) initializers, at opset 17."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", input_type, ["batch", 2])],
        [helper.make_tensor_value_info("y", input_type, ["batch", 2])],
        initializer=[
            numpy_helper.from_array(array, f"w{i}") for i, array in enumerate(weights or [])
        ],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets)


def test_metadata_values_are_json_where_they_parse(tmp_path: Path) -> None:
    proto = identity_model()
    helper.set_model_props(
        proto, {"classes": '["cat", "dog"]', "opset": "17", "int8_activations": "uint8"}
    )
    path = tmp_path / "m.onnx"
    onnx.save(proto, path)
    assert read_metadata(path) == {
        "classes": ["cat", "dog"],
        "opset": 17,
        "int8_activations": "uint8",  # not JSON: kept as the string it is
    }
    onnx.save(identity_model(), path)
    assert read_metadata(str(path)) == {}


def test_the_opset_is_the_default_domains() -> None:
    assert onnx_opset(identity_model()) == 17
    proto = identity_model()
    del proto.opset_import[:]
    assert onnx_opset(proto) == 0


def test_precision_from_inputs_weights_and_operators() -> None:
    fp32 = np.zeros(3, dtype=np.float32)
    fp16 = np.zeros(3, dtype=np.float16)
    assert onnx_precision(identity_model()) == "fp32"
    assert onnx_precision(identity_model(weights=[fp32, fp32, fp16])) == "fp32"
    assert onnx_precision(identity_model(TensorProto.FLOAT16)) == "fp16"
    # fp32 images in, fp16 weights inside: a graph that casts at its input is still fp16.
    assert onnx_precision(identity_model(weights=[fp16, fp16, fp32])) == "fp16"
    quantized = identity_model()
    quantized.graph.node.append(helper.make_node("QuantizeLinear", ["y", "s"], ["q"]))
    assert onnx_precision(quantized) == "int8"
