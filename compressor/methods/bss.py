"""BSS distillation (Heo et al., AAAI 2019): KD plus KD on boundary-supporting samples.

Follows the authors' reference training script: the clean KD term and the term on the
adversarial samples are both soft-target losses at temperature T *without* the T^2 factor,
weighted by a schedule that fades the adversarial term out at 75 % of training (the boundary
is learnt early; late epochs polish the clean fit and skip the attack's cost).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from compressor.methods import StepOutput, TrainProgress
from compressor.methods.bank import BoundarySampler
from compressor.methods.boundary import Bounds, attack_stats
from compressor.methods.boundary_norm import boundary_norm
from compressor.methods.global_mean import global_mean_weights
from compressor.methods.kd import soft_kl
from compressor.recipe import BSSMethod, ScheduleWeights


def schedule(weights: ScheduleWeights, progress: TrainProgress) -> tuple[float, float]:
    """alpha(e) on the clean KD term and beta(e) on the adversarial term.

    alpha(e) = 1 + alpha_extra * max(1 - e/E, 0), beta(e) = beta_init * max(1 - e/(f E), 0),
    with e the continuous training time in epochs. The reference counts whole epochs from 1;
    moving per step instead changes nothing over its 80 epochs (< 1/80 of the range) but keeps
    the schedule meaningful for short runs: with whole epochs a 1-epoch run would have
    beta = 0 throughout and never attack.
    """
    e = progress.elapsed_epochs
    total = progress.epochs
    alpha = 1.0 + weights.alpha_extra * max(1.0 - e / total, 0.0)
    beta = weights.beta_init * max(1.0 - e / (weights.beta_stop_fraction * total), 0.0)
    return alpha, beta


def attacking_epochs(beta_stop_fraction: float, epochs: int) -> int:
    """How many epochs, from the first, have beta(e) > 0 at some step: the ones that attack."""
    return math.ceil(beta_stop_fraction * epochs)


class BSS:
    """L = CE + alpha(e) * KL_T(clean) + beta(e) * KL_T(boundary samples).

    Both KL terms average over their own sample count. With beta(e) = 0 no attack runs.
    With `bank_epochs` > 1 the boundary samples come from the bank on reuse epochs
    (`compressor.methods.bank`); `dataset_size` sizes that bank.
    """

    def __init__(
        self,
        config: BSSMethod,
        student: nn.Module,
        teacher: nn.Module,
        bounds: Bounds | None = None,
        dataset_size: int | None = None,
    ) -> None:
        self.config = config
        self.student = student
        self.teacher = teacher
        self.sampler = BoundarySampler(
            teacher,
            config.attack,
            bounds,
            bank_epochs=config.bank_epochs,
            dataset_size=dataset_size,
        )

    def step(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        progress: TrainProgress,
        indices: torch.Tensor | None = None,
    ) -> StepOutput:
        cfg = self.config
        alpha, beta = schedule(cfg.weights, progress)
        with torch.no_grad():
            teacher_logits = self.teacher(images)
        logits = self.student(images)
        ce = F.cross_entropy(logits.float(), labels)
        kd = soft_kl(logits, teacher_logits, cfg.temperature)
        bss = torch.zeros((), device=logits.device)
        share = torch.ones((), device=logits.device)
        stats = {"alpha": alpha, "beta": beta, **attack_stats(0, 0.0, 0.0)}
        if beta > 0:
            adv = self.sampler.samples(
                images, labels, indices, teacher_logits, logits, progress.epoch
            )
            stats.update(adv.stats)
            if adv.images.shape[0]:
                with boundary_norm(self.student, cfg.boundary_norm):
                    adv_logits = self.student(adv.images)
                bss = soft_kl(adv_logits, adv.teacher_logits, cfg.temperature)
            # Each process found its own number of samples: weighted to the whole batch's mean.
            (share,) = global_mean_weights(bss.new_tensor([float(adv.images.shape[0])]))
        loss = ce + alpha * kd + beta * bss * share
        # Weighted as in the loss: summed over processes, the mean over the whole batch's rows.
        parts = {"ce": ce.detach(), "kd": kd.detach(), "bss": (bss * share).detach()}
        return StepOutput(loss=loss, parts=parts, logits=logits, stats=stats)
