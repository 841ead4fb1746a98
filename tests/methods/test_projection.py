"""PCGrad's projection through the loss: its gradient, its value, and AMKD's use of it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from compressor.errors import UserError
from compressor.methods import TrainProgress, build_method
from compressor.methods.projection import without_conflict
from compressor.models import create_model
from compressor.recipe import AMKDMethod, KDMethod


def _gradient(loss: torch.Tensor, weight: nn.Parameter) -> torch.Tensor:
    (gradient,) = torch.autograd.grad(loss, [weight], retain_graph=True)
    return gradient


def test_a_conflicting_gradient_loses_its_component_along_the_main_one() -> None:
    weight = nn.Parameter(torch.tensor([1.0, 2.0]))
    main = (weight * torch.tensor([1.0, 0.0])).sum() ** 2  # gradient (2, 0)
    extra = (weight * torch.tensor([-1.0, 1.0])).sum()  # gradient (-1, 1): dot -2 < 0
    loss, stats = without_conflict(main, extra, [weight])
    g_main, g_extra = _gradient(main, weight), _gradient(extra, weight)
    projected = g_extra - (g_main @ g_extra) / (g_main @ g_main) * g_main  # (0, 1)
    assert torch.allclose(_gradient(loss, weight), g_main + projected)
    assert _gradient(loss, weight) @ g_main > 0  # the step no longer undoes the main fit
    assert loss.item() == pytest.approx(main.item() + extra.item())  # logged as the true sum
    assert stats["grad_conflict"] == 1.0
    assert stats["grad_cosine"] == pytest.approx(-2 / (2 * 2**0.5))


def test_an_agreeing_or_absent_gradient_is_left_alone() -> None:
    weight = nn.Parameter(torch.tensor([1.0, 2.0]))
    main = (weight * torch.tensor([1.0, 0.0])).sum() ** 2
    extra = (weight * torch.tensor([1.0, 1.0])).sum()  # dot 2 > 0
    loss, stats = without_conflict(main, extra, [weight])
    assert torch.allclose(_gradient(loss, weight), _gradient(main + extra, weight))
    assert stats["grad_conflict"] == 0.0 and stats["grad_cosine"] > 0
    _, none = without_conflict(main, torch.zeros(()), [weight])  # beta 0: no boundary term
    assert none == {"grad_conflict": 0.0, "grad_cosine": 0.0, "grad_probe_skipped": 0.0}


# A student 4 wide conflicts with the teacher on this batch; one 8 wide does not.
@pytest.mark.parametrize(("width", "conflict"), [(4, True), (8, False)])
def test_amkd_projects_its_boundary_term_only_where_it_conflicts(
    width: int,
    conflict: bool,
    teacher: nn.Module,
    student_factory: Callable[..., nn.Module],
    batch,
) -> None:
    """Same step, same samples: the loss value is AMKD's either way, and the gradient is the
    clean term's plus the boundary term's, projected where the two conflict."""
    student = student_factory(width=width)
    images, labels = batch
    outputs = {}
    for project in (False, True):
        config = AMKDMethod(
            attack={"fraction": 1.0},
            margin=1.4,  # every hinge active
            negative_source="student",
            project_conflicts=project,
        )
        torch.manual_seed(0)
        outputs[project] = build_method(config, student, teacher).step(
            images, labels, TrainProgress(epoch=0, epochs=10)
        )
    plain, projected = outputs[False], outputs[True]
    assert "grad_conflict" not in plain.stats
    assert projected.stats["grad_conflict"] == float(conflict)
    assert (projected.stats["grad_cosine"] < 0) == conflict
    assert projected.loss.item() == pytest.approx(plain.loss.item())
    # KD's loss is AMKD's clean term (same T, same pass): what the boundary term may not undo.
    parameters = list(student.parameters())
    kd = build_method(KDMethod(), student, teacher).step(
        images, labels, TrainProgress(epoch=0, epochs=10)
    )
    g_clean, g_plain, g_projected = (
        torch.cat([g.flatten() for g in torch.autograd.grad(loss, parameters)])
        for loss in (kd.loss, plain.loss, projected.loss)
    )
    if conflict:  # the boundary part of the step is orthogonal to the clean gradient now
        assert (g_plain - g_clean) @ g_clean < 0
        assert (g_projected - g_clean) @ g_clean == pytest.approx(0.0, abs=1e-5)
    else:
        assert torch.allclose(g_projected, g_plain)


def test_refused_when_processes_share_the_training(
    tmp_path: Path, teacher: nn.Module, student_factory: Callable[..., nn.Module]
) -> None:
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1
    )
    try:
        with pytest.raises(UserError, match="project_conflicts runs in one process only"):
            build_method(AMKDMethod(project_conflicts=True), student_factory(), teacher)
    finally:
        dist.destroy_process_group()


# The main term's weight: 1 keeps its fp16 gradients small; 16 (AMKD's T² on KD) takes the
# largest above 3, which overflows fp16 at the first probe scale, 2^16.
@pytest.mark.parametrize("weight", [1.0, 16.0])
def test_under_fp16_autocast_the_gradients_are_measured_without_underflow(weight: float) -> None:
    """Unscaled fp16 gradients of a small term underflow (on these inputs the cosine reads
    0.34 unscaled against fp32's 0.50); scaled, and by less after an overflow, it reads what
    fp32 does. 16 images of 16x16 pixels: CPU fp16 convolutions are slow, and a smaller
    extra term keeps the underflow as large as 64 full-size images showed with 1e-3."""
    torch.manual_seed(0)
    model = create_model("resnet8", 10).train()
    images, labels = torch.randn(16, 3, 16, 16), torch.randint(0, 10, (16,))
    targets = F.softmax(torch.randn(16, 10), dim=1)

    def losses() -> tuple[torch.Tensor, torch.Tensor]:
        main = weight * F.cross_entropy(model(images).float(), labels)
        flipped = F.log_softmax(model(images.flip(3)).float(), dim=1)
        return main, 1e-4 * F.kl_div(flipped, targets, reduction="batchmean")

    parameters = list(model.parameters())
    _, fp32 = without_conflict(*losses(), parameters)
    with torch.autocast("cpu", dtype=torch.float16):
        _, fp16 = without_conflict(*losses(), parameters)
    assert fp16["grad_probe_skipped"] == 0.0
    assert fp16["grad_cosine"] == pytest.approx(fp32["grad_cosine"], abs=0.05)
