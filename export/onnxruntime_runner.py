"""ONNX Runtime: numpy images in, numpy float32 logits out.

The CUDA execution provider when this onnxruntime has it (onnxruntime-gpu), else the CPU.
TF32 is switched off on CUDA: with it, convolutions run with a 10-bit mantissa and fp32
logits drift past the 1e-4 parity tolerance, which would measure TF32, not the export.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from compressor.errors import UserError, short_reason
from export.onnx_inspect import onnx_precision

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}
NCHWC = "NchwcTransformer"


def providers() -> list[str | tuple[str, dict[str, str]]]:
    """CUDA first when this onnxruntime build has it; CPU always, as the fallback."""
    if CUDA in ort.get_available_providers():
        return [(CUDA, {"use_tf32": "0"}), CPU]
    return [CPU]


class OnnxRuntimeRunner:
    """One InferenceSession over one ONNX file; `infer` takes float32 images of any batch."""

    backend = "onnxruntime"

    def __init__(self, path: Path | str, *, threads: int | None = None) -> None:
        """`threads`: intra-op threads (None: ONNX Runtime's default, one per physical core)."""
        self.path = Path(path)
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(
                str(self.path),
                options,
                providers=providers(),
                disabled_optimizers=[NCHWC] if _crashes_nchwc(self.path) else None,
            )
        except Exception as error:  # onnxruntime raises its own untyped Fail/InvalidProtobuf
            raise UserError(
                f"{self.path}: ONNX Runtime {ort.__version__} cannot load this model "
                f"({ort_reason(error)})"
            ) from None
        graph_input = self.session.get_inputs()[0]
        if graph_input.type not in _NUMPY_TYPES:
            raise UserError(
                f"{self.path}: input {graph_input.name!r} is {graph_input.type}; "
                "expected float or float16 images"
            )
        self.input_name = graph_input.name
        self.input_type = _NUMPY_TYPES[graph_input.type]
        # A CUDA provider that cannot start (no driver, no GPU) falls back to the CPU quietly,
        # so the device is what the session actually got, not what was asked for.
        self.device = "cuda" if CUDA in self.session.get_providers() else "cpu"

    def infer(self, images: np.ndarray) -> np.ndarray:
        """Logits as float32, whatever precision the model computes in."""
        feed = {self.input_name: images.astype(self.input_type, copy=False)}
        (logits,) = self.session.run(None, feed)
        return logits.astype(np.float32, copy=False)


def _crashes_nchwc(path: Path) -> bool:
    """Whether building a session would run into ONNX Runtime's NCHWc null dereference.

    Since 1.24 its NCHWc layout pass (x86-64) dereferences a null operator on a float16
    Transpose that feeds a MatMul, directly or through a Cast, and the process dies with
    SIGSEGV while the session is built (onnxruntime issue 28392): `compress export --fp16` of
    a ViT, or any transformer, ended there with no message. The pass is skipped for such
    graphs only: on a float16 CNN it makes ONNX Runtime 1.7× faster (resnet20 and mobilenetv2,
    batch 64, one thread, 1.32). A file onnx cannot read is left to ONNX Runtime to report.
    """
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # onnx raises DecodeError, OSError, ...: ONNX Runtime names it better
        return False
    if onnx_precision(model) != "fp16":
        return False
    graph = model.graph
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def reaches_matmul(name: str, through_cast: bool) -> bool:
        for node in consumers.get(name, []):
            if node.op_type == "MatMul":
                return True
            if through_cast and node.op_type == "Cast" and reaches_matmul(node.output[0], False):
                return True
        return False

    return any(
        node.op_type == "Transpose" and reaches_matmul(node.output[0], True) for node in graph.node
    )


def ort_reason(error: Exception) -> str:
    """ONNX Runtime's messages start with a C++ source location; keep what follows it."""
    text = " ".join(str(error).split())
    if "Protobuf parsing failed" in text:
        return "the file is truncated, corrupt or not ONNX"
    marker = text.rfind(") ")
    if "onnxruntime::" in text and marker != -1:
        text = text[marker + 2 :]
    return text[:300] if text else short_reason(error)
