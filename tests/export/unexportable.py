"""A teacher that runs in eager PyTorch but cannot be exported to ONNX: it calls a custom
operator that has no ONNX translation, as a model with a hand-written CUDA/C++ kernel does.
Named as `entrypoint:` in a test recipe."""

from __future__ import annotations

import torch
from torch import nn

from tests.export.helpers import seeded_build


@torch.library.custom_op("compressor_tests::soft_clip", mutates_args=())
def soft_clip(images: torch.Tensor) -> torch.Tensor:
    return torch.tanh(images)


@soft_clip.register_fake
def _(images: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(images)


class CustomOpNet(nn.Module):
    def __init__(self, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.head = nn.Linear(8, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(soft_clip(self.conv(images)).mean(dim=(2, 3)))


def build(num_classes: int, in_channels: int, seed: int | None = 0) -> nn.Module:
    return seeded_build(lambda: CustomOpNet(num_classes, in_channels), seed)
