"""torch → ONNX, and reading ONNX files back with errors a user can act on.

Exporter: torch 2.14's default, torch.export-based `torch.onnx.export(..., dynamo=True)`,
with `dynamic_shapes` for the batch axis. Why this one:
  * it is the maintained path; the TorchScript exporter warns that it will be removed;
  * its graph optimiser folds batch norm into the convolutions, so a ResNet-20 becomes 56
    ONNX nodes instead of 118 (less work for ONNX Runtime and TensorRT, same numbers);
  * it exports `torch.export` (.pt2) teachers, which the TorchScript exporter cannot (tracing
    calls `train()`, which those modules refuse).
Its cost: it implements opset 18 and newer; a lower opset is reached by a down-conversion
that has no adapter for some operators (Pad, used by the CIFAR ResNets' shortcuts). A model
that comes out at another opset than asked is refused with the fix, never written silently.
The one exception is a TorchScript teacher: torch.export cannot take a ScriptModule, so it
goes through the TorchScript exporter, the only one that accepts it.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from compressor.errors import UserError, short_reason
from compressor.interrupt import stop
from compressor.io import write_bytes
from export.onnx_inspect import onnx_opset

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
BATCH_AXIS = "batch"
# ONNX Runtime's oldest supported opset; older files need an upgrade before anything else.
MIN_OPSET = 7
# The oldest opset torch's exporter writes natively; lower ones go through a down-conversion.
EXPORTER_OPSET = 18


def export_onnx(
    model: nn.Module,
    path: Path | str,
    *,
    image_shape: Sequence[int],
    opset: int,
    metadata: Mapping[str, Any],
    half: bool = False,
    name: str = "model",
) -> onnx.ModelProto:
    """Export `model` (images [batch, C, H, W] → logits [batch, classes]) to `path`.

    The batch axis is dynamic, so one file serves batch 1 and throughput batches. `metadata`
    goes into `metadata_props` (non-string values as JSON), where any ONNX consumer can read
    the class names and preprocessing without this package. `half` exports a float16 copy
    (float16 inputs, weights and outputs): the form a strongly typed TensorRT network needs
    for FP16. The file is checked with `onnx.checker` and written atomically.
    """
    path = Path(path)
    # Flags set directly, not model.eval(): modules from torch.export programs refuse eval().
    for module in model.modules():
        module.training = False
    example = torch.zeros(2, *image_shape)  # batch 2: torch.export specialises a batch of 1
    if half:
        model = copy.deepcopy(model).half()
        example = example.half()
    try:
        proto = _export(model, example, opset)
    except Exception as error:
        if stop.signal is not None:  # a Ctrl-C that torch's exporter made an error of its own
            raise KeyboardInterrupt from error
        scripted = isinstance(model, torch.jit.ScriptModule)  # its exporter writes opset 7+
        if not scripted and opset < EXPORTER_OPSET and _exports_at(model, example, EXPORTER_OPSET):
            # torch < 2.9 fails inside the exporter, not in the down-conversion afterwards.
            raise _opset_refusal(name, opset, EXPORTER_OPSET) from error
        skip = "; export without it: --no-teacher" if name == "teacher" else ""
        raise UserError(
            f"{name}: torch.onnx.export cannot export this model ({_exporter_reason(error)})" + skip
        ) from error
    written = onnx_opset(proto)
    if written != opset:
        raise _opset_refusal(name, opset, written)
    onnx.helper.set_model_props(proto, metadata_strings(metadata))
    proto.doc_string = (
        "Image classifier. Input: float NCHW, pixels scaled to [0, 1] then (x - mean) / std "
        "per channel (metadata_props mean, std). Output: logits, one per class "
        "(metadata_props classes)."
    )
    if proto.ByteSize() >= onnx.checker.MAXIMUM_PROTOBUF:
        raise UserError(f"{name}: the model is over 2 GB, too large for one ONNX file")
    write_checked(proto, path, f"{name}: the exported ONNX model")
    return proto


def _export(model: nn.Module, example: torch.Tensor, opset: int) -> onnx.ModelProto:
    """One export at `opset`, quietly: torch.export-based, or TorchScript's exporter for the
    ScriptModules it alone accepts."""
    with _quiet_exporter():
        if isinstance(model, torch.jit.ScriptModule):
            return _export_torchscript(model, example, opset)
        program = torch.onnx.export(
            model,
            (example,),
            None,
            dynamo=True,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: torch.export.Dim(BATCH_AXIS)},),
            verbose=False,
        )
        assert program is not None  # dynamo=True always returns the program
        return program.model_proto


def _exports_at(model: nn.Module, example: torch.Tensor, opset: int) -> bool:
    """Whether the model exports at `opset`: tells a failure of the asked opset from one of
    the model, so the user hears the fix that works."""
    try:
        _export(model, example, opset)
    except Exception:
        return False
    return True


def _opset_refusal(name: str, asked: int, lowest: int) -> UserError:
    return UserError(
        f"{name}: ONNX opset {asked} is not supported for this model: torch's exporter "
        f"implements opset {lowest} and newer and could not convert it down (an operator "
        f"has no down-conversion); use --opset {lowest} or set export.opset: {lowest}"
    )


def write_checked(proto: onnx.ModelProto, path: Path, what: str) -> None:
    """`onnx.checker` first, then an atomic write: a file on disk is always a valid model."""
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as error:
        raise UserError(f"{what} fails onnx.checker ({short_reason(error)})") from error
    write_bytes(path, proto.SerializeToString())


def _export_torchscript(model: torch.jit.ScriptModule, example: torch.Tensor, opset: int):
    buffer = io.BytesIO()
    torch.onnx.export(
        model,
        (example,),
        buffer,  # type: ignore[arg-type]  # the legacy exporter writes to a file object too
        dynamo=False,
        opset_version=opset,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_axes={INPUT_NAME: {0: BATCH_AXIS}, OUTPUT_NAME: {0: BATCH_AXIS}},
    )
    return onnx.load_from_string(buffer.getvalue())


def _exporter_reason(error: Exception) -> str:
    """The root cause from the exporter's multi-paragraph message, without its colour codes.

    The dynamo exporter ends its message with an "## Exception summary" whose first line is
    the underlying error (e.g. "DispatchError: No ONNX function found for <custom op>").
    """
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    _, found, summary = text.partition("## Exception summary")
    if not found:
        return short_reason(error)
    line = next((line for line in summary.splitlines() if line.strip()), "")
    line = re.sub(r"^<class '(?:[\w]+\.)*(\w+)'>", r"\1", line.strip())
    return line.split(". Failure message")[0][:300]


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's chatter: deprecation notices, the version converter's logged
    tracebacks, torch.export's graph dumps. None of it is actionable for a user; what matters
    is raised (and shown with --debug) or checked after the export."""
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        # torch.export prints a failed trace's partial graph straight to sys.stderr.
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


