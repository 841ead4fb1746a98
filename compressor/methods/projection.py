"""Conflict projection: an extra loss term that may not pull against the main one.

AMKD adds a boundary term to KD's clean loss. Where the two gradients point apart (a negative
dot product), the step on the sum slows the clean fit, which an underfitting student pays for
(docs/BENCHMARKS.md: the boundary term "competes with the clean fit"). PCGrad (Yu et al.,
NeurIPS 2020) removes, on such steps, the extra gradient's component along the main one:

    g_extra' = g_extra - (g_main . g_extra / |g_main|^2) g_main      when g_main . g_extra < 0

The engine owns the backward pass (gradient scaling, clipping, DDP), so instead of writing
gradients this returns a loss whose gradient is g_main + g_extra' and whose value is still
main + extra: main's share is scaled by (1 - c) through a term that is zero in value.
"""

from __future__ import annotations

import torch
from torch import nn


def without_conflict(
    main: torch.Tensor, extra: torch.Tensor, parameters: list[nn.Parameter]
) -> tuple[torch.Tensor, dict[str, float]]:
    """`main + extra`, with PCGrad's gradient. Stats: whether the two conflicted on this step,
    the cosine between their gradients (0 and 0 when `extra` has no gradient), and whether
    the step went unprojected because fp16 gradients overflowed even unscaled."""
    if not extra.requires_grad:
        return main + extra, _stats(0.0, 0.0, skipped=0.0)
    # Two extra backward passes (the graphs are kept for the engine's own backward) of the
    # losses times a common factor, which leaves c unchanged. Under fp16 autocast the
    # gradients of unscaled losses underflow, which is what the engine's GradScaler prevents
    # in its own backward: scaled here too, by less after an overflow, as GradScaler does.
    for scale in _probe_scales(main):
        dot, main_sq, extra_sq = _products(main * scale, extra * scale, parameters)
        if torch.isfinite(torch.stack([dot, main_sq, extra_sq])).all():
            break
    else:  # even unscaled gradients overflowed: this step goes unprojected, and says so
        return main + extra, _stats(0.0, 0.0, skipped=1.0)
    tiny = torch.finfo(torch.float32).tiny
    c = (dot.clamp(max=0.0) / main_sq.clamp_min(tiny)).detach()
    loss = main + extra - c * (main - main.detach())
    conflict, cosine = torch.stack(
        [(dot < 0).float(), dot / (main_sq * extra_sq).sqrt().clamp_min(tiny)]
    ).tolist()
    return loss, _stats(conflict, cosine, skipped=0.0)


def _products(
    main: torch.Tensor, extra: torch.Tensor, parameters: list[nn.Parameter]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """g_main . g_extra, |g_main|^2 and |g_extra|^2, in fp32."""
    g_main = torch.autograd.grad(main, parameters, retain_graph=True, allow_unused=True)
    g_extra = torch.autograd.grad(extra, parameters, retain_graph=True, allow_unused=True)
    zero = main.detach().new_zeros((), dtype=torch.float32)
    dot, main_sq, extra_sq = zero, zero, zero
    for a, b in zip(g_main, g_extra, strict=True):
        a, b = (None if g is None else g.float() for g in (a, b))
        if a is not None:
            main_sq = main_sq + (a * a).sum()
        if b is not None:
            extra_sq = extra_sq + (b * b).sum()
        if a is not None and b is not None:
            dot = dot + (a * b).sum()
    return dot, main_sq, extra_sq


def _stats(conflict: float, cosine: float, *, skipped: float) -> dict[str, float]:
    return {"grad_conflict": conflict, "grad_cosine": cosine, "grad_probe_skipped": skipped}


def _probe_scales(loss: torch.Tensor) -> tuple[float, ...]:
    """The factors to try, largest first: fp16 autocast needs one (bf16 and fp32 have fp32's
    range and need none)."""
    device = loss.device.type
    fp16 = torch.is_autocast_enabled(device) and torch.get_autocast_dtype(device) == torch.float16
    return (2.0**16, 2.0**8, 1.0) if fp16 else (1.0,)
