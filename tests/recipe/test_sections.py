"""Section checks that depend on whether the run has started."""

from __future__ import annotations

import pytest

from compressor.errors import UserError
from compressor.recipe import parse_recipe
from tests.recipe.helpers import merged


def test_a_started_runs_recipe_is_read_as_the_compressor_that_started_it_wrote_it() -> None:
    """Settings that would be ignored are refused for new runs only: a run an older version
    started with them must still resume, export and gate. What it refused stays refused."""
    for train in (
        {"epochs": 5, "schedule": {"name": "multistep", "milestones": [5]}},
        {"epochs": 1, "schedule": {"warmup_epochs": 1}},
        {"optimizer": {"name": "adamw", "momentum": 0.5}},
        {"optimizer": {"momentum": 0, "nesterov": True}},
        {"schedule": {"name": "cosine", "gamma": 0.5}},
        {"schedule": {"name": "multistep"}},
    ):
        with pytest.raises(UserError):
            parse_recipe(merged(train=train))
        parse_recipe(merged(train=train), started=True)
    for data in (
        {"name": "digits", "root": "/d"},
        {"name": "tiny_imagenet", "download": True},
        {"mean": [125.3, 123.0, 113.9], "std": [63.0, 62.1, 66.7]},
    ):
        with pytest.raises(UserError):
            parse_recipe(merged(data=data))
        parse_recipe(merged(data=data), started=True)
    past_the_end = {"epochs": 5, "schedule": {"name": "multistep", "milestones": [6]}}
    with pytest.raises(UserError, match=r"milestones must be <= epochs \(5\)"):
        parse_recipe(merged(train=past_the_end), started=True)
    warm = {"epochs": 3, "schedule": {"warmup_epochs": 3}}
    with pytest.raises(UserError, match="warmup_epochs must be smaller than epochs"):
        parse_recipe(merged(train=warm), started=True)


@pytest.mark.parametrize(
    ("stats", "expected"),
    [
        ({"mean": [0.5, 0.5, 255], "std": [0.2] * 3}, "data.mean: 255 is on the 0–255 scale"),
        ({"mean": [0.5] * 3, "std": [0.2, 1.5, 0.2]}, "data.std: 1.5 is on the 0–255 scale"),
        ({"mean": [300.0], "std": [0.2]}, "data.mean: 300 is outside [0, 1]; pixels are"),
        ({"mean": [-0.1], "std": [0.2]}, "data.mean: -0.1 is outside [0, 1]; pixels are"),
        ({"mean": [0.5], "std": [0.0]}, "data: std values must be > 0"),
    ],
)
def test_mean_and_std_are_on_the_scale_of_the_pixels_they_normalise(
    stats: dict, expected: str
) -> None:
    """Pixels are scaled to 0–1 before `(x - mean) / std`: statistics outside [0, 1] are
    another scale's (most often 0–255), and the schema says how to convert them."""
    with pytest.raises(UserError) as caught:
        parse_recipe(merged(data=stats), source="r.yaml")
    assert str(caught.value).startswith(f"r.yaml: {expected}"), str(caught.value)


def test_mean_and_std_at_the_ends_of_the_scale_are_accepted() -> None:
    data = parse_recipe(merged(data={"mean": [0.0, 1.0], "std": [1.0, 0.001]})).data
    assert (data.mean, data.std) == ((0.0, 1.0), (1.0, 0.001))
