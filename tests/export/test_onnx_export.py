"""The exporter on the teacher formats users bring: dynamic batch, metadata, fp16, opsets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from compressor.errors import UserError
from compressor.models import create_model
from export import (
    EvalSet,
    OnnxRuntimeRunner,
    Tolerance,
    export_onnx,
    onnx_export,
    onnx_precision,
    parity,
    predict,
    read_metadata,
)
from export.torch_runner import TorchRunner


def _digits_like() -> EvalSet:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(40, 1, 8, 8), dtype=np.uint8)
    return EvalSet("random", images, rng.integers(0, 10, size=40), mean=(0.3,), std=(0.4,))


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
@pytest.mark.parametrize("form", ["module", "torchscript", "torch.export"])
def test_every_teacher_format_exports_with_a_dynamic_batch(tmp_path: Path, form: str) -> None:
    """Teachers arrive as modules, TorchScript files or torch.export programs (see
    compressor.models.teacher); each must export, run in ONNX Runtime and match PyTorch."""
    torch.manual_seed(0)
    model = create_model("resnet8", num_classes=10, in_channels=1).eval()
    if form == "torchscript":
        model = torch.jit.script(model)
    elif form == "torch.export":
        program = torch.export.export(
            model, (torch.zeros(2, 1, 8, 8),), dynamic_shapes=({0: torch.export.Dim("b")},)
        )
        model = program.module()
    eval_set = _digits_like()
    reference = predict(TorchRunner(model, torch.device("cpu")).infer, eval_set, 40)
    path = tmp_path / "model.onnx"
    export_onnx(
        model, path, image_shape=(1, 8, 8), opset=18, metadata={"classes": list("0123456789")}
    )
    runner = OnnxRuntimeRunner(path)
    for batch in (1, 3, 40):
        result = parity(reference, predict(runner.infer, eval_set, batch), Tolerance(1e-4, 100))
        assert result.passed, result
    assert read_metadata(path)["classes"] == list("0123456789")
    assert onnx_precision(onnx.load(path)) == "fp32"


def test_half_export_is_float16_end_to_end(tmp_path: Path) -> None:
    model = create_model("resnet8", num_classes=10, in_channels=1).eval()
    path = tmp_path / "model.fp16.onnx"
    proto = export_onnx(model, path, image_shape=(1, 8, 8), opset=18, metadata={}, half=True)
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert onnx_precision(proto) == "fp16"
    logits = OnnxRuntimeRunner(path).infer(_digits_like().batch(0, 5))
    assert logits.dtype == np.float32 and logits.shape == (5, 10)
    assert next(model.parameters()).dtype == torch.float32  # the caller's model is untouched


def test_export_refuses_an_opset_it_cannot_write(tmp_path: Path) -> None:
    model = create_model("resnet8", num_classes=10, in_channels=1).eval()
    with pytest.raises(UserError, match="opset 17 is not supported"):
        export_onnx(model, tmp_path / "m.onnx", image_shape=(1, 8, 8), opset=17, metadata={})
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("fails_at_18", [False, True])
def test_an_exporter_that_fails_below_opset_18_names_the_opset_only_if_18_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fails_at_18: bool
) -> None:
    """torch < 2.9 fails inside its exporter at opset 17 (torch 2.8: an aot_autograd
    assertion) rather than in the down-conversion; the real exporter runs at the other opsets."""
    real_export = onnx_export._export
    tried: list[int] = []

    def torch_2_8_export(model, example, opset):
        tried.append(opset)
        if opset < 18 or fails_at_18:
            raise AssertionError("aot_autograd expected to have an entirely functional graph")
        return real_export(model, example, opset)

    monkeypatch.setattr(onnx_export, "_export", torch_2_8_export)
    model = create_model("resnet8", num_classes=10, in_channels=1).eval()
    expected = (
        "cannot export this model" if fails_at_18 else "opset 17 is not supported.*--opset 18"
    )
    with pytest.raises(UserError, match=expected):
        export_onnx(model, tmp_path / "m.onnx", image_shape=(1, 8, 8), opset=17, metadata={})
    assert tried == [17, 18] and not (tmp_path / "m.onnx").exists()


@pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript:DeprecationWarning")
def test_the_image_input_is_named_as_the_file_names_it(tmp_path: Path) -> None:
    """TensorRT's profile is set by the input's name: a --student-onnx file made elsewhere
    names it as it likes, and an old-style file lists its weights as inputs too."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)).eval()
    ours = tmp_path / "ours.onnx"
    export_onnx(model, ours, image_shape=(1, 8, 8), opset=18, metadata={})
    theirs = tmp_path / "theirs.onnx"
    torch.onnx.export(
        model,
        (torch.zeros(2, 1, 8, 8),),
        str(theirs),
        input_names=["pixels"],
        output_names=["scores"],
        keep_initializers_as_inputs=True,
        dynamo=False,
    )
    assert len(onnx.load(str(theirs)).graph.input) == 3  # the image, the weight, the bias
    assert onnx_export.input_name(ours) == onnx_export.INPUT_NAME
    assert onnx_export.input_name(theirs) == "pixels"
