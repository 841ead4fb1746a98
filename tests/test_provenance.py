"""compressor/provenance.py: the recipe hash that ties exports to the run they were made from."""

from __future__ import annotations

from typing import Any

from compressor.provenance import recipe_hash
from compressor.recipe import parse_recipe


def _hash(**sections: Any) -> str:
    return recipe_hash(parse_recipe({"student": {"arch": "resnet8"}, **sections}, source="t"))


def test_spelling_out_a_default_keeps_the_hash() -> None:
    """What a recipe gets from a field added later with a default: the hash must not move,
    or every run made before the upgrade could no longer be resumed."""
    assert _hash(method={"name": "amkd"}) == _hash(method={"name": "amkd", "bank_epochs": 1})
    assert _hash() == _hash(method={"name": "ce"}, train={"epochs": 10})
    assert _hash() == _hash(export={"int8": {"calibration_images": 512}})


def test_what_the_recipe_asks_for_changes_the_hash() -> None:
    hashes = {
        _hash(),
        _hash(method={"name": "kd"}),
        _hash(method={"name": "amkd"}),
        _hash(method={"name": "bss"}),
        _hash(method={"name": "amkd", "bank_epochs": 2}),
        _hash(train={"epochs": 11}),
        _hash(export={"int8": {"calibration_images": 256}}),
    }
    assert len(hashes) == 7
