"""The export package's parts one at a time: latency statistics, parity rules, the exporter
on the teacher formats users bring, precision detection."""

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
    measure_latency,
    onnx_precision,
    parity,
    predict,
    read_metadata,
)
from export.latency import summarize
from export.tensorrt_runner import tensorrt_missing
from export.torch_runner import TorchRunner


def test_latency_percentiles_mean_spread_and_throughput() -> None:
    seconds = np.arange(1, 101) / 1000.0  # 1..100 ms
    latency = summarize(seconds, batch=8)
    assert latency.p50_ms == pytest.approx(50.5)
    assert latency.p90_ms == pytest.approx(90.1)
    assert latency.p99_ms == pytest.approx(99.01)
    assert latency.mean_ms == pytest.approx(50.5)
    assert latency.cv == pytest.approx(np.std(np.arange(1, 101)) / 50.5)
    assert latency.throughput_ips == pytest.approx(8 * 1000 / 50.5)
    assert latency.runs == 100
    assert latency.noisy  # 1..100 ms is anything but steady
    assert not summarize(np.full(10, 0.002), batch=1).noisy


def test_measure_latency_times_each_run() -> None:
    calls = []
    latency = measure_latency(
        lambda x: calls.append(len(x)) or x, np.zeros((4, 3)), warmup=2, runs=5
    )
    assert calls == [4] * 7
    assert latency.runs == 5 and latency.batch == 4 and latency.p50_ms > 0


def test_parity_is_precision_aware() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(200, 10)).astype(np.float32)
    close = reference + 5e-5
    assert parity(reference, close, Tolerance(1e-4, 99.9)).passed
    assert not parity(reference, reference + 2e-4, Tolerance(1e-4, 99.9)).passed
    # fp16-sized differences: judged by agreement only, so they pass without an elementwise limit
    drifted = reference + rng.normal(scale=1e-3, size=reference.shape).astype(np.float32)
    result = parity(reference, drifted, Tolerance(None, 99.0))
    assert result.passed and result.max_abs_diff > 1e-4 and result.tolerance_max_abs is None
    flipped = reference.copy()
    flipped[:10] = -flipped[:10]  # 10 of 200 decisions change: 95 % agreement
    assert parity(reference, flipped, Tolerance(None, 99.0)).top1_agreement <= 95.0
    assert not parity(reference, flipped, Tolerance(None, 99.0)).passed


def test_parity_fails_on_nan_logits() -> None:
    reference = np.ones((4, 3), dtype=np.float32)
    broken = reference.copy()
    broken[0, 0] = np.nan
    assert not parity(reference, broken, Tolerance(None, 0.0)).passed


def test_eval_set_normalises_and_cycles() -> None:
    images = np.full((3, 1, 2, 2), 255, dtype=np.uint8)
    eval_set = EvalSet("t", images, np.zeros(3, dtype=np.int64), mean=(0.5,), std=(0.25,))
    assert np.allclose(eval_set.batch(0, 3), 2.0)
    assert eval_set.sample(8).shape == (8, 1, 2, 2)
    assert eval_set.sample(2).dtype == np.float32


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


def test_tensorrt_missing_says_what_is_missing() -> None:
    reason = tensorrt_missing(gpu_available=False)
    assert reason is not None and "no NVIDIA GPU" in reason
