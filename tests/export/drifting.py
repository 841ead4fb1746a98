"""A teacher whose exported graph is not the model PyTorch runs: while being exported it
scales its logits by 1.5, as a model with an export-only code path (a fused kernel swapped for
a reference op, a branch on `torch.compiler.is_exporting()`) can. Top-1 is unchanged, the
logits are not: parity fails on max |diff| alone. Named as `entrypoint:` in a test recipe."""

from __future__ import annotations

import torch
from torch import nn

from tests.export.helpers import seeded_build


class DriftingNet(nn.Module):
    def __init__(self, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.head = nn.Linear(8, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.head(torch.relu(self.conv(images)).mean(dim=(2, 3)))
        return logits * 1.5 if torch.compiler.is_exporting() else logits


def build(num_classes: int, in_channels: int, seed: int | None = 0) -> nn.Module:
    return seeded_build(lambda: DriftingNet(num_classes, in_channels), seed)
