"""Evaluation is fp32 whatever the training precision, so reported accuracies match what the
exported fp32 model scores."""

from __future__ import annotations

import pytest
import torch

from compressor.engine.device import DeviceSetup, full_fp32
from compressor.engine.evaluate import evaluate
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


needs_precision_api = pytest.mark.skipif(
    not hasattr(torch.backends.cudnn, "conv"),
    reason="torch < 2.9 has no per-backend fp32_precision",
)
PRECISION_SWITCHES = (
    (torch.backends.cuda.matmul, torch.backends.cudnn.conv, torch.backends.cudnn.rnn)
    if hasattr(torch.backends.cudnn, "conv")
    else ()
)


def _precisions() -> list[str]:
    return [switch.fp32_precision for switch in PRECISION_SWITCHES]


@needs_precision_api
def test_full_fp32_switches_tf32_off_and_restores_it() -> None:
    saved = _precisions()
    try:
        # The new API sets cuDNN's convolutions and RNNs apart, a state in which torch
        # refuses to read the legacy `torch.backends.cudnn.allow_tf32` at all.
        torch.backends.cuda.matmul.fp32_precision = "tf32"
        torch.backends.cudnn.conv.fp32_precision = "tf32"
        torch.backends.cudnn.rnn.fp32_precision = "ieee"
        with pytest.raises(RuntimeError, match="inside"), full_fp32():
            assert _precisions() == ["ieee", "ieee", "ieee"]
            raise RuntimeError("inside")
        assert _precisions() == ["tf32", "tf32", "ieee"]
    finally:
        for switch, value in zip(PRECISION_SWITCHES, saved, strict=True):
            switch.fp32_precision = value


@needs_precision_api
def test_full_fp32_leaves_torch_defaults_as_they_were() -> None:
    """A process that set nothing keeps torch's own defaults (`none` defers to the global
    `torch.backends.fp32_precision`), not explicit values that would override it later."""
    saved = _precisions()
    defaults = ["none", "tf32", "tf32"]  # torch's, for matmul, cuDNN conv and cuDNN RNN
    try:
        for switch, value in zip(PRECISION_SWITCHES, defaults, strict=True):
            switch.fp32_precision = value
        with full_fp32():
            pass
        assert _precisions() == defaults
    finally:
        for switch, value in zip(PRECISION_SWITCHES, saved, strict=True):
            switch.fp32_precision = value
