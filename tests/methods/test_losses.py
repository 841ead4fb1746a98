"""Loss building blocks against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from compressor.methods import TrainProgress
from compressor.methods.bss import schedule
from compressor.methods.kd import soft_kl
from compressor.methods.triplet import pick_negatives, triplet_margin
from compressor.recipe import ScheduleWeights


def _softmax(values: list[float]) -> list[float]:
    exps = [math.exp(v) for v in values]
    return [e / sum(exps) for e in exps]


def test_kl_matches_a_hand_computed_value() -> None:
    student = [1.0, 2.0, 0.0]
    teacher = [0.0, 1.0, 3.0]
    temperature = 2.0
    p_s = _softmax([v / temperature for v in student])
    p_t = _softmax([v / temperature for v in teacher])
    expected = sum(t * math.log(t / s) for t, s in zip(p_t, p_s, strict=True))
    # Two identical rows: batchmean must average, not sum.
    value = soft_kl(torch.tensor([student] * 2), torch.tensor([teacher] * 2), temperature)
    assert value.item() == pytest.approx(expected, rel=1e-5)
    assert soft_kl(torch.tensor([teacher]), torch.tensor([teacher]), 4.0).item() == pytest.approx(
        0.0, abs=1e-6
    )


def test_triplet_is_zero_when_the_margin_holds_and_positive_when_violated() -> None:
    anchor = torch.zeros(2, 3)
    positive = torch.tensor([[1.0, 0, 0], [1.0, 0, 0]])
    negative = torch.tensor([[0, 5.0, 0], [0, 1.5, 0]])
    # d(a, p) = 1; d(a, n) = 5 and 1.5; margin 2: row 0 satisfied, row 1 violated by 1.5.
    losses = [
        triplet_margin(anchor[i : i + 1], positive[i : i + 1], negative[i : i + 1], 2.0)
        for i in range(2)
    ]
    assert losses[0].item() == 0.0
    assert losses[1].item() == pytest.approx(1.5, abs=1e-5)
    both = triplet_margin(anchor, positive, negative, 2.0)
    assert both.item() == pytest.approx(0.75, abs=1e-5)
    only_row_0 = triplet_margin(anchor, positive, negative, 2.0, torch.tensor([True, False]))
    assert only_row_0.item() == 0.0
    nothing = triplet_margin(anchor, positive, negative, 2.0, torch.tensor([False, False]))
    assert nothing.item() == 0.0


def test_negatives_are_valid_random_or_the_closest() -> None:
    torch.manual_seed(0)
    valid = torch.tensor([[False, True, True, True], [False, False, False, False]])
    picks = {int(pick_negatives(valid)[0][0]) for _ in range(200)}
    assert picks == {1, 2, 3}
    assert pick_negatives(valid)[1].tolist() == [True, False]
    distance = torch.tensor([[0.0, 3.0, 1.0, 2.0], [0.0, 0.0, 0.0, 0.0]])
    assert int(pick_negatives(valid, distance)[0][0]) == 2


def test_schedule_follows_the_reference_script() -> None:
    weights = ScheduleWeights()
    # alpha = 1 + 3 max(1 - e/80, 0), beta = 2 max(1 - e/60, 0), e in epochs, moving per step.
    alpha, beta = schedule(weights, TrainProgress(epoch=0, epochs=80))
    assert (alpha, beta) == (4.0, 2.0)
    alpha, beta = schedule(weights, TrainProgress(epoch=30, epochs=80, within_epoch=0.5))
    assert alpha == pytest.approx(1 + 3 * (1 - 30.5 / 80))
    assert beta == pytest.approx(2 * (1 - 30.5 / 60))
    assert schedule(weights, TrainProgress(epoch=59, epochs=80, within_epoch=0.9))[1] > 0
    assert schedule(weights, TrainProgress(epoch=60, epochs=80))[1] == 0
    assert schedule(weights, TrainProgress(epoch=79, epochs=80))[0] == pytest.approx(1 + 3 / 80)


def test_one_epoch_run_attacks_for_its_first_three_quarters() -> None:
    weights = ScheduleWeights()
    assert schedule(weights, TrainProgress(epoch=0, epochs=1, within_epoch=0.7))[1] > 0
    assert schedule(weights, TrainProgress(epoch=0, epochs=1, within_epoch=0.75))[1] == 0
