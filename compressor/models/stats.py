"""Model size and cost for reports: parameters and FLOPs per image."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module) -> int:
    """All parameters, trainable or frozen (a frozen teacher still costs memory)."""
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """FLOPs of one forward pass on one image of shape (channels, height, width).

    Counted by `torch.utils.flop_counter.FlopCounterMode`: matrix multiplications and
    convolutions, with FLOPs = 2 x multiply-accumulates (ResNet-20 at 32x32: 41 M MACs,
    82 MFLOPs). Element-wise work (batch norm, activations, pooling, additions) is not
    counted, as in the papers' tables.

    Runs in eval mode under no_grad, so batch-norm statistics are not updated, then restores
    every module's mode. The flags are set directly instead of calling `model.eval()`: the
    modules `torch.export` produces refuse `eval()`/`train()`.
    """
    modes = {module: module.training for module in model.modules()}
    reference = next(iter(model.parameters()), None)
    device = reference.device if reference is not None else torch.device("cpu")
    dtype = reference.dtype if reference is not None else torch.float32
    image = torch.zeros(1, *input_shape, device=device, dtype=dtype)
    counter = FlopCounterMode(display=False)
    try:
        for module in modes:
            module.training = False
        with torch.no_grad(), counter:
            model(image)
    finally:
        for module, training in modes.items():
            module.training = training
    return int(counter.get_total_flops())
