"""AMKD on small real models: its terms reduce to BSS's and KD's, it runs under bf16
autocast, and its feature embedding reaches the student the way DDP needs."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from compressor.errors import UserError
from compressor.methods import TrainProgress, build_method, training_module
from compressor.methods.amkd import check_feature_embedding
from compressor.methods.kd import soft_kl
from compressor.models.features import LogitsAndFeatures
from compressor.recipe import AMKDMethod, AMKDWeights, BSSMethod, KDMethod
from tests.methods.conftest import TinyNet
from tests.methods.helpers import EARLY, LATE, step


def test_feature_embedding_needs_matching_widths(
    teacher: nn.Module, student_factory: Callable[..., nn.Module]
) -> None:
    with pytest.raises(UserError, match="logits or softmax"):
        build_method(AMKDMethod(embedding="features"), student_factory(width=8), teacher)
    with pytest.raises(UserError, match="forward_features"):
        build_method(AMKDMethod(embedding="features"), nn.Linear(3, 4), teacher)


class _UnpooledFeatures(TinyNet):
    """A timm-style model: forward_features returns the map, forward_head pools it."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features[:-2](x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features.mean(dim=(2, 3)))


def test_feature_embedding_needs_pooled_features(teacher: nn.Module, batch) -> None:
    """Widths alike, but the map unpooled: the triplet crashed in the first step (exit 3)."""
    images, _ = batch
    width = teacher.num_features
    check_feature_embedding(TinyNet(width), teacher, images)
    student = _UnpooledFeatures(width).train()
    with pytest.raises(UserError, match=r"student's forward_features to return \[batch, num_"):
        check_feature_embedding(student, teacher, images)
    assert student.training  # its mode put back


def test_amkd_without_triplet_is_bss(
    teacher: nn.Module, student_factory: Callable[..., nn.Module], batch
) -> None:
    student = student_factory()
    bss = step(build_method(BSSMethod(), student, teacher), batch)
    bss_terms = AMKDMethod(
        gamma=0.0,
        lambda_bss=1.0,
        temperature=3.0,
        t_squared=False,
        weights=AMKDWeights(**BSSMethod().weights.model_dump()),
    )
    amkd = step(build_method(bss_terms, student, teacher), batch)
    torch.testing.assert_close(amkd.loss, bss.loss)
    assert amkd.stats == bss.stats


def test_t_squared_scales_both_kl_terms(
    teacher: nn.Module, student_factory: Callable[..., nn.Module], batch
) -> None:
    """t_squared multiplies the clean KL and the boundary samples' KL by T², as KD does, so
    the two keep their balance whatever the temperature."""
    student = student_factory()
    parts = {
        scaled: step(
            build_method(AMKDMethod(lambda_bss=1.0, gamma=0.0, t_squared=scaled), student, teacher),
            batch,
        ).parts
        for scaled in (True, False)
    }
    squared = AMKDMethod().temperature ** 2
    assert parts[False]["bss"] > 0
    for term in ("kd", "bss"):
        torch.testing.assert_close(parts[True][term], squared * parts[False][term])


def test_a_batch_of_only_the_two_boundary_classes_still_has_negatives(
    teacher: nn.Module, student_factory: Callable[..., nn.Module]
) -> None:
    """A negative is of neither class the sample lies between; a batch holding only those two
    falls back to any class but the source, rather than leaving the triplet out."""
    method = build_method(AMKDMethod(margin=1.0), student_factory(), teacher)
    anchor, positive = torch.zeros(1, 2), torch.zeros(1, 2)
    # Columns 0 and 1 are of the source class 0; 2 and 3 of the target class 1, at distance 2.
    negatives = torch.tensor([[0.0, 0.0], [0.0, 0.0], [2.0, 0.0], [2.0, 0.0]])
    labels, source, target = torch.tensor([0, 0, 1, 1]), torch.tensor([0]), torch.tensor([1])
    for seed in range(20):  # negatives are drawn at random: never one of class 0
        torch.manual_seed(seed)
        loss, rows = method._triplet(anchor, positive, negatives, labels, source, target)
        assert rows.item() == 1.0
        assert loss.item() == 0.0  # d(a, p) 0 - d(a, n) 2 + margin 1 < 0: a class-1 negative


def test_amkd_clean_term_is_plain_kd(
    teacher: nn.Module, student_factory: Callable[..., nn.Module], batch
) -> None:
    """By default AMKD's clean term is the KD baseline's (T = 4, T^2), at a constant weight 1."""
    student = student_factory()
    kd = step(build_method(KDMethod(), student, teacher), batch)
    amkd = step(build_method(AMKDMethod(), student, teacher), batch, LATE)
    torch.testing.assert_close(amkd.parts["kd"], kd.parts["kd"])
    torch.testing.assert_close(amkd.loss, kd.loss)
    assert amkd.stats["alpha"] == 1.0 and amkd.stats["beta"] == 0.0


