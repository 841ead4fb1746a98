"""What the TensorRT runner says where it cannot run; tests on a GPU are in test_tensorrt.py."""

from __future__ import annotations

from export.tensorrt_runner import tensorrt_missing


def test_tensorrt_missing_says_what_is_missing() -> None:
    reason = tensorrt_missing(gpu_available=False)
    assert reason is not None and "no NVIDIA GPU" in reason
