"""The name registry: the zoo's names, torchvision by name, and user errors that name the arch
and argument."""

from __future__ import annotations

import pytest
import torch

from compressor.errors import UserError
from compressor.models import create_model, is_known_model, list_models

ZOO = list_models()


def test_zoo_names() -> None:
    expected = {f"resnet{d}" for d in (8, 14, 20, 26, 32, 44, 56, 110)}
    expected |= {"mobilenetv2", "wrn16_2", "wrn40_2", "wrn16_4", "wrn28_10"}
    assert expected <= set(ZOO)
    assert sorted(ZOO) == ZOO


def test_bad_constructor_value_is_a_user_error() -> None:
    with pytest.raises(UserError, match="'mobilenetv2': width_mult must be > 0"):
        create_model("mobilenetv2", 10, width_mult=0)


def test_a_kwarg_of_the_wrong_type_is_a_user_error() -> None:
    with pytest.raises(UserError, match=r"'mobilenetv2' rejected its kwargs .*'abc'.*types"):
        create_model("mobilenetv2", 10, width_mult="abc")
    with pytest.raises(UserError, match=r"'wrn16_2' rejected its kwargs"):
        create_model("wrn16_2", 10, dropout="abc")


def test_torchvision_pretrained_weights_are_refused_in_words() -> None:
    """`weights: DEFAULT` met torchvision's "multiple values for keyword argument"."""
    with pytest.raises(UserError) as refused:
        create_model("resnet18", 10, weights="DEFAULT")
    assert str(refused.value) == (
        "model 'resnet18': kwargs may not set weights: nothing is downloaded; a student "
        "starts from random weights, a teacher's come from teacher.checkpoint"
    )


@pytest.mark.parametrize(
    ("name", "kwargs", "reason"),
    [
        ("mobilenetv2", {"width_mult": float("inf")}, "OverflowError"),
        ("mobilenet_v3_small", {"dropout": 20}, "ValueError: dropout probability"),
        ("vit_b_16", {"image_size": 33}, "AssertionError"),
    ],
    ids=["zoo overflow", "torchvision ValueError", "torchvision assert"],
)
def test_a_kwarg_value_the_constructor_refuses_is_a_user_error(
    name: str, kwargs: dict, reason: str
) -> None:
    with pytest.raises(UserError, match=rf"'{name}'.* rejected its kwargs .*\({reason}"):
        create_model(name, 10, **kwargs)


def test_bad_kwargs_name_the_arch_and_argument() -> None:
    with pytest.raises(UserError) as error:
        create_model("resnet20", 10, widht=2)
    message = str(error.value)
    assert "'resnet20'" in message and "widht" in message and "no extra arguments" in message
    with pytest.raises(UserError, match=r"'wrn16_2'.*'dropuot'.*accepts: dropout"):
        create_model("wrn16_2", 10, dropuot=0.3)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small"])
def test_torchvision_by_name(name: str) -> None:
    assert is_known_model(name) and name not in ZOO
    model = create_model(name, num_classes=5).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)


def test_torchvision_kwargs_and_channels() -> None:
    model = create_model("mobilenet_v3_small", num_classes=5, dropout=0.0)
    assert model.classifier[2].p == 0.0
    with pytest.raises(UserError, match=r"torchvision models take 3-channel images.*resnet8"):
        create_model("resnet18", num_classes=10, in_channels=1)
    with pytest.raises(UserError, match=r"'resnet18' \(torchvision\).*width"):
        create_model("resnet18", num_classes=10, width=3)


def test_unknown_name() -> None:
    assert not is_known_model("resnet21") and not is_known_model("fasterrcnn_resnet50_fpn")
    with pytest.raises(UserError) as error:
        create_model("resnet21", num_classes=10)
    message = str(error.value)
    assert "unknown model 'resnet21'" in message
    assert "did you mean" in message and "resnet20" in message
    assert "resnet56" in message and "mobilenetv2" in message and "wrn16_2" in message
    assert "or any torchvision classification model (e.g. resnet18, mobilenet_v3_small)" in message


def test_rejected_kwargs_are_shown_bounded_however_large() -> None:
    """YAML anchors make a value of millions of items out of a few lines; its full repr in
    the error line ran to megabytes, and took minutes."""
    level = [0] * 10
    for _ in range(7):  # 10**7 items, shared, as anchors share them
        level = [level] * 10
    with pytest.raises(UserError) as caught:
        create_model("mobilenet_v3_small", 10, dropout=20, extra=level)
    assert len(str(caught.value)) < 1000
    assert "'dropout': 20" in str(caught.value)
