"""The base of every recipe section: a setting the user did not mean is an error, not a guess.

A section refuses unknown keys, so a typo is reported instead of silently ignored, and it
refuses a YAML true/false where a number or a word belongs.
"""

from __future__ import annotations

import math
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator, model_validator


def started(info: ValidationInfo) -> bool:
    """Is this the recipe of a run that has started (its recipe.yaml, or the recipe it is
    resumed with)? Checks for settings that would be ignored came after some runs were made;
    such a run must still resume, export and gate, so it is read as it was written."""
    return bool(info.context and info.context.get("started"))


class Strict(BaseModel):
    """A recipe section: unknown keys are errors, and defaults pass the same validators as
    the values a user writes (a default path is expanded like a written one)."""

    # allow_inf_nan: a NaN passes no comparison, so a bound (ge=0) refuses it, but a field
    # without one took it; and an infinite threshold or weight is a typo, never a setting.
    model_config = ConfigDict(extra="forbid", validate_default=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_value_of_another_yaml_type(cls, data: Any) -> Any:
        """pydantic converts what YAML read as another type than the field's: `epochs: true`
        to 1, `lr: false` to 0.0, `epochs: '3'` to 3 and `flip: 'no'` to false. The first two
        are slips (a flag's value in a number's place); the quoted ones are text to YAML and
        to the recipe's JSON Schema, so an editor flags what `recipe validate` passed. All are
        errors. (A model validator: a field validator may not touch a method's `name`, the
        union's discriminator.)"""
        if not isinstance(data, dict):
            return data
        slips: dict[str, Any] = {}
        for key, value in data.items():
            field = cls.model_fields.get(key)
            if field is None:
                continue
            if isinstance(value, bool) and not _admits_bool(field.annotation):
                slips[key] = _TrueOrFalse(value, _takes_words(field.annotation))
            elif (
                _reads_as_number_or_flag(value)
                and _takes_number_or_flag(field.annotation)
                and not _takes_words(field.annotation)
            ):
                slips[key] = _Quoted(value)
        # The field's own validation then refuses each, with its path and its type.
        return {**data, **slips} if slips else data

    @field_validator("*", mode="after")
    @classmethod
    def _within_float32(cls, value: Any) -> Any:
        """Training computes in float32: a larger setting (lr: 1e39) crashed the optimiser,
        and a temperature squared past float64 crashed the loss, instead of being refused."""
        if isinstance(value, float) and abs(value) > FLOAT32_MAX:
            raise ValueError(
                f"beyond float32's largest value ({FLOAT32_MAX:.4g}), the precision training "
                "computes in; use a smaller value"
            )
        return value


FLOAT32_MAX = 3.4028234663852886e38


class _TrueOrFalse:
    """A YAML true/false where a field wants no bool: no field type accepts it."""

    def __init__(self, value: bool, words: bool) -> None:
        self.value = value
        self.words = words  # the field takes words such as off: say how YAML read one

    def __repr__(self) -> str:
        text = str(self.value).lower()
        if self.words:
            text += "; YAML reads an unquoted on/off/yes/no as true/false: quote the word"
        return text


class _Quoted:
    """A quoted value where a number or true/false belongs: no such field type accepts it."""

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"{self.value!r}, in quotes: YAML reads a quoted value as text; remove the quotes"


# What pydantic's lax mode reads as true/false besides numbers.
_FLAG_WORDS = frozenset({"true", "false", "yes", "no", "on", "off", "t", "f", "y", "n"})


def _reads_as_number_or_flag(value: Any) -> bool:
    """Is it text pydantic would convert to a number or a flag (`'3'`, `'1e-3'`, `'yes'`)?
    Other text (`epochs: ten`) gets pydantic's own message: no quotes to remove there."""
    if not isinstance(value, str):
        return False
    text = value.strip()
    try:
        return math.isfinite(float(text))
    except ValueError:
        return text.lower() in _FLAG_WORDS


def _takes_number_or_flag(annotation: Any) -> bool:
    """Is the field (or a member of its union) a number or a flag, or a Literal of numbers?"""
    if annotation in (int, float, bool):
        return True
    if get_origin(annotation) is Literal:
        return any(isinstance(choice, int | float) for choice in get_args(annotation))
    return any(_takes_number_or_flag(argument) for argument in get_args(annotation))


def _takes_words(annotation: Any) -> bool:
    """Is the field (or a member of its union) a string, or a Literal of strings like amp's
    'off'? `output.name: no` is read as false too."""
    if annotation is str:
        return True
    if get_origin(annotation) is Literal:
        return any(isinstance(choice, str) for choice in get_args(annotation))
    return any(_takes_words(argument) for argument in get_args(annotation))


def _admits_bool(annotation: Any) -> bool:
    """Does a field's type take true/false: bool itself, Any, or a union or Literal with it?"""
    if annotation is bool or annotation is Any or isinstance(annotation, bool):
        return True
    return any(_admits_bool(argument) for argument in get_args(annotation))
