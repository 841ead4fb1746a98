"""The ONNX Runtime runner on real sessions over small graphs built with onnx.helper."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from compressor.errors import UserError
from export.onnxruntime_runner import OnnxRuntimeRunner

WEIGHTS = np.array([[1.0, -1.0, 0.5], [2.0, 0.0, -0.5]], dtype=np.float32)


def save_linear(path: Path, element_type: int = TensorProto.FLOAT) -> Path:
    """logits = images @ WEIGHTS (2 features, 3 classes) in the given element type."""
    dtype = helper.tensor_dtype_to_np_dtype(element_type)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["images", "w"], ["logits"])],
        "linear",
        [helper.make_tensor_value_info("images", element_type, ["batch", 2])],
        [helper.make_tensor_value_info("logits", element_type, ["batch", 3])],
        initializer=[numpy_helper.from_array(WEIGHTS.astype(dtype), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what every supported onnxruntime reads
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("element_type", [TensorProto.FLOAT, TensorProto.FLOAT16])
def test_logits_are_float32_whatever_the_model_computes_in(
    tmp_path: Path, element_type: int
) -> None:
    runner = OnnxRuntimeRunner(save_linear(tmp_path / "m.onnx", element_type), threads=1)
    images = np.array([[1.0, 1.0], [0.0, 2.0], [3.0, -1.0]])  # float64, as numpy makes them
    logits = runner.infer(images)
    assert logits.dtype == np.float32 and logits.shape == (3, 3)
    np.testing.assert_allclose(logits, images @ WEIGHTS, rtol=1e-3)
    assert runner.device in ("cpu", "cuda") and runner.backend == "onnxruntime"


def test_a_file_that_is_not_onnx_is_a_user_error(tmp_path: Path) -> None:
    path = save_linear(tmp_path / "m.onnx")
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(UserError, match="cannot load this model") as caught:
        OnnxRuntimeRunner(path)
    assert "truncated, corrupt or not ONNX" in str(caught.value)


def test_a_model_that_does_not_take_float_images_is_refused(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["ids"], ["out"])],
        "ids",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch"])],
        [helper.make_tensor_value_info("out", TensorProto.INT64, ["batch"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "ids.onnx")
    with pytest.raises(UserError, match="input 'ids' is tensor\\(int64\\); expected float"):
        OnnxRuntimeRunner(tmp_path / "ids.onnx")
