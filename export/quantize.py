"""INT8 post-training quantisation: an fp32 ONNX file in, a static Q/DQ ONNX file out.

ONNX Runtime's own tools do the work (`quant_pre_process`, then `quantize_static` in QDQ form),
so the file is the standard explicit-quantisation format that ONNX Runtime, TensorRT and other
runtimes all read; this module only decides the settings and turns failures into one line.

Choices, each measured or forced by a consumer:
* Calibration images are drawn class-balanced from the training split with a fixed seed and
  preprocessed exactly as at evaluation (no augmentation): the test split the report scores
  on must never set the scales, and the same recipe must give the same file.
* Weights are int8, symmetric, per output channel by default (ONNX Runtime's recommendation
  for convolutions; per tensor loses more accuracy on depthwise layers).
* Activations are uint8 (asymmetric) for ONNX Runtime on the CPU: on this repo's x86 CI machine
  a ResNet-20 at batch 64 runs 2.4x faster than fp32 in U8S8 form, but 0.8x in S8S8 form
  (ONNX Runtime's x86 int8 kernels are built around u8 activations). TensorRT accepts only
  symmetric int8 activations (zero point 0), so with `--trt` the one file is made S8S8
  symmetric and serves both backends (`export.int8.activations: auto`).
* Weights are 7-bit (ONNX Runtime's reduce_range) on an x86 CPU without VNNI: its int8
  kernels add pairs of 8-bit products in 16 bits, which saturate. On such a CPU (an AMD EPYC
  with AVX2 only) a ResNet-8 on the digits agreed with PyTorch on 95.6 % of the test images
  with uint8 activations and 86.4 % with int8 (TensorRT's form), and on 99 % and more with
  7-bit weights. With VNNI they do not saturate and the full 8 bits are kept
  (`export.int8.reduce_range: auto`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from compressor.data.sets import balanced_indices
from compressor.errors import UserError, short_reason, warn_caller
from compressor.io import what_to_do
from compressor.provenance import x86_without_vnni
from compressor.recipe import Int8Config
from export.onnx_export import graph_inputs, metadata_strings, write_checked
from export.onnx_inspect import onnx_precision
from export.validate import EvalSet

CALIBRATION_BATCH = 64
_QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


@dataclass(frozen=True)
class Int8Settings:
    """What one quantised file was made with; recorded in its metadata and the report."""

    calibration_images: int
    calibration_seed: int  # which training images were drawn: two draws quantise differently
    calibration_method: str
    per_channel: bool
    activations: str  # "uint8" | "int8"
    reduce_range: bool  # 7-bit weights

    def metadata(self) -> dict[str, str]:
        return {
            "int8_calibration_images": str(self.calibration_images),
            "int8_calibration_seed": str(self.calibration_seed),
            "int8_calibration_method": self.calibration_method,
            "int8_per_channel": str(self.per_channel).lower(),
            "int8_activations": self.activations,
            "int8_weights": "int7 symmetric" if self.reduce_range else "int8 symmetric",
        }


def resolve_settings(config: Int8Config, *, tensorrt: bool) -> Int8Settings:
    """The recipe's `export.int8` section, with `activations: auto` decided by the backends."""
    activations = config.activations
    if activations == "auto":
        activations = "int8" if tensorrt else "uint8"
    elif activations == "uint8" and tensorrt:
        raise UserError(
            "export.int8.activations is uint8, but TensorRT (--trt) takes symmetric int8 "
            "activations only; set it to int8 or auto, or drop --trt"
        )
    reduce_range = config.reduce_range
    if reduce_range == "auto":
        reduce_range = x86_without_vnni()
    return Int8Settings(
        calibration_images=config.calibration_images,
        calibration_seed=config.seed,
        calibration_method=config.calibration_method,
        per_channel=config.per_channel,
        activations=activations,
        reduce_range=reduce_range,
    )


def calibration_batch(
    train: EvalSet, count: int, seed: int, max_train_samples: int | None = None
) -> np.ndarray:
    """`count` training images, class-balanced, normalised as at evaluation: float32 NCHW.
    `max_train_samples` is the run's data.max_train_samples: when it made the split this
    small, the message says so."""
    if count > len(train):
        cut = max_train_samples is not None and max_train_samples == len(train)
        raise UserError(
            f"{count} calibration images asked for (--calibration-images, or "
            f"export.int8.calibration_images in the recipe), but the training split has only "
            f"{len(train)} images"
            + (f" (the run's data.max_train_samples {max_train_samples})" if cut else "")
            + (
                f"; calibrate on all of them with --calibration-images {len(train)} (or "
                f"export.int8.calibration_images: {len(train)})"
                if len(train) >= 32
                else "; INT8 needs at least 32: train on more images"
            )
        )
    index = balanced_indices(train.labels, count, seed)
    chosen = EvalSet(train.name, train.images[index], train.labels[index], train.mean, train.std)
    return chosen.batch(0, count)


