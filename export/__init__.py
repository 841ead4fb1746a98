"""The deployment side: ONNX export, ONNX Runtime and TensorRT runners, parity, latency, report.

    from export import ExportOptions, export_run
    report = export_run("runs/quickstart", ExportOptions(fp16=True))

Each step is a small function a user can call alone, Polygraphy-style:

    export_onnx(model, "m.onnx", image_shape=(3, 32, 32), opset=18, metadata={...})
    runner = OnnxRuntimeRunner("m.onnx")
    logits = predict(runner.infer, eval_set, batch_size=64)
    parity(reference, logits, Tolerance(1e-4, 99.9)); measure_latency(runner.infer, batch, ...)

It reads only a run directory and its recipe; training code (compressor.engine,
compressor.methods) is never imported, so a deployment box needs torch only to rebuild the
PyTorch reference, and onnxruntime/tensorrt + numpy for the rest.
"""

from export.latency import Latency, measure_latency
from export.onnx_export import export_onnx, onnx_precision, read_metadata
from export.onnxruntime_runner import OnnxRuntimeRunner
from export.pipeline import ExportOptions, ExportReport, export_run
from export.validate import EvalSet, Parity, Tolerance, accuracy, parity, predict

__all__ = [
    "EvalSet",
    "ExportOptions",
    "ExportReport",
    "Latency",
    "OnnxRuntimeRunner",
    "Parity",
    "Tolerance",
    "accuracy",
    "export_onnx",
    "export_run",
    "measure_latency",
    "onnx_precision",
    "parity",
    "predict",
    "read_metadata",
]
