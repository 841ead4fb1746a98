"""Recipes for tests: a small valid one to vary section by section, and a file writer."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

GOOD = {
    "student": {"arch": "resnet8"},
    "data": {"name": "digits"},
    "train": {"epochs": 2, "batch_size": 64},
}


def write_recipe(tmp_path: Path, data: object, name: str = "recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return path


def merged(**sections: object) -> dict:
    """GOOD with the given sections replaced (a deep copy: tests may change the result)."""
    recipe = json.loads(json.dumps(GOOD))
    recipe.update(sections)
    return recipe
