"""AMKD, reconstructed: KD plus a triplet constraint on the boundary-supporting samples.

The paper's abstract (all that is available) says: adversarial samples near the boundary of
two classes measure the distance to samples of the other (negative) classes through a
triplet constraint, so the student learns the boundary *and* keeps its distance from other
classes; plain KD on such samples (BSS) is what it improves on. The formulation below is the
one in DESIGN.md; every choice the abstract leaves open is a recipe option (see
docs/METHOD.md for which parts are sourced and which inferred).

    L = CE + alpha(e) * KD + beta(e) * (lambda_bss * BSS + gamma * Triplet)

KD and BSS are KL terms at T on the clean batch and on the boundary samples, scaled by T^2
when `t_squared` is on. The defaults (T = 4, T^2, alpha = 1, lambda_bss = 0) make the clean
term exactly the KD baseline and leave the boundary samples to the triplet alone, so AMKD is
KD plus the metric constraint; BSS's settings (T = 3, no T^2, its schedule, lambda_bss = 1,
gamma = 0) give BSS's loss.

Triplet on a boundary sample x~ of the b -> k attack: anchor = student(x~), positive =
teacher(x~) (detached), negative = the teacher's (or student's) embedding of a clean batch
image j with y_j not in {b, k} (falling back to y_j != b when the batch has none), chosen at
random or as the hardest (closest to the anchor).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from compressor.errors import DEBUG_HINT, UserError, short_reason
from compressor.methods import StepOutput, TrainProgress
from compressor.methods.bank import BoundarySampler
from compressor.methods.boundary import Bounds, attack_stats
from compressor.methods.boundary_norm import boundary_norm
from compressor.methods.bss import schedule
from compressor.methods.global_mean import global_mean_weights
from compressor.methods.kd import soft_kl
from compressor.methods.projection import without_conflict
from compressor.methods.triplet import pick_negatives, triplet_margin
from compressor.models.features import LogitsAndFeatures, has_feature_interface, innermost
from compressor.recipe import AMKDMethod


def refuse_under_torchrun(config: AMKDMethod) -> None:
    """Each process would project its own gradients before DDP averages them: not PCGrad on
    the batch's gradient, and not tested. Checked by the engine before the data and the
    teacher load (minutes on real data), and here for a caller of the class."""
    if config.project_conflicts:
        raise UserError(
            "method.project_conflicts runs in one process only; drop it, or train without torchrun"
        )


class AMKD:
    """Adversarial metric KD; parts are logged unweighted, alpha/beta as stats."""

    def __init__(
        self,
        config: AMKDMethod,
        student: nn.Module,
        teacher: nn.Module,
        bounds: Bounds | None = None,
        dataset_size: int | None = None,
    ) -> None:
        self.config = config
        self.student = student
        self.teacher = teacher
        if dist.is_available() and dist.is_initialized():
            refuse_under_torchrun(config)
        self.trainable = [p for p in student.parameters() if p.requires_grad]
        # In feature space, each model as a module returning (logits, features) in one pass.
        features = config.embedding == "features"
        self.student_pair = _features_forward(student, teacher) if features else None
        self.teacher_pair = LogitsAndFeatures(teacher) if features else None
        # The sampler also hands over the teacher's features on each boundary sample when the
        # triplet lives in feature space, so banked samples need no teacher pass either.
        self.sampler = BoundarySampler(
            teacher,
            config.attack,
            bounds,
            bank_epochs=config.bank_epochs,
            dataset_size=dataset_size,
            features=config.embedding == "features",
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
            teacher_logits, teacher_features = _forward(self.teacher, self.teacher_pair, images)
        logits, features = _forward(self.student, self.student_pair, images)
        ce = F.cross_entropy(logits.float(), labels)
        kd = soft_kl(logits, teacher_logits, cfg.temperature)
        bss = triplet = torch.zeros((), device=logits.device)
        bss_share = triplet_share = torch.ones((), device=logits.device)
        stats = {"alpha": alpha, "beta": beta, **attack_stats(0, 0.0, 0.0)}
        if beta > 0:
            adv = self.sampler.samples(
                images, labels, indices, teacher_logits, logits, progress.epoch
            )
            stats.update(adv.stats)
            rows = logits.new_zeros(2, dtype=torch.float32)  # of the KL, of the triplet
            if adv.images.shape[0]:
                with boundary_norm(self.student, cfg.boundary_norm):
                    adv_logits, adv_features = _forward(self.student, self.student_pair, adv.images)
                bss = soft_kl(adv_logits, adv.teacher_logits, cfg.temperature)
                if cfg.negative_source == "teacher":
                    negatives = self._embed(teacher_logits, teacher_features).detach()
                else:
                    negatives = self._embed(logits, features)
                anchor = self._embed(adv_logits, adv_features)
                positive = self._embed(adv.teacher_logits, adv.teacher_features).detach()
                triplet, with_negative = self._triplet(
                    anchor, positive, negatives, labels, adv.source, adv.target
                )
                rows = torch.stack([rows.new_tensor(float(adv.images.shape[0])), with_negative])
            # Each process found its own number of samples: weighted to the whole batch's mean.
            bss_share, triplet_share = global_mean_weights(rows)
        if cfg.t_squared:
            kd, bss = kd * cfg.temperature**2, bss * cfg.temperature**2
        clean = ce + alpha * kd
        boundary = beta * (cfg.lambda_bss * bss * bss_share + cfg.gamma * triplet * triplet_share)
        if cfg.project_conflicts:
            loss, projection = without_conflict(clean, boundary, self.trainable)
            stats.update(projection)
        else:
            loss = clean + boundary
        # Weighted as in the loss, so that the parts' sum over processes (the epoch figures)
        # is the mean over the whole batch's rows, not a mean of the processes' means.
        parts = {"ce": ce.detach(), "kd": kd.detach(), "bss": (bss * bss_share).detach()}
        parts["triplet"] = (triplet * triplet_share).detach()
        return StepOutput(loss=loss, parts=parts, logits=logits, stats=stats)

    def _embed(self, logits: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
        """The space the triplet distances are measured in."""
        if self.config.embedding == "features":
            assert features is not None
            return features.float()
        if self.config.embedding == "softmax":
            return F.softmax(logits.float() / self.config.temperature, dim=1)
        return logits.float()

    def _triplet(
        self,
        anchor: torch.Tensor,
        positive: torch.Tensor,
        negatives: torch.Tensor,
        labels: torch.Tensor,
        source: torch.Tensor,
        target: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Triplet loss of each boundary sample against one clean negative of the batch, and
        how many rows it is the mean of (those that have a negative)."""
        not_source = labels[None, :] != source[:, None]
        strict = not_source & (labels[None, :] != target[:, None])
        valid = torch.where(strict.any(dim=1, keepdim=True), strict, not_source)
        distance = (
            torch.cdist(anchor.detach(), negatives.detach())
            if self.config.mining == "hardest"
            else None
        )
        choice, has_negative = pick_negatives(valid, distance)
        loss = triplet_margin(anchor, positive, negatives[choice], self.config.margin, has_negative)
        return loss, has_negative.sum().float()


