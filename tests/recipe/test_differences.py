"""What --resume names when a recipe changed: each setting, with both values."""

from __future__ import annotations

from compressor.recipe import parse_recipe, recipe_differences
from tests.recipe.helpers import merged


def test_differences_name_each_changed_setting_with_both_values() -> None:
    before = parse_recipe(merged(method={"name": "kd"}))
    after = parse_recipe(
        merged(
            method={"name": "amkd"},
            train={"epochs": 3, "batch_size": 64, "optimizer": {"weight_decay": 1e-4}},
        )
    )
    differences = recipe_differences(before, after)
    assert 'method.name: "kd" → "amkd"' in differences
    # A key only one method has shows as appearing, not as a crash or a silent skip.
    assert "method.gamma: (unset) → 8.0" in differences
    assert "train.epochs: 2 → 3" in differences
    assert "train.optimizer.weight_decay: 0.0005 → 0.0001" in differences
    assert recipe_differences(before, before) == []
    # Recipe order, so the first differences shown are the most prominent sections'.
    assert differences.index("train.epochs: 2 → 3") > differences.index(
        'method.name: "kd" → "amkd"'
    )
