"""PyTorch eager as a backend: the reference every export is compared with, and the baseline
latency. numpy images in, numpy float32 logits out, like the other runners.

fp32 means fp32 here: on CUDA, TF32 convolutions and matmuls are switched off while this
runner computes, or the reference itself would be off by ~1e-3 and parity would measure
TF32 instead of the export. channels_last is the faster layout for convolutions on both
CPU (oneDNN) and CUDA, so the eager baseline is not handicapped by its memory format.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from compressor.engine.device import full_fp32


def default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


class TorchRunner:
    backend = "pytorch"

    def __init__(self, model: nn.Module, device: torch.device | None = None) -> None:
        self.torch_device = device or default_device()
        self.device = self.torch_device.type
        on_device = model.to(self.torch_device)
        self.model = on_device.to(memory_format=torch.channels_last)

    def infer(self, images: np.ndarray) -> np.ndarray:
        batch = torch.from_numpy(images).to(self.torch_device)
        batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), full_fp32():
            logits = self.model(batch)
        return logits.float().cpu().numpy()
