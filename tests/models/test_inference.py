"""Folding batch norm into the teacher's convolutions keeps its function."""

from __future__ import annotations

import pytest
import torch
from torch import fx, nn

from compressor.models import create_model
from compressor.models.inference import fold_batchnorm


def test_folded_teacher_computes_the_same_logits_and_input_gradients() -> None:
    torch.manual_seed(0)
    teacher = create_model("resnet20", 10, 3).eval()
    for module in teacher.modules():  # non-trivial statistics, as a trained teacher has
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    folded = fold_batchnorm(teacher)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in teacher.modules())  # a copy was folded
    x = torch.randn(4, 3, 32, 32, requires_grad=True)
    torch.testing.assert_close(folded(x), teacher(x), rtol=1e-4, atol=1e-4)
    # Still the zoo class: AMKD's feature embedding calls these on the teacher.
    assert type(folded) is type(teacher)
    torch.testing.assert_close(
        folded.forward_features(x), teacher.forward_features(x), rtol=1e-4, atol=1e-4
    )
    (grad_folded,) = torch.autograd.grad(folded(x).sum(), x)
    (grad_plain,) = torch.autograd.grad(teacher(x).sum(), x)
    torch.testing.assert_close(grad_folded, grad_plain, rtol=1e-4, atol=1e-4)


# torch.jit.script is deprecated (FutureWarning in torch 2.14, DeprecationWarning in 2.11).
@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")
def test_untraceable_models_run_unfolded() -> None:
    scripted = torch.jit.script(create_model("resnet8", 10, 3).eval())
    assert fold_batchnorm(scripted) is scripted


class _ConvNorm(nn.Module):
    """A conv and a batch norm, for forwards that use them in ways a fold must respect."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.norm = nn.BatchNorm2d(4)


def test_a_conv_output_read_twice_is_not_folded() -> None:
    """Folding BN into a conv whose raw output is also used elsewhere would change that use."""

    class Branchy(_ConvNorm):
        def forward(self, x):
            y = self.conv(x)
            return self.norm(y) + y

    model = Branchy().eval()
    model.norm.running_mean.uniform_(-0.5, 0.5)
    folded = fold_batchnorm(model)
    assert isinstance(folded.norm, nn.BatchNorm2d)
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(folded(x), model(x))


def _with_statistics(model: nn.Module) -> nn.Module:
    """Batch norms with the non-trivial statistics of a trained model, so a fold shows."""
    torch.manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-1.0, 1.0)
            module.running_var.uniform_(0.05, 0.2)
            module.weight.data.uniform_(0.5, 3.0)
    return model.eval()


class _TiedWeights(nn.Module):
    """Reads its conv's weight outside the conv: folding the BN into it would change that."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(4)

    def forward(self, x):
        tied = nn.functional.conv2d(x, self.conv.weight, padding=1)
        return self.norm(self.conv(x)) - tied


def test_a_conv_whose_weight_the_forward_also_reads_is_not_folded() -> None:
    model = _with_statistics(_TiedWeights())
    folded = fold_batchnorm(model)
    assert isinstance(folded.norm, nn.BatchNorm2d)
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(folded(x), model(x))


class _TracedOtherwise(_ConvNorm):
    """A forward that runs another path under the trace (norm of the conv alone) than for
    real (the conv's raw output read too): only running both shows the fold is wrong."""

    def forward(self, x):
        y = self.conv(x)
        return self.norm(y) if isinstance(x, fx.Proxy) else self.norm(y) + y


def test_a_fold_that_changes_the_logits_on_the_probe_is_dropped() -> None:
    model = _with_statistics(_TracedOtherwise())
    assert isinstance(fold_batchnorm(model).norm, nn.Identity)  # the trace alone folds it
    assert fold_batchnorm(model, torch.randn(2, 3, 8, 8)) is model


def test_batch_norm_left_training_by_eval_is_not_folded() -> None:
    """A model whose eval() keeps its batch norms training has no fixed statistics to fold
    (torch's fuse asserted, and the run crashed)."""

    class TrainsInEval(nn.Sequential):
        def train(self, mode: bool = True):
            return super().train(True)

    model = TrainsInEval(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    folded = fold_batchnorm(model)
    assert isinstance(folded[1], nn.BatchNorm2d)
