"""The student's BatchNorm on boundary samples: what each mode normalises by and what it keeps."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from compressor.methods import TrainProgress, build_method
from compressor.methods.boundary_norm import boundary_norm
from compressor.recipe import AMKDMethod, BSSMethod

from .conftest import make_batch

# Both boundary terms active on the tiny models: BSS's KL, and a margin the hinges exceed.
_AMKD_ACTIVE = AMKDMethod(lambda_bss=1.0, margin=1.0)


def _buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: buffer.clone() for name, buffer in model.named_buffers()}


def _assert_same_buffers(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    for name, buffer in model.named_buffers():
        torch.testing.assert_close(buffer, before[name], rtol=0, atol=0, msg=name)


def _norm_flags(model: nn.Module) -> list[tuple[bool, bool]]:
    return [
        (m.training, m.track_running_stats) for m in model.modules() if isinstance(m, _BatchNorm)
    ]


@pytest.fixture
def off_distribution() -> torch.Tensor:
    """Images whose statistics differ from the clean batches', as attacked samples' do."""
    images, _ = make_batch(16, torch.Generator().manual_seed(5))
    return 3.0 * images + 1.0


def test_update_folds_the_batch_into_the_running_statistics(
    student_factory: Callable[..., nn.Module], off_distribution: torch.Tensor
) -> None:
    student = student_factory()
    before = _buffers(student)
    with boundary_norm(student, "update"):
        student(off_distribution)
    changed = [n for n, b in student.named_buffers() if not torch.equal(b, before[n])]
    assert any(n.endswith("running_mean") for n in changed)
    assert any(n.endswith("num_batches_tracked") for n in changed)


def test_batch_normalises_by_the_batch_and_keeps_the_running_statistics(
    student_factory: Callable[..., nn.Module], off_distribution: torch.Tensor
) -> None:
    student = student_factory()
    expected = copy.deepcopy(student)(off_distribution)  # train mode: batch statistics
    before, flags = _buffers(student), _norm_flags(student)
    with boundary_norm(student, "batch"):
        out = student(off_distribution)
    torch.testing.assert_close(out, expected)
    _assert_same_buffers(student, before)
    assert _norm_flags(student) == flags


def test_running_normalises_as_the_deployed_student_does(
    student_factory: Callable[..., nn.Module], off_distribution: torch.Tensor
) -> None:
    student = student_factory()
    student(make_batch(32, torch.Generator().manual_seed(2))[0])  # running stats off their init
    expected = copy.deepcopy(student).eval()(off_distribution)
    before, flags = _buffers(student), _norm_flags(student)
    with boundary_norm(student, "running"):
        out = student(off_distribution)
    torch.testing.assert_close(out, expected)
    _assert_same_buffers(student, before)
    assert _norm_flags(student) == flags and student.training


def test_layers_already_in_eval_mode_stay_so_and_flags_come_back_after_an_error(
    student_factory: Callable[..., nn.Module],
) -> None:
    student = student_factory()
    frozen = student.features[1].eval()
    flags = _norm_flags(student)
    for mode in ("batch", "running"):
        with pytest.raises(RuntimeError), boundary_norm(student, mode):
            raise RuntimeError("the forward pass failed")
        assert _norm_flags(student) == flags
    assert not frozen.training


@pytest.mark.parametrize("name", ["bss", "amkd"])
@pytest.mark.parametrize("mode", ["update", "batch", "running"])
def test_only_update_lets_the_boundary_samples_into_the_running_statistics(
    name: str,
    mode: str,
    teacher: nn.Module,
    student_factory: Callable[..., nn.Module],
    batch: tuple[torch.Tensor, torch.Tensor],
) -> None:
    """After a step with an attack, the running statistics are the clean forward's, or not."""
    config = (BSSMethod if name == "bss" else AMKDMethod)(boundary_norm=mode)
    student = student_factory()
    clean_only = copy.deepcopy(student)
    clean_only(batch[0])
    out = build_method(config, student, teacher).step(*batch, TrainProgress(epoch=0, epochs=10))
    assert out.stats["attacked"] > 0
    means = [
        (a.running_mean, b.running_mean)
        for a, b in zip(student.modules(), clean_only.modules(), strict=True)
        if isinstance(a, _BatchNorm)
    ]
    same = all(torch.equal(a, b) for a, b in means)
    assert same == (mode != "update")


def test_batch_trains_exactly_as_the_reference_does(
    teacher: nn.Module,
    student_factory: Callable[..., nn.Module],
    batch: tuple[torch.Tensor, torch.Tensor],
) -> None:
    """Only the running statistics differ: the loss and every gradient are the reference's."""
    grads = {}
    for mode in ("update", "batch"):
        student = student_factory()
        torch.manual_seed(0)
        out = build_method(
            _AMKD_ACTIVE.model_copy(update={"boundary_norm": mode}), student, teacher
        ).step(*batch, TrainProgress(epoch=0, epochs=10))
        assert out.stats["attacked"] > 0 and out.parts["triplet"] > 0
        grads[mode] = torch.autograd.grad(out.loss, list(student.parameters()))
    for reference, ours in zip(grads["update"], grads["batch"], strict=True):
        torch.testing.assert_close(ours, reference, rtol=0, atol=0)
