"""Model size and cost: parameters and FLOPs, with the model's state left as it was."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from compressor.models import count_flops, count_parameters, create_model


def conv_net() -> nn.Module:
    """1×4×4 in: a 3×3 conv to 2×2×2 (72 MACs), batch norm and ReLU, a linear to 3 (24 MACs)."""
    return nn.Sequential(
        nn.Conv2d(1, 2, 3, bias=False),
        nn.BatchNorm2d(2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8, 3),
    )


def test_flops_resnet20_and_model_state_kept() -> None:
    model = create_model("resnet20", num_classes=10).train()
    model.layer1.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flops = count_flops(model, (3, 32, 32))
    # 40.55 M multiply-accumulates in convolutions and the classifier.
    assert flops == pytest.approx(81.1e6, rel=0.005)
    assert model.training and not model.layer1.training and model.layer2.training
    assert all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_flops_grow_with_width() -> None:
    small = count_flops(create_model("mobilenetv2", 10, width_mult=0.5), (3, 32, 32))
    full = count_flops(create_model("mobilenetv2", 10), (3, 32, 32))
    assert 0 < small < full


def test_frozen_parameters_count_too() -> None:
    model = conv_net()
    model[0].requires_grad_(False)  # a frozen teacher's weights still take memory
    assert count_parameters(model) == 18 + 4 + 27


def test_flops_are_twice_the_macs_of_convolutions_and_matrix_products() -> None:
    """Batch norm and ReLU are element-wise work, which the papers' tables leave out."""
    assert count_flops(conv_net(), (1, 4, 4)) == 2 * (72 + 24)


def test_flops_of_a_torch_export_module() -> None:
    """Such modules refuse eval()/train(); their FLOPs are counted all the same."""
    model = conv_net().eval()
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(model, (torch.zeros(2, 1, 4, 4),), dynamic_shapes=({0: batch},))
    assert count_flops(program.module(), (1, 4, 4)) == 2 * (72 + 24)
