"""Pick the device and the numeric settings that make training fast there.

CUDA gets mixed precision (bf16 where the GPU supports it, else fp16 with loss scaling). CUDA
and the CPU both get channels_last: cuDNN and oneDNN pick faster convolution kernels for it
(measured on the 2-core CPU: ResNet-56 inference +30 %, ResNet-8 training +50 %). The CPU
keeps fp32: CPU autocast is slower than fp32 on most machines and would only cost accuracy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from compressor.errors import UserError
from compressor.recipe import TrainConfig


@dataclass(frozen=True)
class DeviceSetup:
    device: torch.device
    amp_dtype: torch.dtype | None  # None: train in fp32
    channels_last: bool

    @property
    def needs_grad_scaler(self) -> bool:
        return self.amp_dtype is torch.float16

    def autocast(self) -> torch.autocast:
        return torch.autocast(
            self.device.type,
            dtype=self.amp_dtype or torch.float32,
            enabled=self.amp_dtype is not None,
        )


def _tf32_switches() -> list[tuple[object, str, object]]:
    """Every process-wide switch that lets fp32 math run as TF32, with its full-fp32 value.

    torch >= 2.9 has one `fp32_precision` per backend and raises when the legacy `allow_tf32`
    is read after code (the user's, or a library's) set the two cuDNN backends apart through
    the new one; older torch has only `allow_tf32`.
    """
    backends = torch.backends
    if hasattr(backends.cudnn, "conv") and hasattr(backends.cuda.matmul, "fp32_precision"):
        return [
            (backends.cuda.matmul, "fp32_precision", "ieee"),
            (backends.cudnn.conv, "fp32_precision", "ieee"),
            (backends.cudnn.rnn, "fp32_precision", "ieee"),
        ]
    return [(backends.cuda.matmul, "allow_tf32", False), (backends.cudnn, "allow_tf32", False)]


@contextlib.contextmanager
def full_fp32() -> Iterator[None]:
    """Switch TF32 off while the block runs, and restore exactly what was set.

    cuDNN computes fp32 convolutions in TF32 by default, which moves logits by ~1e-3: enough
    to make PyTorch-vs-export parity measure TF32 instead of the export, and to flip the odd
    top-1 prediction. Harmless on the CPU.
    """
    switches = _tf32_switches()
    saved = [getattr(owner, name) for owner, name, _ in switches]
    for owner, name, value in switches:
        setattr(owner, name, value)
    try:
        yield
    finally:
        for (owner, name, _), value in zip(switches, saved, strict=True):
            setattr(owner, name, value)


@contextlib.contextmanager
def restored_torch_settings() -> Iterator[None]:
    """Put back the process-wide torch settings a run changes, however the run ends.

    `train.num_threads` and `train.deterministic` set process globals. A caller that runs
    several recipes in one process (benchmarks/quality.py, a notebook, the tests) must not
    have one run's settings carry over into the next, or into its own code afterwards.
    """
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


def select_device(spec: str) -> torch.device:
    """`auto` prefers cuda, then mps, then cpu; an explicit device must exist."""
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(
                f"train.device is {spec!r} but no CUDA GPU is visible; use 'auto' or 'cpu'"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(
                f"train.device is {spec!r} but only {torch.cuda.device_count()} GPU(s) are visible"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError("train.device is 'mps' but MPS is not available; use 'auto' or 'cpu'")
    return device


def _amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    if amp == "off" or device.type != "cuda":
        if amp in ("bf16", "fp16") and device.type != "cuda":
            raise UserError(
                f"train.amp is {amp!r} but the device is {device.type}; mixed precision is for "
                "CUDA here: use amp: auto or off"
            )
        return None
    if amp == "fp16":
        return torch.float16
    if amp == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def setup_device(config: TrainConfig) -> DeviceSetup:
    device = select_device(config.device)
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    channels_last = (
        config.channels_last
        if config.channels_last is not None
        else (device.type in ("cuda", "cpu"))
    )
    return DeviceSetup(device, _amp_dtype(config.amp, device), channels_last)
