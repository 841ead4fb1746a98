"""Knowledge distillation (Hinton et al., 2015): match the teacher's softened distribution."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from compressor.methods import StepOutput, TrainProgress
from compressor.recipe import KDMethod


def soft_kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """KL(p_t || p_s) of the softmaxes at `temperature`, summed over classes, mean over rows.

    This is the soft cross-entropy -sum p_t log p_s minus the teacher's entropy: the same
    gradient for the student, but it reads 0 when the student matches the teacher, which makes
    the logged value comparable across batches. Computed in fp32 (safe under fp16 autocast).
    The teacher side is detached: the teacher is never trained.
    """
    log_p_s = F.log_softmax(student_logits.float() / temperature, dim=1)
    log_p_t = F.log_softmax(teacher_logits.detach().float() / temperature, dim=1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)


class KD:
    """L = w_ce * CE + w_kd * T^2 * KL(p_t^T || p_s^T).

    The T^2 factor (Hinton) keeps the soft-target gradients on the scale of the CE gradients
    whatever the temperature, so the weights need no retuning when T changes.
    """

    def __init__(self, config: KDMethod, student: nn.Module, teacher: nn.Module) -> None:
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
        loss = cfg.ce_weight * ce + cfg.kd_weight * kd
        return StepOutput(loss=loss, parts={"ce": ce.detach(), "kd": kd.detach()}, logits=logits)
