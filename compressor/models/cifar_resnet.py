"""CIFAR ResNets (He et al., 2016, section 4.2): depth 6n+2, stages of 16/32/64 channels.

Parameter names and the parameter-free "option A" shortcut follow the widely used
akamaster/pytorch_resnet_cifar10 code, so its checkpoints (and users' checkpoints trained with
it) load unchanged once the `module.` prefix of DataParallel is stripped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from compressor.models.registry import register_model


class PadShortcut(nn.Module):
    """Option-A shortcut: subsample by 2 and zero-pad the new channels; no parameters.

    A module (not the reference's lambda) so models pickle, script and export; slicing and
    `F.pad` map to ONNX Slice and Pad.
    """

    def __init__(self, pad_channels: int) -> None:
        super().__init__()
        self.pad_channels = pad_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad_channels, self.pad_channels))


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        # In this family a block either keeps the shape or halves the size and doubles the
        # channels, so the reference pads planes // 4 channels on each side.
        changes_shape = stride != 1 or in_planes != planes
        self.shortcut: nn.Module = PadShortcut(planes // 4) if changes_shape else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """conv 3x3 (16) → 3 stages of n basic blocks → global average pool → linear."""

    def __init__(self, depth: int, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6n+2 with n >= 1 (8, 14, 20, ...), got {depth}")
        blocks = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = _stage(16, 16, blocks, stride=1)
        self.layer2 = _stage(16, 32, blocks, stride=2)
        self.layer3 = _stage(32, 64, blocks, stride=2)
        self.num_features = 64
        self.linear = nn.Linear(64, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(module.weight)  # as the reference: fan_in, gain √2

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        # Global pooling (the reference pools with a kernel of the map's width: the same on
        # square maps) keeps any input size working, down to the 8x8 digits.
        return F.adaptive_avg_pool2d(out, 1).flatten(1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _stage(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    layers = [BasicBlock(in_planes, planes, stride)]
    layers += [BasicBlock(planes, planes, 1) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def cifar_resnet(num_classes: int, in_channels: int = 3, depth: int = 20) -> CifarResNet:
    """Any depth 6n+2. Not registered, so the zoo lists only the standard depths; reach it
    from a recipe as `entrypoint: compressor.models.cifar_resnet:cifar_resnet` with
    `kwargs: {depth: 38}`."""
    return CifarResNet(depth, num_classes, in_channels)


def _register_depth(depth: int) -> None:
    def build(num_classes: int, in_channels: int = 3) -> CifarResNet:
        return CifarResNet(depth, num_classes, in_channels)

    build.__doc__ = f"CIFAR ResNet-{depth}."
    register_model(f"resnet{depth}")(build)


for _depth in (8, 14, 20, 26, 32, 44, 56, 110):
    _register_depth(_depth)
