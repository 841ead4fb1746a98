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


@dataclass(frozen=True)
class _PrecisionSwitch:
    """One process-wide switch that decides whether fp32 math may run in lower precision."""

    owner: object
    name: str
    full_fp32: object  # the value that forces true fp32
    inherit: object | None = None  # the value that defers to the parent switch, if any

    def restore(self, value: object) -> None:
        """Put `value` back, as an inherited setting when it was one.

        torch's getters resolve `none` to what the parent switch says, so a saved value cannot
        tell an inherited setting from an explicit one; writing it back explicitly would pin
        it, and a later change of the parent (`torch.backends.cudnn.fp32_precision = ...`)
        would no longer reach it.
        """
        if self.inherit is not None:
            setattr(self.owner, self.name, self.inherit)
            if getattr(self.owner, self.name) == value:
                return
        setattr(self.owner, self.name, value)


def _precision_api_switches() -> list[_PrecisionSwitch] | None:
    """torch >= 2.9: one `fp32_precision` per backend (None on older torch). The CPU's oneDNN
    ones count too: under `torch.set_float32_matmul_precision("medium")` they run fp32
    matmuls in bf16. Used wherever it exists, because torch raises when the legacy
    `allow_tf32` is read after code set cuDNN's conv and RNN apart through this API."""
    backends = torch.backends
    try:
        leaves = [
            backends.cuda.matmul,
            # torch >= 2.9's, which its type stubs do not declare
            backends.cudnn.conv,  # type: ignore[attr-defined]
            backends.cudnn.rnn,  # type: ignore[attr-defined]
            backends.mkldnn.matmul,  # type: ignore[attr-defined]
            backends.mkldnn.conv,  # type: ignore[attr-defined]
            backends.mkldnn.rnn,  # type: ignore[attr-defined]
        ]
    except AttributeError:
        return None
    if not all(hasattr(leaf, "fp32_precision") for leaf in leaves):
        return None
    return [_PrecisionSwitch(leaf, "fp32_precision", "ieee", inherit="none") for leaf in leaves]


def _legacy_switches() -> list[_PrecisionSwitch]:
    """torch < 2.9: TF32 on CUDA only, through `allow_tf32`."""
    backends = torch.backends
    return [
        _PrecisionSwitch(backends.cuda.matmul, "allow_tf32", False),
        _PrecisionSwitch(backends.cudnn, "allow_tf32", False),
    ]


@contextlib.contextmanager
def full_fp32() -> Iterator[None]:
    """Run the block in true fp32 (no TF32, no bf16 matmuls), and restore what was set.

    cuDNN computes fp32 convolutions in TF32 by default, which moves logits by ~1e-3: enough
    to make PyTorch-vs-export parity measure TF32 instead of the export, and to flip the odd
    top-1 prediction.
    """
    switches = _precision_api_switches() or _legacy_switches()
    saved = [getattr(switch.owner, switch.name) for switch in switches]
    for switch in switches:
        setattr(switch.owner, switch.name, switch.full_fp32)
    try:
        yield
    finally:
        for switch, value in zip(switches, saved, strict=True):
            switch.restore(value)


@contextlib.contextmanager
def restored_torch_settings() -> Iterator[None]:
    """Put back the process-wide torch settings a run changes, however the run ends.

    `train.num_threads` and `train.deterministic` set process globals, and the run seeds
    torch's global random generators from `train.seed`. A caller that runs several recipes in
    one process (benchmarks/quality.py, a notebook, the tests) must not have one run's
    settings carry over into the next, or into its own code afterwards: its random stream
    goes on as if no run had drawn from it.
    """
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    # fork_rng puts back the CPU generator and those of the GPUs this process has used.
    gpus = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []

    def put_back() -> None:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)

    try:
        with torch.random.fork_rng(devices=gpus):
            yield
    except BaseException:
        # Stopped, perhaps while torch imported a module for the first time (torch._dynamo,
        # on the optimizer's first use): putting the settings back imports the half-loaded
        # torch._inductor, and its AttributeError replaced the Ctrl-C, a clean stop reported
        # as a crash. What stopped the run is what the caller hears.
        with contextlib.suppress(Exception):
            put_back()
        raise
    put_back()


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


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for train.amp on `device` (None: fp32). `auto` takes bf16 where the
    GPU has it, since bf16 needs no loss scaling."""
    if amp == "off" or device.type != "cuda":
        if amp in ("bf16", "fp16") and device.type != "cuda":
            raise UserError(
                f"train.amp is {amp!r} but the device is {device.type}; mixed precision is for "
                "CUDA: use amp: auto or off"
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
    return DeviceSetup(device, amp_dtype(config.amp, device), channels_last)
