"""The recipe's JSON Schema, as editors read it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from compressor.errors import UserError
from compressor.recipe import Recipe, parse_recipe, recipe_schema
from tests.recipe.helpers import merged

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def test_schema_is_json_schema_with_every_section() -> None:
    schema = recipe_schema()
    assert set(schema["properties"]) == set(Recipe.model_fields)
    assert schema["additionalProperties"] is False
    json.dumps(schema)


def test_schema_shows_list_and_mapping_defaults() -> None:
    """pydantic leaves factory-made defaults out of the schema; an editor should show them."""
    definitions = recipe_schema()["$defs"]
    assert definitions["ExportConfig"]["properties"]["batch_sizes"]["default"] == [1, 64]
    assert definitions["ScheduleConfig"]["properties"]["milestones"]["default"] == []
    assert definitions["StudentConfig"]["properties"]["kwargs"]["default"] == {}
    assert "default" not in recipe_schema()["properties"]["train"]  # a section: per field
    # ...except which method a recipe without `method:` trains.
    assert recipe_schema()["properties"]["method"]["default"] == {"name": "ce"}
    assert parse_recipe({"student": {"arch": "resnet8"}}, source="t").method.name == "ce"


def test_schema_bounds_mean_and_std_to_the_0_to_1_scale() -> None:
    """An editor flags statistics on the 0–255 scale as the recipe check does."""
    data = recipe_schema()["$defs"]["DataConfig"]["properties"]
    arrays = {
        name: next(o for o in data[name]["anyOf"] if o["type"] == "array")["items"]
        for name in ("mean", "std")
    }
    assert arrays["mean"] == {"type": "number", "minimum": 0.0, "maximum": 1.0}
    assert arrays["std"] == {"type": "number", "minimum": 1e-6, "maximum": 1.0}


def _schema_errors(recipe: dict) -> list[str]:
    validator = jsonschema.Draft202012Validator(recipe_schema())
    return [error.message for error in validator.iter_errors(recipe)]


def test_the_ready_recipes_pass_the_schema() -> None:
    for path in sorted(RECIPES.glob("*.yaml")):
        assert _schema_errors(yaml.safe_load(path.read_text())) == [], path.name


@pytest.mark.parametrize(
    "sections",
    [
        {"train": {"epochs": "3"}},  # pydantic alone converts these
        {"data": {"name": "digits", "flip": "yes"}},
        {"train": {"optimizer": {"lr": "0.1"}}},
        {"method": {"kd_weight": 0.9}},  # no name: only KD has kd_weight, but name it
        {"teacher": {"arch": "resnet8", "checkpoint": "t.pt", "trust_pickle": 1}},
        {"train": {"epochs": 4, "schedule": {"name": "multistep", "milestones": ["2"]}}},
        {"train": {"epochs": 4, "schedule": {"name": "multistep", "milestones": [0, 2]}}},
        {"export": {"batch_sizes": [1, 1]}},
        {"data": {"name": "digits", "mean": [], "std": []}},
        {"data": {"name": "digits", "mean": [0.5], "std": [1e-7]}},
        {"output": {"name": ".."}},
        {"output": {"name": "a" * 247}},
    ],
    ids=[
        "quoted epochs",
        "quoted flag",
        "quoted lr",
        "method without name",
        "a number for a flag",
        "a quoted item",
        "milestone 0",
        "a batch size twice",
        "no statistics",
        "std too small",
        "a run named after the runs folder's parent",
        "a run name too long for --overwrite",
    ],
)
def test_what_the_schema_refuses_recipe_validate_refuses(sections: dict) -> None:
    """An editor checking against the schema and `recipe validate` agree."""
    recipe = merged(**sections)
    assert _schema_errors(recipe) != []
    with pytest.raises(UserError):
        parse_recipe(recipe, source="r")


@pytest.mark.parametrize("name", ["résumé-ü", "run_1.v2", "Übung"])
def test_a_run_name_the_cli_takes_passes_the_schema_as_an_editor_matches_it(name: str) -> None:
    """Editors match patterns as JavaScript does, \\w ASCII alone (re.ASCII here): a schema
    pattern of ^[\\w.-]+$ flagged "résumé", which the CLI takes (Python's \\w is Unicode)."""
    parse_recipe(merged(output={"name": name}), source="r")
    pattern = recipe_schema()["$defs"]["OutputConfig"]["properties"]["name"]["anyOf"][0]
    assert re.search(pattern["pattern"], name, re.ASCII)
    assert not re.search(pattern["pattern"], "a b", re.ASCII)  # still no space, no slash
    assert not re.search(pattern["pattern"], "a/b", re.ASCII)
