"""Every method end to end on small real models: loss, gradients, teacher safety, schedule."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
from torch import nn

from compressor.errors import UserError
from compressor.methods import build_method
from compressor.recipe import (
    AMKDMethod,
    AMKDWeights,
    AttackConfig,
    BSSMethod,
    KDMethod,
    MethodConfig,
    ScheduleWeights,
    TripletMethod,
)
from tests.methods.conftest import NUM_CLASSES, TinyNet
from tests.methods.helpers import EARLY, LATE, step

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
    AMKDMethod(attack={"search": "refined"}),
]


def _grads(student: nn.Module, loss: torch.Tensor) -> torch.Tensor:
    grads = torch.autograd.grad(loss, list(student.parameters()), allow_unused=True)
    return torch.cat([g.flatten() for g in grads if g is not None])


@pytest.mark.parametrize("config", [KDMethod(), BSSMethod(), TripletMethod(), AMKDMethod()])
def test_teacher_methods_refuse_to_start_without_one(
    config: MethodConfig, student_factory: Callable[..., nn.Module]
) -> None:
    with pytest.raises(UserError, match="teacher:"):
        build_method(config, student_factory(), None)


@pytest.mark.parametrize("config", TEACHER_METHODS, ids=lambda c: c.name)
def test_step_trains_the_student_and_never_touches_the_teacher(
    config: MethodConfig, teacher: nn.Module, student_factory: Callable[..., nn.Module], batch
) -> None:
    width = 16 if getattr(config, "embedding", None) == "features" else 8
    student = student_factory(width=width)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    out = step(build_method(config, student, teacher), batch)
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
# steps; a different student gradient proves that the part reaches the student. (AMKD's
# triplet cases keep a BSS term: without either boundary term the recipe is refused.)
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
        AMKDMethod(attack=EVERY_SAMPLE, gamma=0.0, lambda_bss=1.0),
        AMKDMethod(attack=EVERY_SAMPLE, lambda_bss=1.0),
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
        AMKDMethod(attack=INTERPOLATE_EVERY_SAMPLE, gamma=0.0, lambda_bss=1.0, margin=1.0),
        AMKDMethod(attack=INTERPOLATE_EVERY_SAMPLE, lambda_bss=1.0, margin=1.0),
    ),
    (
        "amkd-triplet-features",
        "triplet",
        AMKDMethod(
            attack=EVERY_SAMPLE, gamma=0.0, lambda_bss=1.0, embedding="features", margin=1.0
        ),
        AMKDMethod(
            attack=EVERY_SAMPLE,
            lambda_bss=1.0,
            embedding="features",
            mining="hardest",
            margin=1.0,
        ),
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
    base = step(build_method(without, student, teacher), batch)
    full = step(build_method(with_, student, teacher), batch)
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
        late = step(method, batch, LATE)
        assert len(calls) == 1  # the clean forward only
        early = step(method, batch, EARLY)
        assert len(calls) > 2
    finally:
        handle.remove()
    assert late.stats["beta"] == 0 and late.stats["attacked"] == 0
    assert late.parts["bss"] == 0
    assert early.stats["beta"] > 0 and early.stats["attacked"] > 0


class _NormOnOneByOne(TinyNet):
    """A batch-norm layer on the 1x1 feature map, as torchvision models have at 32 pixels:
    in train mode it cannot normalise a batch of one."""

    def __init__(self) -> None:
        super().__init__(width=8)
        self.features.append(nn.BatchNorm1d(8))


def test_a_single_qualifying_base_image_is_not_attacked(
    teacher: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    """One boundary sample through such a student crashed the run ("Expected more than 1
    value per channel when training"): a step attacks two base images or none."""
    torch.manual_seed(1)
    student = _NormOnOneByOne().train()
    images, _ = batch
    with torch.no_grad():
        teacher_says = teacher(images).argmax(dim=1)
        student_says = copy.deepcopy(student)(images).argmax(dim=1)
    both = (teacher_says == student_says).nonzero().flatten()
    assert both.numel() >= 2
    labels = (teacher_says + 1) % NUM_CLASSES  # the teacher is wrong on every row...
    labels[both[0]] = teacher_says[both[0]]  # ...but one, where the student is right too
    out = step(build_method(AMKDMethod(), student, teacher), (images, labels))
    assert out.stats["attacked"] == 0 and torch.isfinite(out.loss)
    labels[both[1]] = teacher_says[both[1]]
    out = step(build_method(AMKDMethod(), student, teacher), (images, labels))
    assert out.stats["attacked"] == 2
    out.loss.backward()
