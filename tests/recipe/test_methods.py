"""The method section's defaults."""

from __future__ import annotations

from compressor.recipe import parse_recipe
from tests.recipe.helpers import merged


def test_method_defaults_follow_the_design() -> None:
    recipe = parse_recipe(merged(method={"name": "amkd"}, teacher={"arch": "resnet20"}))
    assert recipe.method.attack.step_size == 0.3
    assert recipe.method.attack.epsilon == 1e-4
    assert recipe.method.attack.max_steps == 10
    assert recipe.method.weights.beta_stop_fraction == 0.75
    assert recipe.method.bank_epochs == 1  # bank mode is opt-in
    banked = parse_recipe(merged(method={"name": "bss", "bank_epochs": 5}, teacher={"arch": "x"}))
    assert banked.method.bank_epochs == 5
    triplet = parse_recipe(merged(method={"name": "triplet"}, teacher={"arch": "resnet20"}))
    assert (triplet.method.margin, triplet.method.triplet_weight) == (5.0, 2.0)
