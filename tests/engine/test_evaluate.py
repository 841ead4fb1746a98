"""Evaluation is fp32 whatever the training precision, so reported accuracies match what the
exported fp32 model scores."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from compressor.engine.device import DeviceSetup
from compressor.engine.evaluate import agreement, check_finite_logits, evaluate
from compressor.errors import UserError
from compressor.models.registry import create_model

CPU = DeviceSetup(torch.device("cpu"), None, channels_last=False)


def _batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    return [
        (torch.randn(16, 3, 32, 32, generator=generator), torch.randint(0, 10, (16,)))
        for _ in range(3)
    ]


def test_mixed_precision_setup_evaluates_in_fp32() -> None:
    torch.manual_seed(0)
    model = create_model("resnet8", num_classes=10).eval()
    batches = _batches()
    cpu = torch.device("cpu")
    fp32 = evaluate(model, batches, DeviceSetup(cpu, None, channels_last=False))
    bf16 = evaluate(model, batches, DeviceSetup(cpu, torch.bfloat16, channels_last=False))
    assert bf16.loss == fp32.loss  # under bf16 autocast the loss moves in the third digit
    assert torch.equal(bf16.predictions, fp32.predictions)
    assert (bf16.accuracy, bf16.count) == (fp32.accuracy, 48)


def _unequal_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Logits as the batches' images (the model is nn.Identity): a batch of 3 and one of 2,
    4 of the 5 predicted right, their losses far apart."""
    first = torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 1.0]])
    second = torch.tensor([[5.0, 0.0, -5.0], [4.0, 0.0, 0.0]])
    return [(first, torch.tensor([0, 1, 2])), (second, torch.tensor([0, 2]))]


def test_the_loss_is_the_mean_over_samples_of_batches_of_unequal_size() -> None:
    """Summed per batch, divided by the samples: a mean of the batches' means, or a sum over
    the number of batches, weighs the last, short batch wrongly."""
    batches = _unequal_batches()
    result = evaluate(nn.Identity(), batches, CPU)
    logits = torch.cat([logits for logits, _ in batches])
    labels = torch.cat([labels for _, labels in batches])
    assert result.loss == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-6)


def test_the_accuracy_counts_every_sample_of_batches_of_unequal_size() -> None:
    """4 of 5 right is 80 %: counted as batches × the first batch's size, 5 samples read 6."""
    result = evaluate(nn.Identity(), _unequal_batches(), CPU)
    assert result.count == 5
    assert result.accuracy == pytest.approx(80.0)
    assert result.predictions.tolist() == [0, 1, 2, 0, 0]


def test_agreement_is_the_exact_share_not_a_float32_mean() -> None:
    """33 of 200 agree: 16.5 %, as report.json shows it (a float32 mean read 16.500000655…)."""
    first = torch.zeros(200, dtype=torch.long)
    second = torch.ones(200, dtype=torch.long)
    second[:33] = 0
    assert agreement(first, second) == 16.5


class _NaNInEvalMode(nn.Module):
    """Finite logits in training, NaN in eval mode: a batch norm whose running statistics
    overflowed while the batches' own did not."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(64, 10)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.head(images.flatten(1))
        return logits if self.training else logits * float("nan")


def test_scores_made_of_nan_logits_are_refused_not_reported_as_an_accuracy() -> None:
    """argmax over NaN logits picks class 0 for every image: the run reported "10 %" and
    completed, and the export and the gate went on from there."""
    model = _NaNInEvalMode().eval()
    images, labels = torch.rand(20, 1, 8, 8), torch.arange(20) % 10
    evaluation = evaluate(model, [(images[:12], labels[:12]), (images[12:], labels[12:])], CPU)
    assert (evaluation.nonfinite, evaluation.count) == (20, 20)
    with pytest.raises(UserError) as refused:
        check_finite_logits(evaluation, "student", "after epoch 3", "lower the lr")
    assert str(refused.value) == (
        "the student's logits are NaN or infinite on 20 of the 20 test images after epoch 3; "
        "lower the lr"
    )
    check_finite_logits(evaluate(model.train(), [(images, labels)], CPU), "student", "", "")