def test_amkd_under_bf16_autocast_with_channels_last(
    teacher: nn.Module, student_factory: Callable[..., nn.Module], batch
) -> None:
    student = student_factory().to(memory_format=torch.channels_last)
    images, labels = batch
    method = build_method(AMKDMethod(mining="hardest"), student, teacher)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = method.step(images.contiguous(memory_format=torch.channels_last), labels, EARLY)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert out.stats["attacked"] > 0
    assert all(p.grad is None for p in teacher.parameters())


def test_feature_embedding_trains_the_same_through_the_engines_wrapper(
    teacher: nn.Module, student_factory: Callable[..., nn.Module], batch
) -> None:
    """The engine hands AMKD `training_module(...)` (what DDP wraps) instead of the student:
    the same loss and gradients as the bare student, and a triplet that really ran."""
    config = AMKDMethod(embedding="features", margin=5.0)
    images, labels = batch
    results = []
    for wrap in (False, True):
        student = student_factory(width=16)
        model = training_module(config, student) if wrap else student
        assert isinstance(model, LogitsAndFeatures) == wrap
        torch.manual_seed(0)  # the attack draws its targets
        output = build_method(config, model, teacher).step(images, labels, TrainProgress(0, 4))
        output.loss.backward()
        results.append((output, [p.grad.clone() for p in student.parameters()]))
    (bare, bare_grads), (wrapped, wrapped_grads) = results
    assert bare.parts["triplet"] > 0
    torch.testing.assert_close(wrapped.loss, bare.loss, rtol=0, atol=0)
    for wrapped_grad, bare_grad in zip(wrapped_grads, bare_grads, strict=True):
        torch.testing.assert_close(wrapped_grad, bare_grad, rtol=0, atol=0)


def test_feature_embedding_refuses_a_student_wrapped_the_wrong_way_round(
    teacher: nn.Module, student_factory: Callable[..., nn.Module]
) -> None:
    """Wrapped (here by torch.compile) before `training_module`, the features could only be
    reached past the wrapper, which under DDP means without gradient synchronisation."""
    compiled = torch.compile(student_factory(width=16))
    with pytest.raises(ValueError, match="training_module"):
        build_method(AMKDMethod(embedding="features"), compiled, teacher)
    wrapped = torch.compile(training_module(AMKDMethod(embedding="features"), compiled._orig_mod))
    build_method(AMKDMethod(embedding="features"), wrapped, teacher)


def test_the_whole_boundary_term_fades_with_beta(
    teacher: nn.Module, student_factory: Callable[..., nn.Module], batch
) -> None:
    """L = CE + alpha KD + beta (lambda_bss BSS + gamma Triplet): with beta only on the BSS
    term, the triplet kept its full weight as the attack faded out, and a test at beta 1 (or
    0) could not tell."""
    config = AMKDMethod(lambda_bss=1.0, margin=1.0)
    method = build_method(config, student_factory(), teacher)
    out = step(method, batch, TrainProgress(epoch=3, epochs=10))  # beta = 1 - 3 / 7.5
    alpha, beta = out.stats["alpha"], out.stats["beta"]
    assert beta == pytest.approx(0.6)
    parts = out.parts
    assert parts["bss"] > 0 and parts["triplet"] > 0
    boundary = config.lambda_bss * parts["bss"] + config.gamma * parts["triplet"]
    expected = parts["ce"] + alpha * parts["kd"] + beta * boundary
    torch.testing.assert_close(out.loss.detach(), expected)


@pytest.mark.parametrize("source", ["teacher", "student"])
def test_student_negatives_pass_gradient_to_the_student(
    source: str, teacher: nn.Module, student_factory: Callable[..., nn.Module], batch
) -> None:
    """negative_source: student means the student's own clean embeddings are the negatives,
    so the triplet also pushes them away from the anchors; detached, they were no more than
    teacher negatives with other values. The clean logits' gradient is the clean terms' alone
    with teacher negatives, and more than that with student ones."""
    config = AMKDMethod(negative_source=source, margin=1.0)
    images, labels = batch
    torch.manual_seed(0)
    out = build_method(config, student_factory(), teacher).step(images, labels, EARLY)
    assert out.parts["triplet"] > 0
    out.logits.retain_grad()
    out.loss.backward()
    clean = out.logits.detach().clone().requires_grad_(True)
    with torch.no_grad():
        teacher_logits = teacher(images)
    kd = soft_kl(clean, teacher_logits, config.temperature) * config.temperature**2
    clean_loss = F.cross_entropy(clean, labels) + out.stats["alpha"] * kd
    (clean_grad,) = torch.autograd.grad(clean_loss, clean)
    through_negatives = (out.logits.grad - clean_grad).abs().max().item()
    if source == "teacher":
        assert through_negatives < 1e-6
    else:
        assert through_negatives > 1e-4
