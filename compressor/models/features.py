"""One forward pass that returns a model's logits *and* its penultimate features.

Why a module rather than two method calls (`forward_features`, then `forward_head`): under
torchrun the student is wrapped in DistributedDataParallel, which synchronises gradients
only for passes through its own `forward`. A method that measures distances between
penultimate features (AMKD's `embedding: features`) must therefore get them from
`ddp(images)`; wrapping the student in `LogitsAndFeatures` before DDP makes that one pass
return both. The wrapper owns no parameters of its own, so the student's state dict, optimiser
and saved checkpoint are unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

FEATURE_INTERFACE = ("forward_features", "forward_head", "num_features")


def has_feature_interface(model: nn.Module) -> bool:
    """Whether `model` splits into features and head the way the zoo models do."""
    return all(hasattr(model, name) for name in FEATURE_INTERFACE)


class LogitsAndFeatures(nn.Module):
    """`model(x)` as `(logits, features)`, the features being `model.forward_features(x)`."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        model: Any = self.model  # its feature interface is the model's own, not nn.Module's
        features = model.forward_features(x)
        return model.forward_head(features), features


def innermost(model: nn.Module) -> nn.Module:
    """The module under the engine's wrappers (DistributedDataParallel, torch.compile)."""
    while True:
        if isinstance(model, DistributedDataParallel):
            model = model.module
        elif isinstance(compiled := getattr(model, "_orig_mod", None), nn.Module):
            model = compiled  # torch.compile's
        else:
            return model
