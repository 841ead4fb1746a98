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
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for type checkers: the names' real types, not the Any of __getattr__
    from export.latency import Latency as Latency
    from export.latency import measure_latency as measure_latency
    from export.onnx_export import export_onnx as export_onnx
    from export.onnx_inspect import onnx_precision as onnx_precision
    from export.onnx_inspect import read_metadata as read_metadata
    from export.onnxruntime_runner import OnnxRuntimeRunner as OnnxRuntimeRunner
    from export.pipeline import export_run as export_run
    from export.results import ExportReport as ExportReport
    from export.settings import ExportOptions as ExportOptions
    from export.validate import EvalSet as EvalSet
    from export.validate import Parity as Parity
    from export.validate import Tolerance as Tolerance
    from export.validate import accuracy as accuracy
    from export.validate import parity as parity
    from export.validate import predict as predict

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
