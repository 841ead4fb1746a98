"""The base of every recipe section: a setting the user did not mean is an error, not a guess.

A section refuses unknown keys, so a typo is reported instead of silently ignored, and it
refuses a value YAML read as another type than the field's, which pydantic would convert: a
true/false where a number or a word belongs, a number where only true/false does, and a
quoted number or flag.
"""

from __future__ import annotations

from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

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
        to 1, `lr: false` to 0.0, `trust_pickle: 1` to true, `epochs: '3'` to 3 and
        `flip: 'no'` to false, in a list's items too. The first three are slips (a flag's
        value in a number's place, or the reverse); the quoted ones are text to YAML and to
        the recipe's JSON Schema, so an editor flags what `recipe validate` passed. All are
        errors. (A model validator: a field validator may not touch a method's `name`, the
        union's discriminator.)"""
        if not isinstance(data, dict):
            return data
        slips = {
            key: slip
            for key, value in data.items()
            if key in cls.model_fields
            and (slip := _slip(value, cls.model_fields[key].annotation)) is not None
        }
        # The field's own validation then refuses each, with its path and its type.
        return {**data, **slips} if slips else data

    @field_validator("*", mode="after")
    @classmethod
    def _within_float32(cls, value: Any) -> Any:
        """Training computes in float32: a larger setting (lr: 1e39) crashed the optimiser,
        and a temperature squared past float64 crashed the loss, instead of being refused."""
        if isinstance(value, float) and abs(value) > FLOAT32_MAX:
            raise ValueError(
                f"beyond float32's largest value ({FLOAT32_MAX:.4g}), the precision compressor "
                "computes in; use a smaller value"
            )
        return value


FLOAT32_MAX = 3.4028234663852886e38


def _slip(value: Any, annotation: Any) -> Any:
    """What to validate in `value`'s place if YAML read it as another type than the field's
    (an object no field type accepts, whose repr says what to write), else None."""
    leaves = _leaves(annotation)
    if isinstance(value, bool):
        if any(_admits_bool(leaf) for leaf in leaves):
            return None
        return _TrueOrFalse(value, any(_takes_words(leaf) for leaf in leaves))
    if isinstance(value, int | float):
        flag_only = bool(leaves) and all(_only_flag(leaf) for leaf in leaves)
        return _NumberForFlag(value) if flag_only else None
    if isinstance(value, str):
        scalar = any(_takes_number(leaf) or leaf is bool for leaf in leaves)
        text = any(_takes_words(leaf) or leaf is Any for leaf in leaves)
        return _Quoted(value) if scalar and not text and _reads_as_number_or_flag(value) else None
    if isinstance(value, list):
        items = [get_args(leaf)[0] for leaf in leaves if get_origin(leaf) in (list, tuple)]
        if len(items) == 1:
            slips = [_slip(item, items[0]) for item in value]
            if any(slip is not None for slip in slips):
                return [
                    item if slip is None else slip for item, slip in zip(value, slips, strict=True)
                ]
    return None


def _leaves(annotation: Any) -> list[Any]:
    """The types a field takes, with unions and Annotated opened and None left out; a list,
    tuple or mapping type is one leaf."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _leaves(get_args(annotation)[0])
    if origin in (Union, UnionType):
        return [leaf for argument in get_args(annotation) for leaf in _leaves(argument)]
    return [] if annotation is type(None) else [annotation]


def _choices(leaf: Any) -> tuple[Any, ...]:
    return get_args(leaf) if get_origin(leaf) is Literal else ()


def _admits_bool(leaf: Any) -> bool:
    """Does the type take true/false: bool itself, Any, or a Literal with it?"""
    return leaf is bool or leaf is Any or any(isinstance(c, bool) for c in _choices(leaf))


def _only_flag(leaf: Any) -> bool:
    return leaf is bool or (
        bool(_choices(leaf)) and all(isinstance(c, bool) for c in _choices(leaf))
    )


def _takes_number(leaf: Any) -> bool:
    """int, float, or a Literal of numbers (true/false are no numbers here)."""
    if leaf in (int, float):
        return True
    return any(isinstance(c, int | float) and not isinstance(c, bool) for c in _choices(leaf))


def _takes_words(leaf: Any) -> bool:
    """A string, or a Literal of strings like amp's 'off'? `output.name: no` is read as false
    too."""
    return leaf is str or any(isinstance(c, str) for c in _choices(leaf))


class _NumberForFlag:
    """A number where only true/false belongs: `trust_pickle: 1` must not switch it on."""

    def __init__(self, value: float) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"{self.value!r}; write true or false"


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


def _reads_as_number_or_flag(value: str) -> bool:
    """Is it text pydantic would convert to a number or a flag (`'3'`, `'1e-3'`, `'yes'`)?
    Other text (`epochs: ten`) gets pydantic's own message: no quotes to remove there."""
    text = value.strip().lower()
    try:
        float(text)
    except ValueError:
        return text in _FLAG_WORDS
    # 'inf' and 'nan' read as numbers to Python, as text to YAML (which spells them .inf).
    return text.lstrip("+-") not in ("inf", "infinity", "nan")
