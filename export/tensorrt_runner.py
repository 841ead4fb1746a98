"""TensorRT (the `[trt]` extra, NVIDIA GPUs only): engine from an ONNX file, then a runner.

Built with Polygraphy's loaders, which own the CUDA buffers and the host↔device copies, so
this stays numpy in → numpy out like the other runners and needs neither torch nor pycuda.

* Strongly typed network: TensorRT 10.12+ deprecates the builder's precision flags in favour
  of the network's own types, so FP16 comes from a float16 ONNX file (export.fp16), and an
  fp32 file builds an fp32 engine — no silent reduced precision.
* One optimisation profile over the batch axis: min 1, opt = the throughput batch, max = the
  largest batch the export uses.
* Engines are cached under `export/trt/`, named by the ONNX file's hash, the TensorRT version,
  the GPU, the precision and the profile: an engine only runs on the TensorRT build and GPU
  that made it, and a changed model or profile must never reuse a stale one. The timing cache
  (measured tactic timings) is keyed by TensorRT version and GPU only: it holds per-layer
  timings that every model built there can reuse, which is its whole point.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import numpy as np

from compressor.errors import UserError
from compressor.io import file_sha256, write_bytes
from export.onnx_export import input_name

# onnxruntime (a core dependency) and onnxruntime-gpu install the same `onnxruntime` module:
# after the extra, the CPU package goes and the GPU one is reinstalled over what it removed.
# The [trt] extra, then onnxruntime-gpu in place of the CPU build both wheels install as
# `onnxruntime`. In a clone the extra is `-e '.[trt]'`; from a wheel, `'compressor[trt]'`.
INSTALL_HINT = (
    "install compressor's [trt] extra (pip install -e '.[trt]' in a clone, or "
    "'<wheel>[trt]'), then pip uninstall -y onnxruntime && "
    "pip install --force-reinstall --no-deps onnxruntime-gpu"
)


def tensorrt_missing(gpu_available: bool) -> str | None:
    """What keeps TensorRT from running here, as one phrase; None when it can run."""
    problems = []
    packages = []
    try:
        import tensorrt as trt
    except (ImportError, OSError):  # OSError: the wheel is there but its CUDA libraries are not
        packages.append("TensorRT")
    else:
        if not hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
            problems.append(f"TensorRT {trt.__version__} is too old (10 or newer is needed)")
    try:
        import polygraphy  # noqa: F401
    except ImportError:
        packages.append("polygraphy")
    if packages:
        verb = "is" if len(packages) == 1 else "are"
        problems.insert(0, f"{' and '.join(packages)} {verb} not installed ({INSTALL_HINT})")
    if not gpu_available:
        problems.append("no NVIDIA GPU is visible (CUDA)")
    return "; ".join(problems) or None


def _quiet_polygraphy() -> None:
    from polygraphy.logger import G_LOGGER

    G_LOGGER.module_severity = G_LOGGER.ERROR


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-")


def engine_path(
    onnx_path: Path,
    cache_dir: Path,
    *,
    trt_version: str,
    gpu: str,
    precision: str,
    opt_batch: int,
    max_batch: int,
) -> Path:
    """Where the engine for this ONNX file, TensorRT, GPU, precision and profile lives.

    Both ends of the profile that vary are in the name: TensorRT tunes its kernels for the
    opt batch, so an engine built for batch 1 would time a batch-64 run with the wrong ones.
    """
    key = f"{file_sha256(onnx_path)[:16]}-trt{trt_version}-{_slug(gpu)}-{precision}"
    return cache_dir / f"{onnx_path.stem}-{key}-b{opt_batch}-{max_batch}.engine"


def timing_cache_path(cache_dir: Path, *, gpu: str) -> Path:
    import tensorrt as trt

    return cache_dir / f"timing-trt{trt.__version__}-{_slug(gpu)}.cache"


def build_engine(
    onnx_path: Path,
    cache_dir: Path,
    *,
    gpu: str,
    precision: str,
    image_shape: Sequence[int],
    opt_batch: int,
    max_batch: int,
) -> tuple[Path, bool]:
    """Build (or reuse) the engine for `onnx_path`; returns (engine file, reused?)."""
    import tensorrt as trt
    from polygraphy.backend.trt import (
        CreateConfig,
        EngineBytesFromNetwork,
        NetworkFromOnnxPath,
        Profile,
    )
    from polygraphy.exception import PolygraphyException

    _quiet_polygraphy()
    target = engine_path(
        onnx_path,
        cache_dir,
        trt_version=trt.__version__,
        gpu=gpu,
        precision=precision,
        opt_batch=opt_batch,
        max_batch=max_batch,
    )
    if target.is_file():
        return target, True
    cache_dir.mkdir(parents=True, exist_ok=True)
    timing_cache = timing_cache_path(cache_dir, gpu=gpu)
    shape = tuple(image_shape)
    profile = Profile().add(
        input_name(onnx_path), min=(1, *shape), opt=(opt_batch, *shape), max=(max_batch, *shape)
    )
    config = CreateConfig(
        profiles=[profile],
        load_timing_cache=str(timing_cache) if timing_cache.is_file() else None,
    )
    network = NetworkFromOnnxPath(str(onnx_path), strongly_typed=True)
    try:
        serialized = EngineBytesFromNetwork(network, config, save_timing_cache=str(timing_cache))()
    except PolygraphyException as error:
        raise UserError(
            f"{onnx_path}: TensorRT {trt.__version__} cannot build an engine "
            f"({' '.join(str(error).split())[:300]})"
        ) from None
    write_bytes(target, bytes(serialized))
    return target, False


class TensorRTRunner:
    """An execution context over one engine file; use it as a context manager."""

    backend = "tensorrt"
    device = "cuda"

    def __init__(self, engine_file: Path) -> None:
        import tensorrt as trt
        from polygraphy.backend.trt import EngineFromBytes, TrtRunner

        _quiet_polygraphy()
        self.engine_file = engine_file
        engine = EngineFromBytes(engine_file.read_bytes())()
        # A --student-onnx file names its input and output as it likes: read them off the engine.
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.input_name = inputs[0]
        self.output_name = next(n for n in names if n not in inputs)
        self.input_type = trt.nptype(engine.get_tensor_dtype(self.input_name))
        self._runner = TrtRunner(engine)

    def __enter__(self) -> TensorRTRunner:
        self._runner.activate()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._runner.deactivate()

    def infer(self, images: np.ndarray) -> np.ndarray:
        feed = {self.input_name: images.astype(self.input_type, copy=False)}
        outputs = self._runner.infer(feed)
        # The runner reuses its output buffers between calls: copy before the next one.
        return np.array(outputs[self.output_name], dtype=np.float32)
