"""Settings given in percent, where a fraction (0.9 for 90 %) is a likely slip that YAML, the
schema and the command line all accept, and that quietly lets almost anything pass. Without
torch: the gate reads recipes and flags on machines that have none."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from compressor.recipe.sections import Recipe

_PERCENT_SETTINGS = (
    ("teacher", "min_accuracy"),
    ("gate", "min_agreement"),
    ("export", "min_agreement"),
    ("export", "fp16_min_agreement"),
    ("export", "int8_min_agreement"),
)


def fractions_for_percent(recipe: Recipe) -> list[str]:
    """Warnings for the recipe's percent settings written as a fraction (between 0 and 1)."""
    warnings = []
    for section_name, field in _PERCENT_SETTINGS:
        section = getattr(recipe, section_name)
        value = getattr(section, field) if section is not None else None
        warnings += fraction_for_percent(f"{section_name}.{field}", value)
    return warnings


def fraction_for_percent(name: str, value: float | None) -> list[str]:
    """The warning for one percent setting, or flag (`--min-agreement 0.995`), written as a
    fraction; none when it is not."""
    if value is None or not 0 < value <= 1:
        return []
    return [
        f"{name} is {value:g} %, a bar almost anything passes; it is a percentage: for "
        f"{value * 100:g} % write {value * 100:g}"
    ]