def quantize_int8(
    source: Path,
    target: Path,
    images: np.ndarray,
    settings: Int8Settings,
    *,
    name: str,
    metadata: Mapping[str, Any] | None = None,
    warn: Callable[[str], None] = warn_caller,
) -> None:
    """Write `target`, the static INT8 Q/DQ form of the fp32 ONNX file `source`.

    Calibration runs the model in ONNX Runtime on `images`. Anything ONNX Runtime's tools
    cannot do with the model ends in one UserError naming the file; `target` is written
    atomically, only once the quantised model has passed `onnx.checker`. `metadata` (the
    run's classes, mean/std, ...) goes over `source`'s own, which a file made elsewhere
    (--student-onnx) may lack.
    """
    source = source.resolve()  # the pre-processing step runs in a scratch directory
    fp32 = onnx.load(str(source))
    precision = onnx_precision(fp32)
    if precision != "fp32":
        raise UserError(
            f"{source}: is already {precision}; --int8 quantises an fp32 model: give the fp32 "
            "file to --student-onnx, or drop --int8"
        )
    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    activation_type = QuantType.QUInt8 if settings.activations == "uint8" else QuantType.QInt8
    with tempfile.TemporaryDirectory(prefix="compressor-int8-") as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quantized = Path(scratch) / "quantized.onnx"
        try:
            # Shape inference and graph fusions first, as ONNX Runtime recommends: scales are
            # then calibrated on the graph that will actually run. In the scratch directory,
            # because its symbolic shape inference dumps a file into the working directory
            # when it fails.
            with _working_directory(Path(scratch)), _optimisation_failures() as failures:
                quant_pre_process(str(source), str(prepared))
            for failure in failures:
                warn(
                    f"{name}: ONNX Runtime could not optimise the graph before quantising it "
                    f"({failure}); it is quantised as exported"
                )
            with _without_norm_axis_warnings(), warnings.catch_warnings():
                # numpy's "All-NaN axis" from calibration on NaN activations: the failure
                # that follows says what went wrong, in one line.
                warnings.filterwarnings("ignore", category=RuntimeWarning, module="onnxruntime")
                quantize_static(
                    str(prepared),
                    str(quantized),
                    _CalibrationReader(graph_inputs(fp32)[0].name, images),
                    quant_format=QuantFormat.QDQ,
                    per_channel=settings.per_channel,
                    activation_type=activation_type,
                    weight_type=QuantType.QInt8,
                    reduce_range=settings.reduce_range,
                    calibrate_method=methods[settings.calibration_method],
                    extra_options={
                        "ActivationSymmetric": settings.activations == "int8",
                        "WeightSymmetric": True,
                    },
                )
            model = onnx.load(str(quantized))
        except UserError:
            raise
        except OSError as error:
            # The scratch folder is gone by the time this is read: its parent is named.
            where = Path(scratch).parent
            fix = what_to_do(where, error.errno)
            if fix is None:  # not the scratch folder's disk: the tools failed on the model
                raise _cannot_quantise(name, source, error) from None
            raise UserError(
                f"{name}: cannot write ONNX Runtime's quantisation files in {where} "
                f"({error.strerror}); {fix} (TMPDIR chooses where they go)"
            ) from None
        except MemoryError as error:
            raise _out_of_memory(name, len(images), settings) from error
        except Exception as error:  # onnxruntime raises untyped Fail/RuntimeError/KeyError
            if any(words in str(error) for words in _ALLOCATION_FAILED):
                raise _out_of_memory(name, len(images), settings) from None
            raise _cannot_quantise(name, source, error) from None
    if not any(node.op_type in _QDQ_OPS for node in model.graph.node):
        raise UserError(
            f"{name}: ONNX Runtime found nothing to quantise in {source.name} (no Conv, "
            "MatMul or Gemm with constant weights); INT8 would equal fp32: drop --int8"
        )
    _copy_metadata(fp32, model, settings, metadata or {})
    _drop_unused_domains(model)
    write_checked(model, target, f"{name}: the INT8 model")


def _drop_unused_domains(model: onnx.ModelProto) -> None:
    """The pre-processing optimiser declares ONNX Runtime's own operator domains
    (com.microsoft.nchwc, ai.onnx.training, ...) whether or not a node uses them; a runtime
    that does not know a declared domain may refuse the file, so only those in use stay."""
    used = {node.domain for node in _all_nodes(model.graph)}
    used |= {function.domain for function in model.functions}
    kept = [entry for entry in model.opset_import if entry.domain in ("", "ai.onnx", *used)]
    del model.opset_import[:]
    model.opset_import.extend(kept)


