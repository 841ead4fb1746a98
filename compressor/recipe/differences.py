"""What changed between two recipes, setting by setting."""

from __future__ import annotations

import json
from typing import Any

from compressor.recipe.sections import Recipe


def recipe_differences(before: Recipe, after: Recipe) -> list[str]:
    """Each setting that differs, as `field.path: old → new`, in recipe order.

    Resuming refuses a changed recipe; naming the fields tells the user what to put back
    instead of leaving them to diff two YAML files by eye.
    """
    differences: list[str] = []

    def walk(old: Any, new: Any, path: str) -> None:
        if isinstance(old, dict) and isinstance(new, dict):
            for key in [*old, *(key for key in new if key not in old)]:
                walk(old.get(key), new.get(key), f"{path}.{key}" if path else str(key))
        elif old != new:
            differences.append(f"{path}: {_setting_text(old)} → {_setting_text(new)}")

    walk(before.model_dump(mode="json"), after.model_dump(mode="json"), "")
    return differences


def _setting_text(value: Any) -> str:
    return "(unset)" if value is None else json.dumps(value, ensure_ascii=False)
