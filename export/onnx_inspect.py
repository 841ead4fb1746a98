"""What an ONNX file says about itself: its metadata, opset and precision.

onnx only, no torch: a deployment box validating an artifact reads these (DESIGN.md: the
deployment side needs onnxruntime + numpy, not the training stack).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx

from compressor.io import loads_json

# Operators that only appear in quantised graphs (QDQ or QOperator form).
_QUANTIZED_OPS = frozenset(
    {
        "QuantizeLinear",
        "DequantizeLinear",
        "DynamicQuantizeLinear",
        "QLinearConv",
        "QLinearMatMul",
        "ConvInteger",
        "MatMulInteger",
    }
)


def read_metadata(path: Path | str) -> dict[str, Any]:
    """metadata_props of an ONNX file, JSON values decoded (lists, numbers) where they parse."""
    proto = onnx.load(str(path), load_external_data=False)
    values: dict[str, Any] = {}
    for entry in proto.metadata_props:
        try:
            values[entry.key] = loads_json(entry.value)
        except ValueError:
            values[entry.key] = entry.value
    return values


def onnx_opset(proto: onnx.ModelProto) -> int:
    """The default-domain (ai.onnx) opset a model is stamped with."""
    versions = [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")]
    return versions[0] if versions else 0


def onnx_precision(proto: onnx.ModelProto) -> str:
    """ "int8" for a quantised graph, "fp16" for float16 inputs or weights, else "fp32"."""
    if any(node.op_type in _QUANTIZED_OPS for node in proto.graph.node):
        return "int8"
    graph_input = next(iter(proto.graph.input), None)
    if (
        graph_input is not None
        and graph_input.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    ):
        return "fp16"
    kinds = [init.data_type for init in proto.graph.initializer]
    if kinds and kinds.count(onnx.TensorProto.FLOAT16) > kinds.count(onnx.TensorProto.FLOAT):
        return "fp16"
    return "fp32"
