"""Triplet-KD's building blocks against hand-computed values: the margin loss, the negatives."""

from __future__ import annotations

import pytest
import torch

from compressor.methods import TrainProgress
from compressor.methods.triplet import TripletKD, pick_negatives, triplet_margin
from compressor.recipe import TripletMethod


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
    # The mean is over the rows the mask keeps: row 1's 1.5, not 1.5 over both rows.
    only_row_1 = triplet_margin(anchor, positive, negative, 2.0, torch.tensor([False, True]))
    assert only_row_1.item() == pytest.approx(1.5, abs=1e-5)


def test_margin_zero_is_a_plain_ordering_constraint() -> None:
    """The schema allows margin 0, which torch's own triplet loss refuses with an exception."""
    anchor = torch.zeros(2, 3)
    positive = torch.tensor([[1.0, 0, 0], [2.0, 0, 0]])
    negative = torch.tensor([[0, 1.5, 0], [0, 1.5, 0]])
    # d(a, p) = 1 and 2; d(a, n) = 1.5: row 0 ordered, row 1 out of order by 0.5.
    assert triplet_margin(anchor, positive, negative, 0.0).item() == pytest.approx(0.25, abs=1e-5)


def test_the_margin_loss_matches_torchs_for_a_positive_margin() -> None:
    torch.manual_seed(0)
    anchor, positive, negative = torch.randn(3, 16, 10).unbind()
    expected = torch.nn.functional.triplet_margin_loss(anchor, positive, negative, margin=0.7)
    assert triplet_margin(anchor, positive, negative, 0.7).item() == pytest.approx(expected.item())


def test_negatives_are_valid_random_or_the_closest() -> None:
    torch.manual_seed(0)
    valid = torch.tensor([[False, True, True, True], [False, False, False, False]])
    picks = {int(pick_negatives(valid)[0][0]) for _ in range(200)}
    assert picks == {1, 2, 3}
    assert pick_negatives(valid)[1].tolist() == [True, False]
    distance = torch.tensor([[0.0, 3.0, 1.0, 2.0], [0.0, 0.0, 0.0, 0.0]])
    assert int(pick_negatives(valid, distance)[0][0]) == 2


class _Answers(torch.nn.Module):
    """A model that answers the same logits whatever the images: the roles can be read off."""

    def __init__(self, logits: list[list[float]]) -> None:
        super().__init__()
        self.logits = torch.nn.Parameter(torch.tensor(logits))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.logits + 0 * images.sum()


def test_triplet_kd_anchors_on_the_teacher_and_pulls_the_student_to_it() -> None:
    """anchor teacher(x), positive student(x), negative student(x_j) of another class: with
    two images of two classes, each row's negative is the other row, and the term is the
    hand-computed hinge, which it is not with the roles swapped."""
    teacher, student = _Answers([[0.0, 0.0], [3.0, 0.0]]), _Answers([[1.0, 0.0], [2.0, 0.0]])
    method = TripletKD(TripletMethod(margin=2.0), student, teacher)
    output = method.step(torch.zeros(2, 1, 1, 1), torch.tensor([0, 1]), TrainProgress(0, 1))
    # Row 0: d(t0, s0) = 1, d(t0, s1) = 2 → 1; row 1: d(t1, s1) = 1, d(t1, s0) = 2 → 1.
    # Anchor and positive swapped, row 0 would be d(s0, t0) - d(s0, s1) + 2 = 2.
    assert output.parts["triplet"].item() == pytest.approx(1.0, abs=1e-6)
