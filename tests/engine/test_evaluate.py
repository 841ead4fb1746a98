"""Evaluation is fp32 whatever the training precision, so reported accuracies match what the
exported fp32 model scores."""

from __future__ import annotations

import pytest
import torch

from compressor.engine import device
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
    not hasattr(torch.backends.mkldnn, "matmul"),
    reason="torch < 2.9 has no per-backend fp32_precision",
)


def _leaves() -> list:
    backends = torch.backends
    return [
        backends.cuda.matmul,
        backends.cudnn.conv,
        backends.cudnn.rnn,
        backends.mkldnn.matmul,
        backends.mkldnn.conv,
        backends.mkldnn.rnn,
    ]


def _precisions() -> list[str]:
    return [leaf.fp32_precision for leaf in _leaves()]


# A fresh process's settings: cuDNN's conv and RNN explicitly tf32, everything else deferring
# to its parent ("none") up to the global switch, which is "none" too.
DEFAULTS = ["none", "tf32", "tf32", "none", "none", "none"]


@pytest.fixture
def torch_defaults():
    """Each test starts from and leaves behind a fresh process's precision settings."""

    def reset() -> None:
        torch.set_float32_matmul_precision("highest")
        for parent in (torch.backends, torch.backends.cudnn, torch.backends.mkldnn):
            parent.fp32_precision = "none"
        for leaf, value in zip(_leaves(), DEFAULTS, strict=True):
            leaf.fp32_precision = value

    reset()
    assert _precisions() == DEFAULTS
    yield
    reset()


@needs_precision_api
@pytest.mark.usefixtures("torch_defaults")
def test_full_fp32_switches_tf32_and_bf16_off_and_restores_them() -> None:
    # The new API sets cuDNN's convolutions and RNNs apart, a state in which torch refuses to
    # read the legacy `torch.backends.cudnn.allow_tf32` at all; "medium" lets oneDNN run fp32
    # matmuls in bf16 on the CPU.
    torch.set_float32_matmul_precision("medium")
    torch.backends.cudnn.rnn.fp32_precision = "ieee"
    before = _precisions()
    assert before == ["tf32", "tf32", "ieee", "bf16", "none", "none"]
    with pytest.raises(RuntimeError, match="inside"), full_fp32():
        assert _precisions() == ["ieee"] * 6
        raise RuntimeError("inside")
    assert _precisions() == before


@needs_precision_api
@pytest.mark.usefixtures("torch_defaults")
def test_full_fp32_leaves_inherited_settings_inherited() -> None:
    """A switch that deferred to its parent still does afterwards, so a later change of the
    parent reaches it (torch's getters report the parent's value, not "none")."""
    for leaf in (torch.backends.cudnn.conv, torch.backends.cudnn.rnn):
        leaf.fp32_precision = "none"
    torch.backends.cudnn.fp32_precision = "tf32"
    with full_fp32():
        assert torch.backends.cudnn.conv.fp32_precision == "ieee"
    assert torch.backends.cudnn.conv.fp32_precision == "tf32"
    torch.backends.cudnn.fp32_precision = "ieee"
    assert torch.backends.cudnn.conv.fp32_precision == "ieee"
    assert torch.backends.cudnn.rnn.fp32_precision == "ieee"


@pytest.mark.usefixtures("torch_defaults")
def test_full_fp32_through_the_legacy_switches(monkeypatch: pytest.MonkeyPatch) -> None:
    """What torch < 2.9 runs: the legacy `allow_tf32` flags, which torch 2.9+ still honours."""
    monkeypatch.setattr(device, "_precision_api_switches", lambda: None)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    with full_fp32():
        assert not torch.backends.cuda.matmul.allow_tf32
        assert not torch.backends.cudnn.allow_tf32
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