def metadata_strings(metadata: Mapping[str, Any]) -> dict[str, str]:
    """`metadata_props` hold strings: other values as JSON."""
    return {
        key: value if isinstance(value, str) else json.dumps(value)
        for key, value in metadata.items()
    }


def load_onnx(path: Path | str) -> onnx.ModelProto:
    """Read and check an ONNX file someone else made: one clear line for each way it can fail."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a folder, not an ONNX file (name the .onnx file in it)")
    if not path.is_file():
        raise UserError(f"{path}: ONNX file not found (check the path)")
    try:
        proto = onnx.load(str(path))
    except Exception as error:
        raise UserError(
            f"{path}: not a readable ONNX model: the file is truncated, corrupt or not ONNX "
            f"({short_reason(error)})"
        ) from None
    if not proto.opset_import and not proto.graph.node:
        # Protobuf parses many short files (`{}`, a few text bytes) as an empty message.
        raise UserError(f"{path}: not an ONNX model (it holds no graph); give an .onnx file")
    opset = onnx_opset(proto)
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise UserError(
            f"{path}: ONNX opset {opset or 'missing'} is not supported; this onnx "
            f"{onnx.__version__} knows opsets {MIN_OPSET} to {newest}: re-export the model "
            "with one of those"
        )
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as error:
        raise UserError(f"{path}: not a valid ONNX model ({short_reason(error)})") from None
    return proto


def graph_inputs(proto: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """The inputs a caller feeds: files written with IR version < 4 also list every weight
    (initializer) as a graph input."""
    initializers = {tensor.name for tensor in proto.graph.initializer}
    return [i for i in proto.graph.input if i.name not in initializers]


def input_name(path: Path) -> str:
    """The image input's name: ours is INPUT_NAME, a --student-onnx file made elsewhere names
    it as it likes, and TensorRT's optimisation profile is set by name."""
    return graph_inputs(onnx.load(str(path), load_external_data=False))[0].name


def check_classifier_io(
    proto: onnx.ModelProto, path: Path, image_shape: Sequence[int], num_classes: int
) -> None:
    """The file must take this run's images and return one logit per class of its data. A size
    the file leaves open (a named or unknown dimension: any height and width) is not refused
    here; running it (given_student) shows whether it takes these images."""
    inputs = graph_inputs(proto)
    if len(inputs) != 1 or len(proto.graph.output) != 1:
        raise UserError(
            f"{path}: the model has {len(inputs)} inputs and {len(proto.graph.output)} outputs; "
            "an image classifier has one of each"
        )
    got_in = _dims(inputs[0])
    got_out = _dims(proto.graph.output[0])
    if len(got_in) != 1 + len(image_shape) or not all(map(_fits, got_in[1:], image_shape)):
        raise UserError(
            f"{path}: takes input {got_in}, the run's images are [batch, "
            f"{', '.join(map(str, image_shape))}]"
        )
    if len(got_out) != 2 or not _fits(got_out[1], num_classes):
        raise UserError(
            f"{path}: returns {got_out}, expected [batch, {num_classes}] logits for the run's "
            f"{num_classes} classes"
        )


def fixed_batch(proto: onnx.ModelProto) -> int | None:
    """The batch size a model's image input is fixed at; None when it is dynamic."""
    image = graph_inputs(proto)[0]
    batch = _dims(image)[0] if _dims(image) else None
    return batch if isinstance(batch, int) and batch > 0 else None


def _fits(dimension: int | str, size: int) -> bool:
    """A named dimension ("h") or an unknown one (0) takes any size; a number, only its own."""
    return not isinstance(dimension, int) or dimension in (0, size)


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
