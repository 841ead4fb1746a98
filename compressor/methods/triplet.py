"""Triplet-KD (Oki et al., IJCNN 2020): KD plus a triplet constraint between output spaces.

From the authors' code: anchor = teacher output on x, positive = student output on x,
negative = student output on an image of another class; L2 distance on logits, margin 5,
weight 2, loss = CE + KL + 2 * triplet (`nn.TripletMarginLoss`). The authors load a random
other-class image per sample; here the negative is a random other-class image of the same
batch, which reuses the student's clean forward pass instead of paying for a second one.
The KL term is Hinton's at the recipe's temperature with the T^2 factor; the authors' code
uses T = 1 (where T^2 = 1), so `temperature: 1` reproduces it exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from compressor.methods import StepOutput, TrainProgress
from compressor.methods.global_mean import global_mean_weights
from compressor.methods.kd import soft_kl
from compressor.recipe import TripletMethod


def triplet_margin(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor,
    margin: float,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """mean_i max(||a_i - p_i||_2 - ||a_i - n_i||_2 + margin, 0) over rows where `mask` holds.

    Rows without a valid negative are masked out instead of being dropped, which keeps the
    computation free of host synchronisation; with no valid row at all the loss is 0.
    Written out as `F.triplet_margin_loss` computes it, because that refuses margin 0: a plain
    ordering constraint a recipe may ask for.
    """
    anchor = anchor.float()
    losses = (
        F.pairwise_distance(anchor, positive.float())
        - F.pairwise_distance(anchor, negative.float())
        + margin
    ).clamp_min(0.0)
    if mask is None:
        return losses.mean()
    weights = mask.to(losses.dtype)
    return (losses * weights).sum() / weights.sum().clamp_min(1.0)


def pick_negatives(
    valid: torch.Tensor, distance: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each row i, a column j with `valid[i, j]`: uniformly at random, or the closest one.

    `distance` ([N, M], anchor i to candidate j) selects hard mining: the nearest valid
    negative violates the margin most. Returns the chosen column per row and whether the row
    had any valid column at all (its choice is meaningless otherwise).
    """
    score = (
        -distance.detach() if distance is not None else torch.rand(valid.shape, device=valid.device)
    )
    score = score.masked_fill(~valid, float("-inf"))
    return score.argmax(dim=1), valid.any(dim=1)


class TripletKD:
    """L = CE + T^2 * KL_T + w * triplet(teacher(x), student(x), student(x_j)), y_j != y."""

    def __init__(self, config: TripletMethod, student: nn.Module, teacher: nn.Module) -> None:
        self.config = config
        self.student = student
        self.teacher = teacher

    def step(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        progress: TrainProgress,
        indices: torch.Tensor | None = None,
    ) -> StepOutput:
        cfg = self.config
        with torch.no_grad():
            teacher_logits = self.teacher(images)
        logits = self.student(images)
        ce = F.cross_entropy(logits.float(), labels)
        kd = soft_kl(logits, teacher_logits, cfg.temperature) * cfg.temperature**2
        negative, has_negative = pick_negatives(labels[None, :] != labels[:, None])
        triplet = triplet_margin(teacher_logits, logits, logits[negative], cfg.margin, has_negative)
        # Under torchrun a process whose batch is nearly one class has fewer rows with a
        # negative: weighted to the mean over every process's rows, as AMKD's triplet is.
        (share,) = global_mean_weights(has_negative.sum()[None])
        loss = ce + kd + cfg.triplet_weight * triplet * share
        # Weighted as in the loss: summed over processes, the mean over every row with one.
        parts = {"ce": ce.detach(), "kd": kd.detach(), "triplet": (triplet * share).detach()}
        return StepOutput(loss=loss, parts=parts, logits=logits)
