"""The zoo's architectures: shapes, the feature/head split, published sizes, scripting and
export (the registry's own tests are in test_registry.py, FLOPs in test_stats.py)."""

from __future__ import annotations

import pickle
import warnings

import pytest
import torch
from torch import nn

from compressor.models import (
    count_flops,
    count_parameters,
    create_model,
    list_models,
)
from compressor.models.cifar_resnet import cifar_resnet
from compressor.models.wide_resnet import wide_resnet

ZOO = list_models()
BIG = {"wrn28_10", "wrn16_8", "wrn40_4"}  # forward at 32x32 costs seconds on 2 cores


@pytest.mark.parametrize("name", [n for n in ZOO if n not in BIG])
def test_forward_shape_and_feature_split(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=7).eval()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits = model(images)
        features = model.forward_features(images)
        assert torch.equal(logits, model.forward_head(features))
    assert logits.shape == (2, 7)
    assert features.shape == (2, model.num_features)


@pytest.mark.parametrize("name", ["resnet8", "resnet20", "wrn16_2", "mobilenetv2"])
def test_tiny_grayscale_digits(name: str) -> None:
    """The embedded digits data set is 1x8x8: every stride still leaves at least 1x1."""
    model = create_model(name, num_classes=10, in_channels=1).eval()
    with torch.no_grad():
        assert model(torch.randn(3, 1, 8, 8)).shape == (3, 10)
    assert count_flops(model, (1, 8, 8)) > 0


@pytest.mark.parametrize(
    ("name", "published", "tolerance"),
    [
        ("resnet20", 0.27e6, 0.005e6),
        ("resnet56", 0.85e6, 0.005e6),
        ("resnet110", 1.7e6, 0.03e6),
        ("wrn16_2", 0.69e6, 0.005e6),
        ("wrn40_2", 2.2e6, 0.05e6),
        ("wrn28_10", 36.5e6, 0.05e6),
        ("mobilenetv2", 2.25e6, 0.05e6),
    ],
)
def test_parameter_counts_match_the_papers(name: str, published: float, tolerance: float) -> None:
    with torch.device("meta"):  # sizes only: no memory, no initialisation
        model = create_model(name, num_classes=10)
    assert count_parameters(model) == pytest.approx(published, abs=tolerance)


def test_generic_constructors() -> None:
    assert len(cifar_resnet(10, depth=38).layer1) == 6
    assert count_parameters(wide_resnet(10, depth=22, widen_factor=8)) > 10e6
    with pytest.raises(ValueError, match=r"6n\+2"):
        cifar_resnet(10, depth=21)
    with pytest.raises(ValueError, match=r"6n\+4"):
        wide_resnet(10, depth=20)


def test_dropout_kwargs() -> None:
    wrn = create_model("wrn16_2", 10, dropout=0.3)
    assert any(isinstance(m, nn.Dropout) and m.p == 0.3 for m in wrn.modules())
    mobile = create_model("mobilenetv2", 10, dropout=0.2)
    assert mobile.classifier[0].p == 0.2


@pytest.mark.parametrize("name", ["resnet20", "mobilenetv2", "wrn16_2"])
def test_models_pickle_script_and_export(name: str) -> None:
    """No lambdas: models survive pickling, TorchScript and torch.export unchanged."""
    model = create_model(name, num_classes=10).eval()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(images)
        assert torch.equal(pickle.loads(pickle.dumps(model))(images), expected)
        with warnings.catch_warnings():  # TorchScript is deprecated (torch 2.9+ warns)
            warnings.simplefilter("ignore", FutureWarning)
            scripted = torch.jit.script(model)
        torch.testing.assert_close(scripted(images), expected)
        batch = torch.export.Dim("batch")
        exported = torch.export.export(model, (images,), dynamic_shapes=({0: batch},))
        doubled = torch.cat([images, images])
        torch.testing.assert_close(exported.module()(doubled), torch.cat([expected, expected]))
