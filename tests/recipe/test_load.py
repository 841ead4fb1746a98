"""Reading a recipe file: defaults filled in, unreadable or unsafe files refused in one line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from compressor.errors import UserError
from compressor.recipe import load_recipe, parse_recipe, recipe_to_yaml
from tests.cli_helpers import run_cli
from tests.recipe.helpers import write_recipe


def test_defaults_are_filled_in_and_round_trip(tmp_path: Path) -> None:
    recipe = load_recipe(write_recipe(tmp_path, {"student": {"arch": "resnet8"}}))
    assert recipe.method.name == "ce"
    assert recipe.data.name == "digits"
    assert recipe.train.optimizer.name == "sgd"
    again = parse_recipe(yaml.safe_load(recipe_to_yaml(recipe)))
    assert again == recipe


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("student: {arch: resnet8\n", ["not valid YAML", "line"]),
        ("- student\n- data\n", ["YAML mapping"]),
        ("just a string\n", ["YAML mapping"]),
        # A list as a key crashed the duplicate-key check (unhashable).
        ("student: {arch: resnet8}\n? [a, b]\n: 1\n", ["line 2", "a key must be a name"]),
        # YAML 1.1 reads these as octal 8 and base-60 90, not what they look like.
        ("student: {arch: resnet8}\ntrain: {epochs: 010}\n", ["010 is a YAML 1.1 octal"]),
        ("student: {arch: resnet8}\ntrain: {seed: 1:30}\n", ["1:30 is a YAML 1.1 octal"]),
        ("student: {arch: resnet8}\ntrain: {seed: 1:30.5}\n", ["1:30.5 is a YAML 1.1 octal"]),
        ("student: {arch: resnet8}\ntrain: {epochs: !!int 3.5}\n", ["'3.5' is not an integer"]),
    ],
)
def test_unreadable_recipe_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, expected: list[str]
) -> None:
    result = run_cli(capsys, "recipe", "validate", str(write_recipe(tmp_path, content)))
    assert result.code == 2
    for fragment in expected:
        assert fragment in result.stderr


def test_a_recipe_file_of_gigabytes_is_refused_unread(tmp_path: Path) -> None:
    """A crafted run's recipe.yaml (a sparse file): read whole, it took the memory."""
    path = tmp_path / "recipe.yaml"
    path.write_bytes(b"")
    os.truncate(path, 2**31)
    with pytest.raises(UserError) as error:
        load_recipe(path)
    assert str(error.value) == (
        f"{path}: 2,048 MiB, far more than a record of a run holds; a recipe is a small YAML file"
    )


def test_missing_recipe_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "recipe", "validate", str(tmp_path / "nope.yaml"))
    assert result.code == 2
    assert "recipe file not found" in result.stderr


def test_a_recipe_file_name_no_file_system_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_cli(capsys, "recipe", "validate", str(tmp_path / f"{'r' * 300}.yaml"))
    assert result.code == 2
    assert result.stderr.endswith(": cannot read the recipe file (File name too long)\n")


def test_plain_numbers_still_read_as_numbers(tmp_path: Path) -> None:
    content = (
        "student: {arch: resnet8}\n"
        "train: {epochs: 0x10, seed: 0, batch_size: 1_024, optimizer: {lr: 0.05, momentum: 0.0}}\n"
    )
    train = load_recipe(write_recipe(tmp_path, content)).train
    assert (train.epochs, train.seed, train.batch_size) == (16, 0, 1024)
    tagged = "student: {arch: resnet8}\ntrain: {optimizer: {lr: !!float 010}}\n"
    assert load_recipe(write_recipe(tmp_path, tagged)).train.optimizer.lr == 10.0
    assert (train.optimizer.lr, train.optimizer.momentum) == (0.05, 0.0)


def test_numbers_with_an_exponent_read_as_numbers(tmp_path: Path) -> None:
    """PyYAML (YAML 1.1) reads `1e-3` as text. pydantic used to convert it; quoted numbers
    are now refused, so the loader must read it as the number YAML 1.2 and editors see."""
    content = (
        "student: {arch: resnet8}\n"
        "train: {optimizer: {lr: 1e-3, weight_decay: 5.0E-4, momentum: .9e0}}\n"
    )
    optimizer = load_recipe(write_recipe(tmp_path, content)).train.optimizer
    assert (optimizer.lr, optimizer.weight_decay, optimizer.momentum) == (1e-3, 5e-4, 0.9)


def test_a_run_name_that_reads_like_a_number_round_trips(tmp_path: Path) -> None:
    recipe = parse_recipe({"student": {"arch": "resnet8"}, "output": {"name": "1e5"}})
    assert "name: '1e5'" in recipe_to_yaml(recipe)
    written = tmp_path / "recipe.yaml"
    written.write_text(recipe_to_yaml(recipe))
    assert load_recipe(written).output.name == "1e5"


def test_yaml_tags_that_build_objects_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    content = "student: !!python/object/apply:os.system ['echo pwned']\n"
    result = run_cli(capsys, "recipe", "validate", str(write_recipe(tmp_path, content)))
    assert result.code == 2
    assert "not valid YAML" in result.stderr


def test_merge_keys_work_and_a_key_beside_one_overrides_it(tmp_path: Path) -> None:
    """`<<: *anchor` is how YAML shares settings between sections; the duplicate-key check
    must not take the key written beside a merge for a repeat."""
    content = (
        "train: {epochs: 3, batch_size: 32, device: cpu}\n"
        "student: {arch: resnet8}\n"
        "export:\n"
        "  <<: {opset: 17, batch_sizes: [1, 8]}\n"
        "  opset: 18\n"
    )
    recipe = load_recipe(write_recipe(tmp_path, content))
    assert (recipe.export.opset, recipe.export.batch_sizes) == (18, [1, 8])
    repeated = "student: {arch: resnet8}\ntrain: {<<: {epochs: 3}, epochs: 2, epochs: 4}\n"
    with pytest.raises(UserError, match="'epochs' is given twice"):
        load_recipe(write_recipe(tmp_path, repeated))
