"""Batched augmentation and normalisation on uint8 image tensors, on any device.

Each function treats a whole batch [B, C, H, W] in a few kernels, with no Python loop over
samples, so augmentation costs next to nothing on a GPU and stays cheap on a CPU. They are
pure: the random draws (crop offsets, flip mask) are arguments, which lets `BatchLoader`
derive them from (seed, epoch) and lets tests check exact pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def crop(images: torch.Tensor, padding: int, offsets: torch.Tensor) -> torch.Tensor:
    """Random-crop step: zero-pad every side by `padding`, then cut each sample's H x W window.

    `offsets` [B, 2] holds each window's (top, left) corner in the padded image, each in
    0..2*padding (padding, padding = no shift). Padding with 0 before normalising matches
    torchvision's RandomCrop(padding=p) on uint8/PIL images. One advanced-indexing gather
    cuts all windows at once.
    """
    if padding == 0:
        return images
    batch, channels, height, width = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    device = images.device
    rows = offsets[:, 0, None] + torch.arange(height, device=device)  # [B, H]
    cols = offsets[:, 1, None] + torch.arange(width, device=device)  # [B, W]
    return padded[
        torch.arange(batch, device=device)[:, None, None, None],
        torch.arange(channels, device=device)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]


def hflip(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mirror left-right the samples where the boolean `mask` [B] is True."""
    return torch.where(mask[:, None, None, None], images.flip(-1), images)


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float32 (x / 255 - mean) / std, per channel; `mean`/`std` are [C].

    Folded into one multiply and one subtract (x * 1/(255 std) - mean/std). Keeps the input's
    memory format, so a channels_last batch stays channels_last.
    """
    scale = (1.0 / (255.0 * std))[:, None, None]
    shift = (mean / std)[:, None, None]
    return images.float().mul_(scale).sub_(shift)
