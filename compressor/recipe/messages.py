"""pydantic's ValidationError as one line per problem: file, field path, what is wrong and
what is allowed, in the recipe's terms rather than pydantic's."""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import BaseModel, ValidationError

from compressor.recipe.methods import METHOD_MODELS, METHOD_NAMES
from compressor.recipe.sections import PATTERN_HELP, Recipe


def _field_path(loc: tuple[int | str, ...]) -> str:
    parts = list(loc)
    # A discriminated union inserts the tag ("method", "amkd", ...): the user never wrote it.
    if len(parts) >= 2 and parts[0] == "method" and parts[1] in METHOD_NAMES:
        del parts[1]
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _allowed_keys(loc: tuple[int | str, ...]) -> list[str]:
    """Walk the recipe models along `loc` to list the keys the user could have meant."""
    model: Any = Recipe
    parts = list(loc[:-1])
    while parts:
        part = parts.pop(0)
        if model is Recipe and part == "method" and parts:
            model = METHOD_MODELS.get(str(parts.pop(0)))
            continue
        field = model.model_fields.get(str(part)) if _is_model(model) else None
        if field is None:
            return []
        model = _model_in(field.annotation)
    return sorted(model.model_fields) if _is_model(model) else []


def _is_model(candidate: Any) -> bool:
    return isinstance(candidate, type) and issubclass(candidate, BaseModel)


def _model_in(annotation: Any) -> Any:
    if _is_model(annotation):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _describe(error: Any) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(error["loc"])
        hint = f"; allowed keys: {', '.join(allowed)}" if allowed else ""
        return f"unknown key{hint}"
    if kind == "missing":
        return "required, but missing"
    if kind == "int_parsing_size":  # pydantic's words: "Unable to parse input string as ..."
        return f"too large a whole number (got {_shown(error['input'])})"
    if kind in ("model_type", "model_attributes_type"):  # not pydantic's class names
        return f"expected a section of keys, not {yaml_kind(error['input'])}"
    if kind == "invalid_key":  # YAML reads `~:`, `1:` or `true:` as a null, a number...
        key = error["input"]
        what = "a key that is empty (null)" if key is None else f"key {key!r} is {yaml_kind(key)}"
        return f"{what}, not a name; quote it if it is meant as text"
    if kind == "union_tag_invalid":
        return f"unknown method {error['input'].get('name')!r}; allowed: {', '.join(METHOD_NAMES)}"
    if kind == "union_tag_not_found":
        return f"needs a 'name' key; allowed: {', '.join(METHOD_NAMES)}"
    if kind == "string_pattern_mismatch":
        expected = PATTERN_HELP.get(error["ctx"]["pattern"], error["msg"])
        return f"{expected} (got {_shown(error['input'])})"
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind == "tuple_type":  # YAML has lists; a fixed-length field is a tuple to pydantic
        message = "Input should be a list"
    if kind == "string_type" and isinstance(error.get("input"), int | float | date):
        # YAML reads an unquoted 2024, 1e3 or 2024-01-01 as a number or a date where a name
        # is wanted.
        return f"{message} (got {error['input']}; quote it: '{error['input']}')"
    if "input" in error and not isinstance(error["input"], dict):
        return f"{message} (got {_shown(error['input'])})"
    return message


def _shown(value: object, limit: int = 80) -> str:
    """The value as given, cut short: a 300-character path must not drown the line."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def format_validation_error(source: str, error: ValidationError) -> list[str]:
    """One line per problem: file, field path, what is wrong and what is allowed."""
    return [f"{source}: {_where(e)}: {_describe(e)}" for e in error.errors()]


def _where(error: Any) -> str:
    """The field path; for a key that is not a name (`~:` or `1:`), the section it is in,
    since pydantic puts the key itself last, where `1` read as a list index ([1])."""
    loc = error["loc"][:-1] if error["type"] == "invalid_key" else error["loc"]
    return _field_path(loc)


def yaml_kind(value: Any) -> str:
    """What a value is, in YAML's words rather than a Python type's: the user wrote YAML."""
    if value is None:
        return "empty (null)"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    return "a string" if isinstance(value, str) else f"a {type(value).__name__}"
