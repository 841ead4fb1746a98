"""TensorRT on an NVIDIA GPU (`pytest -m gpu`): engines built from the exported ONNX files,
validated like ONNX Runtime, cached by ONNX hash, TensorRT version, GPU and precision.
Skipped, with the reason, where TensorRT or a GPU is missing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from export.tensorrt_runner import tensorrt_missing
from tests.cli_helpers import run_cli
from tests.export.helpers import QUICK

# Decided at collection, not in a fixture: a fixture's skip would come after the session-wide
# training fixtures it depends on had already trained, only to throw the runs away.
_MISSING = "no CUDA GPU" if not torch.cuda.is_available() else tensorrt_missing(gpu_available=True)
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(_MISSING is not None, reason=str(_MISSING))]


def test_tensorrt_engines_match_pytorch(
    distilled_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_cli(capsys, "export", str(distilled_run), "--trt", "--fp16", *QUICK)
    assert result.code == 0, result.stderr
    report = json.loads((distilled_run / "export" / "export_report.json").read_text())
    rows = {(r["model"], r["backend"], r["precision"]): r for r in report["results"]}
    for key in (("student", "tensorrt", "fp32"), ("student", "tensorrt", "fp16")):
        assert rows[key]["device"] == "cuda"
        assert rows[key]["parity"]["passed"], rows[key]["parity"]
        assert rows[key]["file"].startswith("export/trt/")
    assert rows[("student", "tensorrt", "fp32")]["parity"]["max_abs_diff"] <= 1e-4
    assert rows[("teacher", "tensorrt", "fp32")]["parity"]["passed"]
    assert set(report["speedup"]) >= {"pytorch", "onnxruntime", "tensorrt"}
    engines = sorted((distilled_run / "export" / "trt").glob("*.engine"))
    assert len(engines) == 3  # student fp32, student fp16, teacher fp32
    assert any(p.name.startswith("timing-") for p in (distilled_run / "export" / "trt").iterdir())

    again = run_cli(capsys, "export", str(distilled_run), "--trt", "--fp16", *QUICK)
    assert again.code == 0, again.stderr
    assert again.stdout.count("(reused)") == 3  # same ONNX, TensorRT, GPU and precision


def test_onnx_runtime_uses_cuda_when_it_has_it(
    distilled_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("this onnxruntime has no CUDA execution provider (install onnxruntime-gpu)")
    result = run_cli(capsys, "export", str(distilled_run), "--no-teacher", *QUICK)
    assert result.code == 0, result.stderr
    report = json.loads((distilled_run / "export" / "export_report.json").read_text())
    row = next(r for r in report["results"] if r["backend"] == "onnxruntime")
    assert row["device"] == "cuda"
    assert row["parity"]["passed"], row["parity"]


def test_tensorrt_runs_the_same_int8_qdq_file(
    workdir: Path, distilled_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--trt --int8: one symmetric S8S8 Q/DQ file, validated on ONNX Runtime and TensorRT."""
    run = workdir / "int8-trt"
    shutil.copytree(distilled_run, run, ignore=shutil.ignore_patterns("export"))
    args = ["export", str(run), "--trt", "--int8", "--no-teacher", "--calibration-images", "256"]
    result = run_cli(capsys, *args, *QUICK)
    assert result.code == 0, result.stderr
    report = json.loads((run / "export" / "export_report.json").read_text())
    assert report["int8"]["activations"] == "int8"
    rows = {(r["model"], r["backend"], r["precision"]): r for r in report["results"]}
    for backend in ("onnxruntime", "tensorrt"):
        row = rows[("student", backend, "int8")]
        assert row["parity"]["passed"], (backend, row["parity"])
    engine = rows[("student", "tensorrt", "int8")]["file"]
    assert engine.startswith("export/trt/student.int8-") and engine.endswith(".engine")
