"""What the TensorRT runner says where it cannot run; tests on a GPU are in test_tensorrt.py."""

from __future__ import annotations

from pathlib import Path

from export.tensorrt_runner import engine_path, tensorrt_missing


def test_tensorrt_missing_says_what_is_missing() -> None:
    reason = tensorrt_missing(gpu_available=False)
    assert reason is not None and "no NVIDIA GPU" in reason


def test_an_engine_is_cached_per_profile_not_only_per_largest_batch(tmp_path: Path) -> None:
    """An engine tuned for batch 1 must not be reused to time a batch-64 run."""
    onnx_file = tmp_path / "student.onnx"
    onnx_file.write_bytes(b"an ONNX file's bytes")
    fixed = {"trt_version": "10.13.0", "gpu": "NVIDIA H100 80GB HBM3", "precision": "fp16"}

    def path(opt: int, top: int, **changed: str) -> Path:
        settings = {**fixed, **changed}
        return engine_path(onnx_file, tmp_path, **settings, opt_batch=opt, max_batch=top)

    assert path(1, 300) == path(1, 300)
    assert path(1, 300) != path(64, 300)
    assert path(64, 300) != path(64, 512)
    assert path(64, 300) != path(64, 300, trt_version="10.14.1")
    assert path(64, 300) != path(64, 300, gpu="NVIDIA H200")
    assert path(64, 300) != path(64, 300, precision="fp32")
    before = path(64, 300)
    onnx_file.write_bytes(b"another export's bytes")
    assert path(64, 300) != before
