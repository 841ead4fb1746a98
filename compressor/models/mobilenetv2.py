"""MobileNetV2 (Sandler et al., 2018) for 32x32 inputs.

The ImageNet network downsamples 32x; on CIFAR that leaves a 1x1 map after the third stage.
Like the common CIFAR ports, the stem and the second stage use stride 1, so a 32x32 image
ends at 4x4 (and an 8x8 digit at 1x1). Block structure, channel rounding and initialisation
follow torchvision's implementation, so `width_mult` behaves as there. Dropout before the
classifier defaults to 0 (torchvision: 0.2), as in the CIFAR ports used in distillation papers.
"""

from __future__ import annotations

import torch
from torch import nn

from compressor.models.registry import register_model

# (expansion t, output channels c, repeats n, stride of the first block s); the paper's table
# 2 with the stride of the second row changed from 2 to 1 for 32x32 inputs.
_STAGES: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of 8 (fast kernels), never more than 10 % below `value`."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1) -> list:
    conv = nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False)
    return [conv, nn.BatchNorm2d(out_ch)]


class InvertedResidual(nn.Module):
    """1x1 expand → 3x3 depthwise → 1x1 linear projection; residual when shapes match."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_ch * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += [*_conv_bn(in_ch, hidden, 1), nn.ReLU6(inplace=True)]
        layers += [*_conv_bn(hidden, hidden, 3, stride, groups=hidden), nn.ReLU6(inplace=True)]
        layers += _conv_bn(hidden, out_ch, 1)
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_residual else out


class MobileNetV2(nn.Module):
    def __init__(
        self, num_classes: int, in_channels: int = 3, width_mult: float = 1.0, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"width_mult must be > 0, got {width_mult}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        channels = _make_divisible(32 * width_mult)
        self.num_features = _make_divisible(1280 * max(1.0, width_mult))
        layers: list[nn.Module] = [*_conv_bn(in_channels, channels, 3, 1), nn.ReLU6(inplace=True)]
        for expansion, out, repeats, stride in _STAGES:
            out_ch = _make_divisible(out * width_mult)
            for i in range(repeats):
                block_stride = stride if i == 0 else 1
                layers.append(InvertedResidual(channels, out_ch, block_stride, expansion))
                channels = out_ch
        layers += [*_conv_bn(channels, self.num_features, 1), nn.ReLU6(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(self.num_features, num_classes)
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0, 0.01)
                nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.adaptive_avg_pool2d(self.features(x), 1).flatten(1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model("mobilenetv2")
def mobilenetv2(
    num_classes: int, in_channels: int = 3, width_mult: float = 1.0, dropout: float = 0.0
) -> MobileNetV2:
    """MobileNetV2 for 32x32 images; `width_mult` scales every layer's channels."""
    return MobileNetV2(num_classes, in_channels, width_mult, dropout)
