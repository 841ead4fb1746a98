"""Boundary-supporting samples (BSS, Heo et al., AAAI 2019), shared by the BSS and AMKD methods.

A boundary-supporting sample is a training image pushed by a targeted attack on the frozen
teacher from its class b towards a sampled class k until the teacher's decision flips: it
lies next to the teacher's b/k decision boundary, which is what the student should learn.

The search follows the authors' reference code, vectorised over the whole batch (no Python
loop over samples): base images are the ones teacher and student both classify correctly,
ranked by how much they disagree; targets are drawn with `torch.multinomial`; every step
moves each still-active image along the normalised input gradient of the teacher's logit
margin z_b - z_k. Only input gradients are taken (`torch.autograd.grad` w.r.t. the images),
so the teacher's parameters never receive `.grad`, and the teacher is only ever called, never
switched between train and eval mode: the caller hands it over frozen and in eval mode.
`attack.search: interpolation` replaces the attack step with a bisection between the base
image and a real image of class k (interpolation.py); selection and targets stay as here.
`attack.search: refined` keeps the attack and bisects the segment from the base image to its
result back to the teacher's crossing: the attack's step is sized in logits (eta times the
margin), so a sample that crosses overshoots the boundary by an amount set by the teacher's
logit scale, and the bisection brings it to within 2^-halvings of the segment past it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from compressor.methods.interpolation import (
    available_classes,
    interpolate_to_boundary,
    logit_margin,
    pick_partners,
)
from compressor.recipe import AttackConfig

Bounds = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class BoundarySamples:
    """The adversarial batch of one training step; row i came from `images[index[i]]`."""

    images: torch.Tensor  # [A, C, H, W] fp32 adversarial images, in the caller's memory format
    teacher_logits: torch.Tensor  # [A, K] fp32 teacher logits on `images`, no autograd graph
    index: torch.Tensor  # [A] row of each base image in the clean batch
    source: torch.Tensor  # [A] b: the teacher's (and the label's) class of the base image
    target: torch.Tensor  # [A] k: the class the attack pushed towards
    landed: torch.Tensor  # [A] bool: the teacher's final argmax is k (crossed b -> k)
    stats: dict[str, float]  # attacked, mean_steps, boundary_fraction (over attacked samples)
    # [A, F] the teacher's penultimate features on `images`, for methods that embed there
    teacher_features: torch.Tensor | None = None


def normalized_bounds(mean: Sequence[float], std: Sequence[float]) -> Bounds:
    """Per-channel valid range of images normalised as (pixel - mean) / std, pixels in [0, 1].

    The attack clamps to this range so that a boundary sample is still a real image: without
    it the search can leave the data manifold (the reference clamps CIFAR to [-2.5, 2.5]).
    """
    mean_t = torch.tensor(mean, dtype=torch.float32)
    std_t = torch.tensor(std, dtype=torch.float32)
    return (0.0 - mean_t) / std_t, (1.0 - mean_t) / std_t


# The student's pass over the boundary samples is in train mode: a batch-norm layer whose
# feature map has shrunk to 1x1 (a torchvision model on 32-pixel images) cannot normalise a
# single sample ("Expected more than 1 value per channel"), so a step attacks two or none.
MIN_BASE_SAMPLES = 2


def max_base_samples(config: AttackConfig, batch_size: int) -> int:
    """How many base images one batch may contribute: `attack.fraction` of it, at least
    MIN_BASE_SAMPLES."""
    return max(MIN_BASE_SAMPLES, round(config.fraction * batch_size))


def select_base(
    labels: torch.Tensor,
    teacher_logits: torch.Tensor,
    student_logits: torch.Tensor,
    max_samples: int,
    candidates: torch.Tensor | None = None,
) -> torch.Tensor:
    """Indices of the base images: correct for teacher and student, largest disagreement first.

    The disagreement sum_{c != y} (p_t,c - p_s,c)^2 (softmax at T = 1) picks the images whose
    boundary the student has learnt worst; at most `max_samples` are kept, which bounds the
    attack's cost per batch. `candidates` (bool [B]) limits the choice to some rows, e.g. those
    with a banked boundary sample, under the same rule. Fewer than MIN_BASE_SAMPLES
    qualifying rows give none.
    """
    p_t = teacher_logits.detach().float().softmax(dim=1)
    p_s = student_logits.detach().float().softmax(dim=1)
    diff = (p_t - p_s).square()
    score = diff.sum(dim=1) - diff.gather(1, labels[:, None]).squeeze(1)
    correct = (p_t.argmax(dim=1) == labels) & (p_s.argmax(dim=1) == labels)
    if candidates is not None:
        correct &= candidates
    score = score.masked_fill(~correct, float("-inf"))
    count = min(int(correct.sum()), max_samples)
    return score.topk(count if count >= MIN_BASE_SAMPLES else 0).indices


def sample_targets(
    teacher_logits: torch.Tensor,
    source: torch.Tensor,
    generator: torch.Generator | None = None,
    allowed: torch.Tensor | None = None,
) -> torch.Tensor:
    """Draw one target class k != b per row with probability q_t(k) / (1 - q_t(b)).

    q_t is the teacher softmax at T = 1: likely confusions are attacked more often, as in the
    reference. `torch.multinomial` renormalises each row, so zeroing column b is all it takes.
    A row whose non-b mass underflows to zero falls back to a uniform choice among k != b.
    `allowed` (bool [K]) limits k to some classes; every row must have one besides b.
    """
    q = teacher_logits.detach().float().softmax(dim=1)
    mask = torch.ones_like(q) if allowed is None else allowed.to(q.dtype).expand_as(q)
    weights = (q * mask).scatter(1, source[:, None], 0.0)
    uniform = mask.scatter(1, source[:, None], 0.0)
    weights = torch.where(weights.sum(dim=1, keepdim=True) > 0, weights, uniform)
    return torch.multinomial(weights, 1, generator=generator).squeeze(1)


def attack_to_boundary(
    teacher: nn.Module,
    images: torch.Tensor,
    source: torch.Tensor,
    target: torch.Tensor,
    config: AttackConfig,
    bounds: Bounds | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Move each image from class b across the teacher's b/k boundary.

    Update per step, for samples whose teacher argmax is still b:
        x <- x - eta * (z_b - z_k + eps) * g / ||g||_2,   g = d(z_b - z_k)/dx,
    a step whose length is proportional to the remaining margin (not Newton's: that would
    divide by ||g||^2), so the margin changes by about eta * (z_b - z_k) * ||g|| per step
    and how far a step goes depends on the teacher's gradient scale. A sample freezes for
    good once the teacher's argmax leaves b (into k or a third class); the loop ends when
    all are frozen or after `max_steps` updates. Runs in fp32 with autocast disabled
    because bf16/fp16 input gradients are too coarse to land on a boundary. `bounds` is the
    per-channel (low, high) valid range of the normalised input (see `normalized_bounds`);
    None means the inputs are not range-limited.

    Returns the adversarial images (detached), the teacher's fp32 logits on them and the
    number of updates each sample received.
    """
    x = images.detach().float().clone()
    steps = torch.zeros_like(source)
    logits = torch.empty(0)
    low, high = _broadcast_bounds(bounds, x)
    # Only samples still in class b are forwarded: the teacher is in eval mode, so a sample's
    # logits do not depend on the rest of the batch, and stragglers cost only their own rows.
    active = torch.arange(source.numel(), device=source.device)
    with torch.autocast(device_type=x.device.type, enabled=False):
        for _ in range(config.max_steps):
            x_active = x[active].requires_grad_(True)
            with torch.enable_grad():
                active_logits = teacher(x_active)
            if logits.numel() == 0:
                logits = x.new_empty(source.numel(), active_logits.shape[1])
            still = active_logits.detach().argmax(dim=1) == source[active]
            logits[active] = active_logits.detach().float()
            if not bool(still.any()):  # checked before the backward pass: none is wasted
                active = active[:0]
                break
            with torch.enable_grad():
                margin = logit_margin(
                    active_logits[still], source[active][still], target[active][still]
                )
                (grad,) = torch.autograd.grad(margin.sum(), x_active)
            with torch.no_grad():
                grad, x_still = grad[still], x_active.detach()[still]
                active = active[still]
                norm = grad.square().sum(dim=tuple(range(1, x.dim()))).sqrt().clamp_min(1e-12)
                scale = config.step_size * (margin.detach() + config.epsilon) / norm
                moved = x_still - scale.view(-1, *([1] * (x.dim() - 1))) * grad
                x[active] = torch.clamp(moved, low, high) if low is not None else moved
                steps[active] += 1
        if active.numel():  # the last update moved these: their logits are stale
            with torch.no_grad():
                logits[active] = teacher(x[active]).float()
    return x, logits, steps


