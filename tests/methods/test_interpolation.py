"""The bisecting searches: onto the teacher's b/k crossing between two real images (interpolation)
or back along the attack's result (refined)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from compressor.methods.boundary import find_boundary_samples
from compressor.methods.interpolation import interpolate_to_boundary, logit_margin
from compressor.recipe import AttackConfig


def _mix_weight(sample: torch.Tensor, start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
    """l with sample = (1 - l) start + l end, by projection on the segment (per row)."""
    direction = (end - start).flatten(1)
    return ((sample - start).flatten(1) * direction).sum(1) / direction.square().sum(1)


def _logits(teacher: nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return teacher(images)


def _labelled_by_teacher(
    teacher: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The batch's images, the teacher's logits and labels it gets all right (its argmax)."""
    images, _ = batch
    logits = _logits(teacher, images)
    return images, logits, logits.argmax(dim=1)


@pytest.mark.parametrize("halvings", [1, 12])
def test_bisection_lands_within_one_halving_past_the_crossing(
    halvings: int, teacher: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    images, _ = batch
    predicted = _logits(teacher, images).argmax(dim=1)
    # Pair each image with the first image the teacher puts in another class.
    partner = torch.stack([(predicted != c).nonzero()[0, 0] for c in predicted.tolist()])
    source, target = predicted, predicted[partner]
    adv, adv_logits = interpolate_to_boundary(
        teacher, images, images[partner], source, target, halvings
    )
    # The logits are the teacher's on the returned samples, also for rows that never moved
    # off the partner (with one halving, every row whose midpoint is still class b).
    torch.testing.assert_close(_logits(teacher, adv), adv_logits)
    weight = _mix_weight(adv, images, images[partner])
    assert (weight == 1).any() if halvings == 1 else (weight < 1).all()
    expected = torch.lerp(images, images[partner], weight.view(-1, 1, 1, 1))
    torch.testing.assert_close(adv, expected)
    assert (logit_margin(adv_logits, source, target) <= 0).all()  # on the k side of z_b = z_k
    back = torch.lerp(images, images[partner], (weight - 2**-halvings).view(-1, 1, 1, 1))
    assert (logit_margin(_logits(teacher, back), source, target) > 0).all()  # ... by one halving


def test_search_pairs_each_base_with_a_correct_image_of_its_target(
    teacher: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    images, logits, labels = _labelled_by_teacher(teacher, batch)
    labels[:4] = (labels[:4] + 1) % 4  # four rows the teacher gets wrong: never a partner
    config = AttackConfig(fraction=1.0, search="interpolation", halvings=10)
    torch.manual_seed(0)
    result = find_boundary_samples(teacher, images, labels, logits, logits, config, None)
    assert result.stats["attacked"] == len(result.images) == 28
    assert result.stats["mean_steps"] == 10
    assert (result.index >= 4).all() and (result.target != result.source).all()
    assert (logit_margin(result.teacher_logits, result.source, result.target) <= 0).all()
    correct = logits.argmax(dim=1) == labels
    for row, sample, target in zip(result.index, result.images, result.target, strict=True):
        # Some teacher-correct image of the target class is the other end of the segment.
        ends = images[(labels == target) & correct]
        start = images[row].expand_as(ends)
        weights = _mix_weight(sample.expand_as(ends), start, ends)
        mixes = torch.lerp(start, ends, weights.view(-1, 1, 1, 1))
        assert ((mixes - sample).flatten(1).abs().amax(1) < 1e-4).any()


def test_a_class_without_a_correct_image_is_never_a_target(
    teacher: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    images, logits, labels = _labelled_by_teacher(teacher, batch)
    missing = int(labels[0])
    # The teacher gets every image of one class wrong: that class has no partner.
    labels[labels == missing] = (missing + 1) % 4
    config = AttackConfig(fraction=1.0, search="interpolation")
    for seed in range(5):
        torch.manual_seed(seed)
        result = find_boundary_samples(teacher, images, labels, logits, logits, config, None)
        assert len(result.images) > 0
        assert (result.target != missing).all()


def test_a_batch_with_one_available_class_has_no_samples(
    teacher: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    images, _ = batch
    logits = _logits(teacher, images)
    only = logits.argmax(dim=1) == logits.argmax(dim=1)[0]
    labels = logits[only].argmax(dim=1)
    config = AttackConfig(fraction=1.0, search="interpolation")
    result = find_boundary_samples(
        teacher, images[only], labels, logits[only], logits[only], config, None
    )
    assert result.images.shape[0] == 0 and result.stats["attacked"] == 0


@pytest.mark.parametrize("step_size", [0.3, 3.0])
def test_refined_search_bisects_the_attack_back_to_the_crossing(
    step_size: float, teacher: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    images, logits, labels = _labelled_by_teacher(teacher, batch)
    searches = {}
    for search in ("gradient", "refined"):
        halvings = {"halvings": 12} if search == "refined" else {}  # gradient has none
        config = AttackConfig(fraction=1.0, step_size=step_size, search=search, **halvings)
        torch.manual_seed(0)
        searches[search] = find_boundary_samples(
            teacher, images, labels, logits, logits, config, None
        )
    attacked, refined = searches["gradient"], searches["refined"]
    assert torch.equal(refined.index, attacked.index)
    assert torch.equal(refined.target, attacked.target)
    assert refined.stats["mean_steps"] == attacked.stats["mean_steps"]  # attack updates
    torch.testing.assert_close(_logits(teacher, refined.images), refined.teacher_logits)
    base, source, target = images[refined.index], refined.source, refined.target
    # Every sample lies on the segment from its base image to the attack's result ...
    weight = _mix_weight(refined.images, base, attacked.images)
    torch.testing.assert_close(
        refined.images, torch.lerp(base, attacked.images, weight[:, None, None, None])
    )
    # ... where a result past the crossing comes back to within one halving of it ...
    attack_margin = logit_margin(attacked.teacher_logits, source, target)
    margin = logit_margin(refined.teacher_logits, source, target)
    crossed = attack_margin <= 0
    assert crossed.any()
    assert (margin[crossed] <= 0).all() and (margin[crossed] >= attack_margin[crossed]).all()
    back = torch.lerp(base, attacked.images, (weight - 2**-12)[:, None, None, None])
    assert (
        logit_margin(_logits(teacher, back[crossed]), source[crossed], target[crossed]) > 0
    ).all()
    # ... and a result still on the b side stays where the attack left it.
    stayed = (weight == 1) & ~crossed
    assert torch.equal(refined.images[stayed], attacked.images[stayed])
    if step_size < 1:  # the reference step mostly ends short of the boundary: kept as is
        assert stayed.any()
    else:  # a long step overshoots deep into k; the bisection takes nearly all of it back
        assert margin[crossed].abs().mean() < 0.01 * attack_margin[crossed].abs().mean()