def _all_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every node, those of subgraphs (If, Loop, Scan) included."""
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            for subgraph in [attribute.g, *attribute.graphs]:
                yield from _all_nodes(subgraph)


# ONNX Runtime's words, in the error it raises, when its allocator ran out of memory.
_ALLOCATION_FAILED = ("Failed to allocate", "bad_alloc")


def _out_of_memory(name: str, images: int, settings: Int8Settings) -> UserError:
    """Entropy and percentile calibration keep every activation of every calibration image
    (about 2 MB per CIFAR image for a ResNet-20): a count that minmax handles can exhaust
    memory with them."""
    method = settings.calibration_method
    fix = " or export.int8.calibration_method: minmax" if method != "minmax" else ""
    return UserError(
        f"{name}: out of memory calibrating {images} images with {method} ranges; give "
        f"fewer --calibration-images{fix}"
    )


def _cannot_quantise(name: str, source: Path, error: Exception) -> UserError:
    if "scale issue" in str(error):  # ONNX Runtime's assertion on a NaN or infinite range
        return UserError(
            f"{name}: ONNX Runtime cannot quantise {source.name} to INT8: its activations on "
            "the calibration images are NaN or infinite (AssertionError: scale issue), so the "
            "model itself is broken; train it again (a lower train.optimizer.lr)"
        )
    return UserError(
        f"{name}: ONNX Runtime cannot quantise {source.name} to INT8 ({short_reason(error)}); "
        "export without --int8, or quantise it elsewhere and validate it with --student-onnx"
    )


class _Kept(logging.Handler):
    """Keeps the records it is given, to be read instead of printed."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def _optimisation_failures() -> Iterator[list[str]]:
    """ONNX Runtime's pre-processing logs a failed graph optimisation (a full TMPDIR, say)
    as a traceback on stderr, with advice for its own command line (`--skip_optimization`),
    and goes on without it: kept from the terminal here, each failure's last line given back
    once the block ends, for one warning each (or for nothing, where an error follows)."""
    logger = logging.getLogger("onnxruntime.quantization.shape_inference")
    kept, propagated = _Kept(), logger.propagate
    logger.addHandler(kept)
    logger.propagate = False
    failures: list[str] = []
    try:
        yield failures
    finally:
        logger.removeHandler(kept)
        logger.propagate = propagated
        for record in kept.records:
            lines = [line for line in record.getMessage().splitlines() if line.strip()]
            if lines and lines[0].startswith("Traceback"):
                failures.append(lines[-1].strip())


class _NormAxisFilter(logging.Filter):
    """Drops "Axis 1 is out-of-range for weight '...bn1.weight' with rank 1": ONNX Runtime
    (1.2x–1.3x) looks for the channel axis of a Batch-/Layer-/InstanceNormalization scale at
    axis 1, which a 1-D scale lacks, and quantises it per tensor instead. It logs one line per
    such layer on the root logger (a WRN-16-1: seven). Quantising those scales per channel
    instead (`QDQOpTypePerChannelSupportToAxis`) left INT8 agreement where it was, so the
    fallback stays and only the noise goes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Axis 1 is out-of-range for weight")


@contextlib.contextmanager
def _without_norm_axis_warnings() -> Iterator[None]:
    root = logging.getLogger()
    quiet = _NormAxisFilter()
    root.addFilter(quiet)
    try:
        yield
    finally:
        root.removeFilter(quiet)


@contextlib.contextmanager
def _working_directory(path: Path) -> Iterator[None]:
    """contextlib.chdir, which needs Python 3.11; this package supports 3.10."""
    previous = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def _copy_metadata(
    fp32: onnx.ModelProto,
    model: onnx.ModelProto,
    settings: Int8Settings,
    metadata: Mapping[str, Any],
) -> None:
    """The fp32 file's metadata (classes, mean/std, recipe hash) with `metadata` over it,
    marked int8, plus how it was quantised."""
    props = {entry.key: entry.value for entry in fp32.metadata_props}
    props.update(metadata_strings(metadata))
    props["precision"] = "int8"
    props.update(settings.metadata())
    onnx.helper.set_model_props(model, props)
    model.doc_string = fp32.doc_string


class _CalibrationReader(CalibrationDataReader):
    """One pass over the calibration images, CALIBRATION_BATCH at a time."""

    def __init__(self, input_name: str, images: np.ndarray) -> None:
        self._batches: Iterator[dict[str, np.ndarray]] = (
            {input_name: images[start : start + CALIBRATION_BATCH]}
            for start in range(0, len(images), CALIBRATION_BATCH)
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)
