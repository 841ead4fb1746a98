"""The boundary-supporting-sample search: selection, target sampling, the attack's guarantees."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from compressor.methods.boundary import (
    _collect,
    attack_to_boundary,
    find_boundary_samples,
    normalized_bounds,
    sample_targets,
    select_base,
)
from compressor.recipe import AttackConfig


def _margin(logits: torch.Tensor, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (logits.gather(1, source[:, None]) - logits.gather(1, target[:, None])).squeeze(1)


def _attack_inputs(
    teacher: nn.Module, images: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        logits = teacher(images)
    source = logits.argmax(dim=1)
    torch.manual_seed(3)
    return logits, source, sample_targets(logits, source)


def test_targets_follow_the_teacher_distribution_without_b() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0], [0.0, 3.0, 1.0, 1.0]])
    source = torch.tensor([0, 1])
    draws = 20_000
    rows = logits.repeat_interleave(draws, dim=0)
    generator = torch.Generator().manual_seed(0)
    targets = sample_targets(rows, source.repeat_interleave(draws), generator).view(2, draws)
    q = logits.softmax(dim=1)
    for row in range(2):
        b = int(source[row])
        counts = torch.bincount(targets[row], minlength=4).float() / draws
        assert counts[b] == 0
        expected = q[row] / (1 - q[row, b])
        expected[b] = 0
        torch.testing.assert_close(counts, expected, atol=0.015, rtol=0)


def test_targets_fall_back_to_uniform_when_other_classes_underflow() -> None:
    logits = torch.tensor([[200.0, -200.0, -200.0, -200.0]]).repeat(3000, 1)
    targets = sample_targets(logits, torch.zeros(3000, dtype=torch.long))
    assert (targets != 0).all()
    assert set(targets.tolist()) == {1, 2, 3}


def test_base_samples_are_correct_for_both_and_ranked_by_disagreement() -> None:
    labels = torch.tensor([0, 1, 2, 0])
    teacher = torch.tensor([[4.0, 0, 0], [0, 4.0, 0], [0, 4.0, 0], [4.0, 0, 0]])
    student = torch.tensor([[1.0, 0.5, 0], [0, 4.0, 0], [0, 4.0, 0], [0.1, 0, 0]])
    # Row 2: teacher wrong; rows 0, 1, 3 correct for both; row 3 disagrees most off-label.
    assert select_base(labels, teacher, student, max_samples=8).tolist() == [3, 0, 1]
    assert select_base(labels, teacher, student, max_samples=2).tolist() == [3, 0]
    assert select_base(labels, teacher, -student, max_samples=2).numel() == 0
    # One qualifying row gives none: the student's batch-norm pass needs two samples.
    assert select_base(labels, teacher, student, max_samples=1).numel() == 0
    only_row_3 = torch.tensor([False, False, False, True])
    assert select_base(labels, teacher, student, 8, candidates=only_row_3).numel() == 0


def test_disagreement_leaves_out_the_true_class() -> None:
    """sum over c != y of (p_t,c - p_s,c)²: row B differs off-label by 0.09 and row A by 0.08,
    though A differs more in all (0.24 against 0.18, its true class included)."""
    labels = torch.tensor([0, 0])
    teacher = torch.tensor([[0.9, 0.05, 0.05], [0.9, 0.05, 0.05]]).log()
    student = torch.tensor([[0.5, 0.25, 0.25], [0.6, 0.35, 0.05]]).log()
    assert select_base(labels, teacher, student, max_samples=2).tolist() == [1, 0]


def test_keep_boundary_keeps_none_when_one_sample_landed() -> None:
    """The student's batch-norm pass over the kept samples needs two: one landed is none."""
    adv = torch.zeros(3, 1, 2, 2)
    adv_logits = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])  # only row 0 reached 1
    index, source, target = torch.arange(3), torch.zeros(3, dtype=torch.long), torch.ones(3)
    kept = _collect(
        adv, adv_logits, index, source, target.long(), torch.ones(3), AttackConfig(keep="boundary")
    )
    assert kept.images.shape[0] == 0 and kept.index.numel() == 0
    assert kept.stats["boundary_fraction"] == pytest.approx(1 / 3)  # the search's share


