"""Wide ResNets WRN-d-k (Zagoruyko & Komodakis, 2016) for 32x32 inputs.

Pre-activation basic blocks, (d - 4) / 6 per stage, widths 16k / 32k / 64k. Parameter names
follow the widely used WideResNet-pytorch / RepDistiller code (`block1.layer.0.bn1`,
`convShortcut`, `fc`), so teachers trained with those repositories load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from compressor.models.registry import register_model


class WideBasicBlock(nn.Module):
    """BN-ReLU-conv3x3 → BN-ReLU-dropout-conv3x3, plus a 1x1 conv shortcut when shapes change."""

    def __init__(self, in_planes: int, planes: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.equal_in_out = in_planes == planes and stride == 1
        self.convShortcut = (
            None if self.equal_in_out else nn.Conv2d(in_planes, planes, 1, stride, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn1(x))
        out = self.conv1(pre)
        out = self.conv2(self.dropout(F.relu(self.bn2(out))))
        # Where the shape changes, the shortcut sees the pre-activated input (as the paper's
        # code does); otherwise the raw input.
        shortcut = x if self.convShortcut is None else self.convShortcut(pre)
        return shortcut + out


class NetworkBlock(nn.Module):
    def __init__(self, blocks: int, in_planes: int, planes: int, stride: int, dropout: float):
        super().__init__()
        self.layer = nn.Sequential(WideBasicBlock(in_planes, planes, stride, dropout))
        for _ in range(blocks - 1):
            self.layer.append(WideBasicBlock(planes, planes, 1, dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class WideResNet(nn.Module):
    def __init__(
        self,
        depth: int,
        widen_factor: int,
        num_classes: int,
        in_channels: int = 3,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"depth must be 6n+4 with n >= 1 (10, 16, 22, 28, 40), got {depth}")
        if widen_factor < 1:
            raise ValueError(f"widen_factor must be >= 1, got {widen_factor}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        blocks = (depth - 4) // 6
        widths = (16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        self.conv1 = nn.Conv2d(in_channels, 16, 3, stride=1, padding=1, bias=False)
        self.block1 = NetworkBlock(blocks, 16, widths[0], 1, dropout)
        self.block2 = NetworkBlock(blocks, widths[0], widths[1], 2, dropout)
        self.block3 = NetworkBlock(blocks, widths[1], widths[2], 2, dropout)
        self.bn1 = nn.BatchNorm2d(widths[2])
        self.num_features = widths[2]
        self.fc = nn.Linear(widths[2], num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        return F.adaptive_avg_pool2d(F.relu(self.bn1(out)), 1).flatten(1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def wide_resnet(
    num_classes: int,
    in_channels: int = 3,
    depth: int = 16,
    widen_factor: int = 2,
    dropout: float = 0.0,
) -> WideResNet:
    """Any WRN-d-k. Not registered, so the zoo lists only the usual ones; reach it from a
    recipe as `entrypoint: compressor.models.wide_resnet:wide_resnet` with
    `kwargs: {depth: 22, widen_factor: 8}`."""
    return WideResNet(depth, widen_factor, num_classes, in_channels, dropout)


def _register(depth: int, widen_factor: int) -> None:
    def build(num_classes: int, in_channels: int = 3, dropout: float = 0.0) -> WideResNet:
        return WideResNet(depth, widen_factor, num_classes, in_channels, dropout)

    build.__doc__ = f"WRN-{depth}-{widen_factor}."
    register_model(f"wrn{depth}_{widen_factor}")(build)


for _depth, _widen in ((16, 1), (16, 2), (16, 4), (16, 8), (28, 10), (40, 1), (40, 2), (40, 4)):
    _register(_depth, _widen)
