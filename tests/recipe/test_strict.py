"""What every section refuses: unknown keys (in test_messages) and true/false for a number."""

from __future__ import annotations

import pytest

from compressor.errors import UserError
from compressor.recipe import parse_recipe
from tests.recipe.helpers import merged


def test_true_or_false_where_a_number_belongs_is_refused() -> None:
    """pydantic alone would read `epochs: true` as 1 and `lr: false` as 0.0."""
    with pytest.raises(UserError) as refused:
        parse_recipe(merged(train={"epochs": True, "optimizer": {"lr": False}}), source="r")
    assert refused.value.lines == [
        "r: train.epochs: Input should be a valid integer (got true)",
        "r: train.optimizer.lr: Input should be a valid number (got false)",
    ]


def test_true_or_false_is_kept_where_a_flag_belongs() -> None:
    train = {"epochs": 2, "deterministic": True, "channels_last": False, "compile": True}
    recipe = parse_recipe(merged(train=train))
    assert (recipe.train.deterministic, recipe.train.channels_last, recipe.train.compile) == (
        True,
        False,
        True,
    )


def test_a_quoted_number_or_flag_is_refused_with_the_fix() -> None:
    """pydantic alone would read `epochs: '3'` as 3 and `flip: 'no'` as false; the schema
    editors check against calls both text."""
    recipe = merged(train={"epochs": "3"}, data={"name": "digits", "flip": "no"})
    with pytest.raises(UserError) as refused:
        parse_recipe(recipe, source="r")
    quoted = "in quotes: YAML reads a quoted value as text; remove the quotes"
    assert refused.value.lines == [
        f"r: data.flip: Input should be a valid boolean (got 'no', {quoted})",
        f"r: train.epochs: Input should be a valid integer (got '3', {quoted})",
    ]
    # Text that is no number has no quotes to remove: pydantic's own message.
    with pytest.raises(UserError) as wrong:
        parse_recipe(merged(train={"epochs": "ten"}), source="r")
    assert "remove the quotes" not in wrong.value.lines[0]


def test_a_number_where_only_true_or_false_belongs_is_refused() -> None:
    """pydantic alone reads `trust_pickle: 1` as true: it must not switch on pickle loading."""
    recipe = merged(
        teacher={"arch": "resnet20", "checkpoint": "t.pt", "trust_pickle": 1},
        train={"epochs": 2, "deterministic": 0.0},
    )
    with pytest.raises(UserError) as refused:
        parse_recipe(recipe, source="r")
    assert refused.value.lines == [
        "r: teacher.trust_pickle: Input should be a valid boolean (got 1; write true or false)",
        "r: train.deterministic: Input should be a valid boolean (got 0.0; write true or false)",
    ]


def test_list_items_are_held_to_their_type_too() -> None:
    schedule = {"name": "multistep", "milestones": ["2", True]}
    recipe = merged(train={"epochs": 4, "schedule": schedule}, export={"batch_sizes": [1, "64"]})
    with pytest.raises(UserError) as refused:
        parse_recipe(recipe, source="r")
    quoted = "in quotes: YAML reads a quoted value as text; remove the quotes"
    assert refused.value.lines == [
        f"r: train.schedule.milestones[0]: Input should be a valid integer (got '2', {quoted})",
        "r: train.schedule.milestones[1]: Input should be a valid integer (got true)",
        f"r: export.batch_sizes[1]: Input should be a valid integer (got '64', {quoted})",
    ]
