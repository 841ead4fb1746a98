"""The ONNX Runtime runner on real sessions over small graphs built with onnx.helper."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from compressor.errors import UserError
from export.onnxruntime_runner import OnnxRuntimeRunner, _crashes_nchwc

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


def save_transposed_linear(path: Path, cast: bool) -> Path:
    """float16 images [1, batch, 2] → Transpose → [batch, 1, 2] @ WEIGHTS: the shape of a ViT's
    first attention projection, where ONNX Runtime's NCHWc pass (1.24 onwards) dereferences a
    null operator. `cast`: a Cast to float32 sits between the Transpose and the MatMul."""
    nodes = [helper.make_node("Transpose", ["images"], ["rows"], perm=[1, 0, 2])]
    if cast:
        nodes.append(helper.make_node("Cast", ["rows"], ["rows32"], to=TensorProto.FLOAT))
    nodes.append(helper.make_node("MatMul", ["rows32" if cast else "rows", "w"], ["logits"]))
    weight_type = TensorProto.FLOAT if cast else TensorProto.FLOAT16
    graph = helper.make_graph(
        nodes,
        "transposed_linear",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT16, [1, "batch", 2])],
        [helper.make_tensor_value_info("logits", weight_type, ["batch", 1, 3])],
        initializer=[
            numpy_helper.from_array(
                WEIGHTS.astype(helper.tensor_dtype_to_np_dtype(weight_type)), "w"
            )
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("cast", [False, True], ids=["float16", "cast-to-float32"])
def test_a_float16_transpose_into_matmul_runs_instead_of_killing_the_process(
    tmp_path: Path, cast: bool
) -> None:
    """In a child process: without the workaround the session's construction is a SIGSEGV,
    which would take the test run down with it rather than fail this test."""
    path = save_transposed_linear(tmp_path / "m.onnx", cast)
    script = (
        "import json, sys, numpy as np\n"
        "from export.onnxruntime_runner import OnnxRuntimeRunner\n"
        "logits = OnnxRuntimeRunner(sys.argv[1], threads=1).infer(np.ones((1, 3, 2)))\n"
        "print(json.dumps(logits.reshape(-1).tolist()))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"
    row = WEIGHTS.sum(axis=0)  # each image is [1, 1]
    np.testing.assert_allclose(json.loads(done.stdout), np.tile(row, 3), rtol=1e-3)


def test_the_nchwc_pass_is_kept_for_a_float16_graph_without_the_chain(tmp_path: Path) -> None:
    """The pass makes float16 CNNs 1.7× faster on the CPU: only the crashing chain skips it."""
    assert not _crashes_nchwc(save_linear(tmp_path / "plain.onnx", TensorProto.FLOAT16))
    assert _crashes_nchwc(save_transposed_linear(tmp_path / "chain.onnx", cast=False))
