"""Make a frozen teacher cheaper to run without changing what it computes.

The teacher is only ever evaluated (clean logits, and input gradients for the boundary
search), so each batch norm can be folded into the convolution before it: one kernel instead
of two, the same function up to float rounding. Folding needs a model torch.fx can trace;
TorchScript files, exported programs and models with data-dependent control flow keep their
batch norms and run as they are.
"""

from __future__ import annotations

from torch import nn
from torch.fx.experimental.optimization import fuse


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of `model` (in eval mode) with conv→BN pairs folded, or `model` if untraceable."""
    try:
        return fuse(model)
    except Exception:  # any tracing failure only means: run it unfolded
        return model