def _forward(
    model: nn.Module, pair: nn.Module | None, images: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits, plus the penultimate features (same pass) when the embedding needs them."""
    if pair is None:
        return model(images), None
    return pair(images)


def _features_forward(student: nn.Module, teacher: nn.Module) -> nn.Module:
    """The student as a module returning (logits, features): the one the engine wrapped in
    `LogitsAndFeatures` (before DistributedDataParallel, see compressor/models/features.py),
    or, for a bare student, a new such wrapper around it."""
    inner = innermost(student)
    wrapped = isinstance(inner, LogitsAndFeatures)
    check_feature_embedding(inner.model if isinstance(inner, LogitsAndFeatures) else inner, teacher)
    if wrapped:
        return student
    if inner is not student:
        # Calling past DDP would train without gradient synchronisation: a caller's bug.
        raise ValueError(
            "embedding: features needs the student wrapped by "
            "compressor.methods.training_module before DistributedDataParallel or torch.compile"
        )
    return LogitsAndFeatures(student)


def uses_feature_embedding(method: object) -> bool:
    """AMKD's triplets in the penultimate feature space: they need both models' features."""
    return isinstance(method, AMKDMethod) and method.embedding == "features"


def check_feature_embedding(
    student: nn.Module, teacher: nn.Module, images: torch.Tensor | None = None
) -> None:
    """Feature-space triplets compare teacher and student vectors directly: widths must match.
    With `images` (a probe batch: the recipe check's, or the run's first test images), both
    models' forward_features are run on them: a timm-style model returns an unpooled map
    there ([B, C, H, W], pooled only in its forward_head), which passed the width check and
    crashed the first step."""
    for role, model in (("student", student), ("teacher", teacher)):
        if not has_feature_interface(model):
            raise UserError(
                f"method.embedding: features needs a {role} with forward_features, forward_head "
                "and num_features (zoo models have them); use embedding: logits or softmax"
            )
    if student.num_features != teacher.num_features:
        raise UserError(
            f"method.embedding: features compares penultimate features, but the teacher has "
            f"{teacher.num_features} and the student {student.num_features}; use embedding: "
            "logits or softmax (class-score spaces always match)"
        )
    if images is None:
        return
    for role, model in (("student", student), ("teacher", teacher)):
        shape = _feature_shape(model, images, role)
        if shape != [len(images), model.num_features]:
            raise UserError(
                f"method.embedding: features needs the {role}'s forward_features to return "
                f"[batch, num_features] = [batch, {model.num_features}], but it returns "
                f"{shape}; pool and flatten them there, or use embedding: logits or softmax"
            )


def _feature_shape(model: nn.Module, images: torch.Tensor, role: str) -> list[int] | str:
    """The shape of `model.forward_features(images)`, in eval mode and without gradients, the
    model's mode put back; what it returned, named, when that is no tensor. A user's
    forward_features that fails is bad input, as a failing forward is."""
    training = model.training
    try:
        with torch.no_grad():
            evaluated: Any = model.eval()  # forward_features is the model's own
            features = evaluated.forward_features(images)
    except Exception as error:
        raise UserError(
            f"method.embedding: features: the {role}'s forward_features fails on a batch of "
            f"shape {list(images.shape)} ({short_reason(error)}); use embedding: logits or "
            f"softmax{DEBUG_HINT}"
        ) from error
    finally:
        model.train(training)
    if not isinstance(features, torch.Tensor):
        return type(features).__name__
    return list(features.shape)
