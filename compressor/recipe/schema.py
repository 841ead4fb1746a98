"""The recipe's JSON Schema, for editors (yaml-language-server) and docs."""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue

from compressor.recipe.methods import CEMethod
from compressor.recipe.sections import Recipe


class _SchemaWithListDefaults(GenerateJsonSchema):
    """pydantic leaves out defaults made by a factory; a list or mapping default (export
    batch sizes, milestones, kwargs) is as much a default as a number, so editors show it too.
    Section defaults (whole models) stay out: each of their fields shows its own."""

    def default_schema(self, schema: Any) -> JsonSchemaValue:
        factory = schema.get("default_factory")
        if factory is not None and not schema.get("default_factory_takes_data"):
            value = factory()
            if isinstance(value, (list, dict)):
                schema = {key: item for key, item in schema.items() if key != "default_factory"}
                schema["default"] = value
        return super().default_schema(schema)


def recipe_schema() -> dict[str, Any]:
    """JSON Schema of the recipe, for editors (yaml-language-server) and docs."""
    generated = Recipe.model_json_schema(schema_generator=_SchemaWithListDefaults)
    # The draft pydantic writes, named, so a validator or editor need not guess it.
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **generated}
    schema["title"] = "compressor recipe"
    # Which method a recipe without `method:` trains is the one section default that is a
    # choice, not a set of field defaults: say it.
    method = schema["properties"]["method"]
    method["default"] = {"name": CEMethod().name}
    # Each method's `name` has its one value as default, so pydantic leaves it out of
    # `required`; but a method section is told apart by it (`recipe validate` refuses one
    # without), and an editor that does not read the discriminator needs it to pick one.
    for reference in method["discriminator"]["mapping"].values():
        definition = schema["$defs"][reference.removeprefix("#/$defs/")]
        definition["required"] = ["name", *definition.get("required", [])]
    return schema