def find_boundary_samples(
    teacher: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    teacher_logits: torch.Tensor,
    student_logits: torch.Tensor,
    config: AttackConfig,
    bounds: Bounds | None,
) -> BoundarySamples:
    """Select base images, sample targets, attack and/or bisect; keep all or boundary hits only.

    `teacher_logits`/`student_logits` are the clean-batch logits the caller already has (no
    extra forward pass is spent on selection). A sample has *landed* when the teacher's final
    argmax is k: it crossed from b straight into k, so it sits on the b/k boundary (within one
    attack step, or one halving when bisected). The reference keeps every result, including
    samples that stopped in a third class or never crossed; `config.keep == "boundary"` keeps
    landed samples only. The stats are over all attacked samples, before that filter.
    """
    max_samples = max_base_samples(config, labels.numel())
    index = select_base(labels, teacher_logits, student_logits, max_samples)
    if config.search == "interpolation":
        return _interpolation_samples(teacher, images, labels, teacher_logits, index, config)
    if index.numel() == 0:
        return no_samples(images, labels, teacher_logits)
    source = labels[index]
    target = sample_targets(teacher_logits[index], source)
    adv, adv_logits, steps = attack_to_boundary(
        teacher, images[index], source, target, config, bounds
    )
    if config.search == "refined":
        adv, adv_logits = interpolate_to_boundary(
            teacher, images[index], adv, source, target, config.halvings, adv_logits
        )
    return _collect(adv, adv_logits, index, source, target, steps, config)