def test_attack_moves_samples_onto_the_boundary_and_freezes_them(
    teacher: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    images, _ = batch
    logits, source, target = _attack_inputs(teacher, images)
    start = _margin(logits, source, target)
    config = AttackConfig(max_steps=40)
    adv, adv_logits, steps = attack_to_boundary(teacher, images, source, target, config, None)
    with torch.no_grad():
        torch.testing.assert_close(teacher(adv), adv_logits)
    end = _margin(adv_logits, source, target)
    landed = adv_logits.argmax(dim=1) == target
    assert landed.float().mean() > 0.5
    # Landed samples sit just past the b/k boundary, not deep inside class k.
    assert (end[landed] < 0).all()
    assert (end[landed] > -0.02 * start[landed]).all()
    # Samples that left b within a short search stopped moving there: a longer search, in
    # which the others keep going, changes neither them nor their step count.
    short, short_logits, short_steps = attack_to_boundary(
        teacher, images, source, target, AttackConfig(max_steps=12), None
    )
    crossed = short_logits.argmax(dim=1) != source
    assert 0 < crossed.sum() < len(crossed)
    assert (steps[~crossed] > 12).all()
    assert torch.equal(adv[crossed], short[crossed])
    assert torch.equal(steps[crossed], short_steps[crossed])


def test_reference_budget_brings_every_sample_close_to_the_boundary(
    teacher: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    images, _ = batch
    logits, source, target = _attack_inputs(teacher, images)
    start = _margin(logits, source, target)
    _, adv_logits, steps = attack_to_boundary(teacher, images, source, target, AttackConfig(), None)
    assert steps.max() <= 10
    still_b_or_k = (adv_logits.argmax(dim=1) == source) | (adv_logits.argmax(dim=1) == target)
    end = _margin(adv_logits, source, target)
    assert (end[still_b_or_k] <= 0.1 * start[still_b_or_k]).all()


def test_search_stops_once_every_sample_is_frozen(
    teacher: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    images, _ = batch
    _, source, target = _attack_inputs(teacher, images)
    calls = []
    handle = teacher.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        _, adv_logits, steps = attack_to_boundary(
            teacher, images, source, target, AttackConfig(max_steps=100), None
        )
    finally:
        handle.remove()
    assert (adv_logits.argmax(dim=1) != source).all()
    assert steps.max() < 100
    # One forward per update, plus the one that found everything frozen.
    assert len(calls) == int(steps.max()) + 1


def test_samples_the_teacher_does_not_assign_to_b_are_not_moved(
    teacher: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    images, _ = batch
    _, source, target = _attack_inputs(teacher, images)
    wrong_source = (source + 1) % 4
    wrong_source[:16] = source[:16]
    adv, _, steps = attack_to_boundary(
        teacher,
        images,
        wrong_source,
        target.where(target != wrong_source, source),
        AttackConfig(),
        None,
    )
    assert (steps[16:] == 0).all()
    assert torch.equal(adv[16:], images[16:])
    assert (steps[:16] > 0).all()


def test_search_is_fp32_under_autocast_and_leaves_the_teacher_alone(
    teacher: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    images, _ = batch
    _, source, target = _attack_inputs(teacher, images)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    plain = attack_to_boundary(teacher, images, source, target, AttackConfig(), None)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = attack_to_boundary(teacher, images.bfloat16(), source, target, AttackConfig(), None)
    assert mixed[0].dtype == mixed[1].dtype == torch.float32
    torch.testing.assert_close(mixed[0], plain[0].bfloat16().float(), atol=0.05, rtol=0)
    assert all(p.grad is None for p in teacher.parameters())
    assert not teacher.training
    assert all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())


def test_adversarial_images_stay_in_the_valid_pixel_range(
    teacher: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    images, _ = batch
    _, source, target = _attack_inputs(teacher, images)
    low, high = normalized_bounds((0.5, 0.5, 0.5), (0.25, 0.5, 1.0))
    torch.testing.assert_close(low, torch.tensor([-2.0, -1.0, -0.5]))
    torch.testing.assert_close(high, torch.tensor([2.0, 1.0, 0.5]))
    inside = torch.maximum(torch.minimum(images, high[:, None, None]), low[:, None, None])
    adv, _, _ = attack_to_boundary(
        teacher, inside, source, target, AttackConfig(max_steps=20), (low, high)
    )
    assert (adv >= low[:, None, None]).all()
    assert (adv <= high[:, None, None]).all()


def test_channels_last_input_gives_the_same_samples(
    teacher: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    images, _ = batch
    _, source, target = _attack_inputs(teacher, images)
    plain, _, plain_steps = attack_to_boundary(
        teacher, images, source, target, AttackConfig(), None
    )
    nhwc = images.contiguous(memory_format=torch.channels_last)
    adv, _, steps = attack_to_boundary(teacher, nhwc, source, target, AttackConfig(), None)
    torch.testing.assert_close(adv, plain, atol=1e-3, rtol=0)
    assert torch.equal(steps, plain_steps)


def test_keep_boundary_returns_landed_samples_only(
    teacher: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    images, _ = batch
    with torch.no_grad():
        logits = teacher(images)
    labels = logits.argmax(dim=1)  # every sample correct for the teacher (and the "student")
    torch.manual_seed(0)
    kept_all = find_boundary_samples(
        teacher, images, labels, logits, logits, AttackConfig(max_steps=40, fraction=1.0), None
    )
    torch.manual_seed(0)
    kept_hits = find_boundary_samples(
        teacher,
        images,
        labels,
        logits,
        logits,
        AttackConfig(max_steps=40, fraction=1.0, keep="boundary"),
        None,
    )
    assert kept_all.stats == kept_hits.stats
    assert kept_all.stats["attacked"] == 32
    assert kept_hits.landed.all()
    assert len(kept_hits.images) == round(32 * kept_all.stats["boundary_fraction"])
    assert torch.equal(kept_hits.index, kept_all.index[kept_all.landed])
    assert torch.equal(kept_all.source, labels[kept_all.index])
    assert (kept_all.target != kept_all.source).all()
    margin = _margin(kept_hits.teacher_logits, kept_hits.source, kept_hits.target)
    assert (margin <= 0).all()


def test_no_candidates_means_no_attack(
    teacher: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    images, _ = batch
    with torch.no_grad():
        logits = teacher(images)
    wrong = (logits.argmax(dim=1) + 1) % 4
    result = find_boundary_samples(teacher, images, wrong, logits, logits, AttackConfig(), None)
    assert result.images.shape == (0, *images.shape[1:])
    assert result.stats == {"attacked": 0.0, "mean_steps": 0.0, "boundary_fraction": 0.0}


def test_targets_stay_within_the_allowed_classes() -> None:
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0]]).repeat(2000, 1)
    allowed = torch.tensor([True, False, True, True])
    targets = sample_targets(logits, torch.zeros(2000, dtype=torch.long), allowed=allowed)
    assert set(targets.tolist()) == {2, 3}
