"""Every method end to end on small real models: loss, gradients, teacher safety, schedule."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from compressor.errors import UserError
from compressor.methods import StepOutput, TrainProgress, build_method, training_module
from compressor.models.features import LogitsAndFeatures
from compressor.recipe import (
    AMKDMethod,
    AMKDWeights,
    AttackConfig,
    BSSMethod,
    CEMethod,
    KDMethod,
    MethodConfig,
    ScheduleWeights,
    TripletMethod,
)

EARLY = TrainProgress(epoch=0, epochs=10)
LATE = TrainProgress(epoch=8, epochs=10)  # past 75 %: beta = 0

TEACHER_METHODS: list[MethodConfig] = [
    KDMethod(),
    TripletMethod(),
    BSSMethod(),
    AMKDMethod(),
    AMKDMethod(embedding="softmax", negative_source="student", mining="hardest"),
    AMKDMethod(embedding="features", mining="hardest", lambda_bss=0.0),
    AMKDMethod(attack={"keep": "boundary", "max_steps": 30}),
    AMKDMethod(attack={"search": "interpolation"}),
    BSSMethod(attack={"search": "interpolation"}),
]


def _step(method, batch, progress=EARLY, seed: int = 0) -> StepOutput:
    torch.manual_seed(seed)
    images, labels = batch
    return method.step(images, labels, progress)


def _grads(student: nn.Module, loss: torch.Tensor) -> torch.Tensor:
    grads = torch.autograd.grad(loss, list(student.parameters()), allow_unused=True)
    return torch.cat([g.flatten() for g in grads if g is not None])


def test_ce_needs_no_teacher(student_factory: Callable[..., nn.Module], batch) -> None:
    student = student_factory()
    out = _step(build_method(CEMethod(), student, None), batch)
    assert set(out.parts) == {"ce"}
    out.loss.backward()
    assert all(p.grad is not None for p in student.parameters())


@pytest.mark.parametrize("config", [KDMethod(), BSSMethod(), TripletMethod(), AMKDMethod()])
def test_teacher_methods_refuse_to_start_without_one(
    config: MethodConfig, student_factory: Callable[..., nn.Module]
) -> None:
    with pytest.raises(UserError, match="teacher:"):
        build_method(config, student_factory(), None)


def test_feature_embedding_needs_matching_widths(
    teacher: nn.Module, student_factory: Callable[..., nn.Module]
) -> None:
    with pytest.raises(UserError, match="logits or softmax"):
        build_method(AMKDMethod(embedding="features"), student_factory(width=8), teacher)
    with pytest.raises(UserError, match="forward_features"):
        build_method(AMKDMethod(embedding="features"), nn.Linear(3, 4), teacher)


@pytest.mark.parametrize("config", TEACHER_METHODS, ids=lambda c: c.name)
def test_step_trains_the_student_and_never_touches_the_teacher(
    config: MethodConfig, teacher: nn.Module, student_factory: Callable[..., nn.Module], batch
) -> None:
    width = 16 if getattr(config, "embedding", None) == "features" else 8
    student = student_factory(width=width)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    out = _step(build_method(config, student, teacher), batch)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert out.logits.shape == (32, 4)
    assert all(p.grad is None for p in teacher.parameters())
    assert not teacher.training
    assert all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    assert all(not v.requires_grad for v in out.parts.values())
    if config.name in ("bss", "amkd"):
        assert out.stats["attacked"] > 0
        assert set(out.stats) == {"alpha", "beta", "attacked", "mean_steps", "boundary_fraction"}


# (id, part, without, with): each case scales one loss part between two otherwise identical
# steps; a different student gradient proves that the part reaches the student.
# The test batch is small: attack all of it so every part has samples to work on.
EVERY_SAMPLE = AttackConfig(fraction=1.0)
INTERPOLATE_EVERY_SAMPLE = AttackConfig(fraction=1.0, search="interpolation")
PART_CASES = [
    ("kd", "kd", KDMethod(kd_weight=0.0), KDMethod()),
    ("triplet", "triplet", TripletMethod(triplet_weight=0.0), TripletMethod()),
    (
        "bss-kd",
        "kd",
        BSSMethod(attack=EVERY_SAMPLE, weights=ScheduleWeights(alpha_extra=0.0)),
        BSSMethod(attack=EVERY_SAMPLE),
    ),
    (
        "bss-adv",
        "bss",
        BSSMethod(attack=EVERY_SAMPLE, weights=ScheduleWeights(beta_init=1.0)),
        BSSMethod(attack=EVERY_SAMPLE),
    ),
    (
        "amkd-kd",
        "kd",
        AMKDMethod(attack=EVERY_SAMPLE),
        AMKDMethod(attack=EVERY_SAMPLE, weights=AMKDWeights(alpha_extra=3.0)),
    ),
    (
        "amkd-bss",
        "bss",
        AMKDMethod(attack=EVERY_SAMPLE),
        AMKDMethod(attack=EVERY_SAMPLE, lambda_bss=1.0),
    ),
    (
        "amkd-triplet",
        "triplet",
        AMKDMethod(attack=EVERY_SAMPLE, gamma=0.0),
        AMKDMethod(attack=EVERY_SAMPLE),
    ),
    (
        # Against teacher negatives, so the case fails if negative_source is ignored.
        "amkd-triplet-student-negatives",
        "triplet",
        AMKDMethod(attack=EVERY_SAMPLE, negative_source="teacher", embedding="softmax"),
        AMKDMethod(attack=EVERY_SAMPLE, negative_source="student", embedding="softmax"),
    ),
    (
        "amkd-triplet-interpolation",
        "triplet",
        AMKDMethod(attack=INTERPOLATE_EVERY_SAMPLE, gamma=0.0, margin=1.0),
        AMKDMethod(attack=INTERPOLATE_EVERY_SAMPLE, margin=1.0),
    ),
    (
        "amkd-triplet-features",
        "triplet",
        AMKDMethod(attack=EVERY_SAMPLE, gamma=0.0, embedding="features", margin=1.0),
        AMKDMethod(attack=EVERY_SAMPLE, embedding="features", mining="hardest", margin=1.0),
    ),
]


@pytest.mark.parametrize(
    ("part", "without", "with_"), [c[1:] for c in PART_CASES], ids=[c[0] for c in PART_CASES]
)
def test_every_loss_part_reaches_the_student(
    part: str,
    without: MethodConfig,
    with_: MethodConfig,
    teacher: nn.Module,
    student_factory: Callable[..., nn.Module],
    batch,
) -> None:
    width = 16 if getattr(with_, "embedding", None) == "features" else 8
    student = student_factory(width=width)
    base = _step(build_method(without, student, teacher), batch)
    full = _step(build_method(with_, student, teacher), batch)
    assert full.parts[part] > 0
    assert not torch.allclose(_grads(student, base.loss), _grads(student, full.loss))


@pytest.mark.parametrize("config", [BSSMethod(), AMKDMethod()], ids=["bss", "amkd"])
def test_no_attack_once_beta_is_zero(
    config: MethodConfig, teacher: nn.Module, student_factory: Callable[..., nn.Module], batch
) -> None:
    method = build_method(config, student_factory(), teacher)
    calls = []
    handle = teacher.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        late = _step(method, batch, LATE)
        assert len(calls) == 1  # the clean forward only
        early = _step(method, batch, EARLY)
        assert len(calls) > 2
    finally:
        handle.remove()
    assert late.stats["beta"] == 0 and late.stats["attacked"] == 0
    assert late.parts["bss"] == 0
    assert early.stats["beta"] > 0 and early.stats["attacked"] > 0


def test_amkd_without_triplet_is_bss(
    teacher: nn.Module, student_factory: Callable[..., nn.Module], batch
) -> None:
    student = student_factory()
    bss = _step(build_method(BSSMethod(), student, teacher), batch)
    bss_terms = AMKDMethod(
        gamma=0.0,
        lambda_bss=1.0,
        temperature=3.0,
        t_squared=False,
        weights=AMKDWeights(**BSSMethod().weights.model_dump()),
    )
    amkd = _step(build_method(bss_terms, student, teacher), batch)
    torch.testing.assert_close(amkd.loss, bss.loss)
    assert amkd.stats == bss.stats


def test_amkd_clean_term_is_plain_kd(
    teacher: nn.Module, student_factory: Callable[..., nn.Module], batch
) -> None:
    """By default AMKD's clean term is the KD baseline's (T = 4, T^2), at a constant weight 1."""
    student = student_factory()
    kd = _step(build_method(KDMethod(), student, teacher), batch)
    amkd = _step(build_method(AMKDMethod(), student, teacher), batch, LATE)
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
