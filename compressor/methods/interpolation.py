"""Interpolation search: boundary samples on the segment between two real images.

An alternative to the BSS attack for `attack.search: interpolation` (ours; not in BSS or the
AMKD abstract). The attack moves along the teacher's own input gradient, a direction specific
to the teacher that a much smaller student may not follow; here the sample is a blend of the
base image (class b) and a partner image of class k, placed where the teacher's b and k logits
cross, so it lies between two real images. Teacher forward passes only, no input gradients.
`attack.search: refined` runs the same bisection with the attack's result as the partner.
"""

from __future__ import annotations

import torch
from torch import nn


def available_classes(
    labels: torch.Tensor, teacher_correct: torch.Tensor, num_classes: int
) -> torch.Tensor:
    """bool [K]: the classes the batch has an image of that the teacher classifies correctly.

    Only those can be targets: a partner must be an image the teacher puts in class k, so that
    the segment's two ends lie on either side of the b/k crossing.
    """
    available = torch.zeros(num_classes, dtype=torch.bool, device=labels.device)
    available[labels[teacher_correct]] = True
    return available


def pick_partners(
    labels: torch.Tensor, teacher_correct: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    """For each row's target class k, a random batch row of class k the teacher gets right."""
    candidates = (labels[None, :] == target[:, None]) & teacher_correct[None, :]
    return torch.multinomial(candidates.float(), 1).squeeze(1)


def interpolate_to_boundary(
    teacher: nn.Module,
    images: torch.Tensor,
    partners: torch.Tensor,
    source: torch.Tensor,
    target: torch.Tensor,
    halvings: int,
    partner_logits: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bisect the segment x(l) = (1 - l) x + l p for a crossing of the teacher's z_b and z_k.

    The base image x is class b for the teacher (z_b > z_k) and the partner p class k
    (z_k > z_b), so z_b - z_k changes sign on the segment and each halving keeps a bracket
    around a zero (a crossing, not necessarily the first if the sign changes more than once).
    The result is the k end of the final bracket, past the crossing by at most 2^-halvings of
    the segment. A third class can lead the teacher there; `landed` in BoundarySamples says
    whether k does. A partner still on the b side (an attack result that never crossed) is
    returned as it is unless some halving finds the k side. Blends of valid images are valid,
    so nothing is clamped. Runs in fp32 with autocast disabled, like the attack.
    `partner_logits`, the teacher's logits on the partners if the caller has them, saves the
    pass over rows that end at their partner.

    Returns the samples and the teacher's fp32 logits on them.
    """
    x, p = images.detach().float(), partners.detach().float()
    low = torch.zeros(source.numel(), device=x.device)
    high = torch.ones_like(low)
    shape = (-1, *([1] * (x.dim() - 1)))
    # A row's logits are those of its k end once the end has left the partner (high < 1).
    logits = torch.empty(0, device=x.device)
    with torch.no_grad(), torch.autocast(device_type=x.device.type, enabled=False):
        for _ in range(halvings):
            middle = (low + high) / 2
            middle_logits = teacher(torch.lerp(x, p, middle.view(shape))).float()
            source_side = logit_margin(middle_logits, source, target) > 0
            low = torch.where(source_side, middle, low)
            high = torch.where(source_side, high, middle)
            logits = middle_logits if logits.numel() == 0 else logits
            logits = torch.where(source_side[:, None], logits, middle_logits)
        samples = torch.lerp(x, p, high.view(shape))
        # A row whose every halving fell on the source side ends at the partner itself, whose
        # logits no halving computed: one fp32 pass over those rows only.
        unmoved = high == 1
        if bool(unmoved.any()):
            logits[unmoved] = (
                teacher(samples[unmoved]).float()
                if partner_logits is None
                else partner_logits[unmoved].float()
            )
    return samples, logits


def logit_margin(logits: torch.Tensor, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """z_b - z_k per row: positive while the teacher prefers the source class to the target."""
    return (logits.gather(1, source[:, None]) - logits.gather(1, target[:, None])).squeeze(1)
