"""The deployment side: ONNX export, ONNX Runtime and TensorRT runners, parity, latency, report.

    from export import ExportOptions, export_run
    report = export_run("runs/quickstart", ExportOptions(fp16=True))

Each step is a small function a user can call alone, Polygraphy-style:

    export_onnx(model, "m.onnx", image_shape=(3, 32, 32), opset=18, metadata={...})
    runner = OnnxRuntimeRunner("m.onnx")
    logits = predict(runner.infer, eval_set, batch_size=64)
    parity(reference, logits, Tolerance(1e-4, 99.9)); measure_latency(runner.infer, batch, ...)

It reads only a run directory and its recipe; training code (the methods, the training
loop) is never imported. Validating an ONNX file needs onnxruntime, onnx and
numpy only: `export.onnxruntime_runner`, `export.validate`, `export.latency` and
`export.onnx_inspect` import no torch, and neither does `compress gate`; exporting (and the
PyTorch reference) needs torch. The names below are loaded when first used, so importing this
package costs nothing a deployment box lacks.
"""

from __future__ import annotations

import importlib
from typing import Any

# Where each public name lives; `from export import X` imports only X's module.
_HOMES = {
    "EvalSet": "export.validate",
    "ExportOptions": "export.settings",
    "ExportReport": "export.results",
    "Latency": "export.latency",
    "OnnxRuntimeRunner": "export.onnxruntime_runner",
    "Parity": "export.validate",
    "Tolerance": "export.validate",
    "accuracy": "export.validate",
    "export_onnx": "export.onnx_export",
    "export_run": "export.pipeline",
    "measure_latency": "export.latency",
    "onnx_precision": "export.onnx_inspect",
    "parity": "export.validate",
    "predict": "export.validate",
    "read_metadata": "export.onnx_inspect",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'export' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