def _interpolation_samples(
    teacher: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    teacher_logits: torch.Tensor,
    index: torch.Tensor,
    config: AttackConfig,
) -> BoundarySamples:
    """The interpolation search's samples for the chosen base rows (see interpolation.py).

    Targets are drawn only among classes with a teacher-correct image in the batch, the
    possible partners; a batch with fewer than two such classes gives no samples.
    """
    correct = teacher_logits.argmax(dim=1) == labels
    available = available_classes(labels, correct, teacher_logits.shape[1])
    if index.numel() == 0 or int(available.sum()) < 2:
        return no_samples(images, labels, teacher_logits)
    source = labels[index]
    target = sample_targets(teacher_logits[index], source, allowed=available)
    partner = pick_partners(labels, correct, target)
    adv, adv_logits = interpolate_to_boundary(
        teacher, images[index], images[partner], source, target, config.halvings
    )
    steps = torch.full_like(source, config.halvings)
    return _collect(adv, adv_logits, index, source, target, steps, config)


def _collect(
    adv: torch.Tensor,
    adv_logits: torch.Tensor,
    index: torch.Tensor,
    source: torch.Tensor,
    target: torch.Tensor,
    steps: torch.Tensor,
    config: AttackConfig,
) -> BoundarySamples:
    """Landed flags and stats over every searched sample, then `keep`'s filter."""
    landed = adv_logits.argmax(dim=1) == target
    mean_steps, fraction = torch.stack([steps.float().mean(), landed.float().mean()]).tolist()
    stats = attack_stats(index.numel(), mean_steps, fraction)
    if config.keep == "boundary":
        kept = landed & (int(landed.sum()) >= MIN_BASE_SAMPLES)
        adv, adv_logits, index, source, target, landed = (
            t[kept] for t in (adv, adv_logits, index, source, target, landed)
        )
    return BoundarySamples(adv, adv_logits, index, source, target, landed, stats)


def no_samples(
    images: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor
) -> BoundarySamples:
    """The empty result of a batch without base images: zero rows, zero stats."""
    none = labels[:0]
    return BoundarySamples(
        images=images[:0].detach().float(),
        teacher_logits=teacher_logits[:0].detach().float(),
        index=none,
        source=none,
        target=none,
        landed=none.bool(),
        stats=attack_stats(0, 0.0, 0.0),
    )


# Attack statistics that are means over a batch's attacked samples, not over its images: an
# epoch averages them weighted by "attacked", so batches without an attack (β still 0, too few
# classes) do not dilute them, and an epoch that attacked nothing reports none of them.
PER_ATTACKED_STATS = ("mean_steps", "boundary_fraction")


def attack_stats(attacked: int, mean_steps: float, boundary_fraction: float) -> dict[str, float]:
    """The per-batch attack statistics; methods log zeros when no attack ran."""
    return {
        "attacked": float(attacked),
        "mean_steps": mean_steps,
        "boundary_fraction": boundary_fraction,
    }


def _broadcast_bounds(
    bounds: Bounds | None, x: torch.Tensor
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Per-channel [C] bounds as [1, C, 1, 1] on x's device, ready for `torch.clamp`."""
    if bounds is None:
        return None, None
    shape = (1, -1, *([1] * (x.dim() - 2)))
    low, high = (b.to(device=x.device, dtype=x.dtype).view(shape) for b in bounds)
    return low, high
