"""The recipe's JSON Schema, as editors read it."""

from __future__ import annotations

import json

from compressor.recipe import Recipe, parse_recipe, recipe_schema


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
    assert arrays["std"] == {"type": "number", "exclusiveMinimum": 0.0, "maximum": 1.0}
