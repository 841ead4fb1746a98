"""Evaluation is fp32 whatever the training precision, so reported accuracies match what the
exported fp32 model scores."""

from __future__ import annotations

import torch

from compressor.engine.device import DeviceSetup
from compressor.engine.evaluate import agreement, evaluate
from compressor.models.registry import create_model


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


def test_agreement_is_the_exact_share_not_a_float32_mean() -> None:
    """33 of 200 agree: 16.5 %, as report.json shows it (a float32 mean read 16.500000655…)."""
    first = torch.zeros(200, dtype=torch.long)
    second = torch.ones(200, dtype=torch.long)
    second[:33] = 0
    assert agreement(first, second) == 16.5
