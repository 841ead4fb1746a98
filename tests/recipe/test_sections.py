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
    for data in ({"name": "digits", "root": "/d"}, {"name": "tiny_imagenet", "download": True}):
        with pytest.raises(UserError):
            parse_recipe(merged(data=data))
        parse_recipe(merged(data=data), started=True)
    past_the_end = {"epochs": 5, "schedule": {"name": "multistep", "milestones": [6]}}
    with pytest.raises(UserError, match=r"milestones must be <= epochs \(5\)"):
        parse_recipe(merged(train=past_the_end), started=True)
    warm = {"epochs": 3, "schedule": {"warmup_epochs": 3}}
    with pytest.raises(UserError, match="warmup_epochs must be smaller than epochs"):
        parse_recipe(merged(train=warm), started=True)
