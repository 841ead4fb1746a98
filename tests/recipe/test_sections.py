"""Section checks: those that depend on whether the run has started, and kwargs."""

from __future__ import annotations

from pathlib import Path

import pytest

from compressor.errors import UserError
from compressor.recipe import load_recipe, parse_recipe, recipe_to_yaml
from tests.recipe.helpers import merged


def test_a_started_runs_recipe_is_read_as_the_compressor_that_started_it_wrote_it() -> None:
    """Settings that would be ignored are refused for new runs only: a run an older version
    started with them must still resume, export and gate. What it refused stays refused."""
    for train in (
        {"epochs": 5, "schedule": {"name": "multistep", "milestones": [5]}},
        {"epochs": 1, "schedule": {"warmup_epochs": 1}},
        {"optimizer": {"name": "adamw", "momentum": 0.5}},
        {"optimizer": {"momentum": 0, "nesterov": True}},
        {"schedule": {"name": "cosine", "gamma": 0.5}},
        {"schedule": {"name": "multistep"}},
        {"epochs": 4, "schedule": {"name": "multistep", "milestones": [1], "warmup_epochs": 2}},
    ):
        with pytest.raises(UserError):
            parse_recipe(merged(train=train))
        parse_recipe(merged(train=train), started=True)
    for method in (
        {"name": "kd", "ce_weight": 0, "kd_weight": 0},
        {"name": "amkd", "lambda_bss": 0, "gamma": 0},
        {"name": "bss", "attack": {"search": "interpolation", "max_steps": 5}},
    ):
        with pytest.raises(UserError):
            parse_recipe(merged(method=method))
        parse_recipe(merged(method=method), started=True)
    for data in (
        {"name": "digits", "root": "/d"},
        {"name": "tiny_imagenet", "download": True},
        {"mean": [125.3, 123.0, 113.9], "std": [63.0, 62.1, 66.7]},
    ):
        with pytest.raises(UserError):
            parse_recipe(merged(data=data))
        parse_recipe(merged(data=data), started=True)
    for gate in ({"max_drop": 150}, {"max_export_drop": 101}):
        with pytest.raises(UserError, match="more than top-1 can drop; give at most 100"):
            parse_recipe(merged(gate=gate))
        parse_recipe(merged(gate=gate), started=True)
    past_the_end = {"epochs": 5, "schedule": {"name": "multistep", "milestones": [6]}}
    with pytest.raises(UserError, match=r"milestones must be <= epochs \(5\)"):
        parse_recipe(merged(train=past_the_end), started=True)
    warm = {"epochs": 3, "schedule": {"warmup_epochs": 3}}
    with pytest.raises(UserError, match="warmup_epochs must be smaller than epochs"):
        parse_recipe(merged(train=warm), started=True)


@pytest.mark.parametrize(
    ("stats", "expected"),
    [
        ({"mean": [0.5, 0.5, 255], "std": [0.2] * 3}, "data.mean: 255 is on the 0–255 scale"),
        ({"mean": [0.5] * 3, "std": [0.2, 1.5, 0.2]}, "data.std: 1.5 is on the 0–255 scale"),
        ({"mean": [300.0], "std": [0.2]}, "data.mean: 300 is outside [0, 1]; pixels are"),
        ({"mean": [-0.1], "std": [0.2]}, "data.mean: -0.1 is outside [0, 1]; pixels are"),
        ({"mean": [0.5], "std": [0.0]}, "data: std values must be > 0"),
    ],
)
def test_mean_and_std_are_on_the_scale_of_the_pixels_they_normalise(
    stats: dict, expected: str
) -> None:
    """Pixels are scaled to 0–1 before `(x - mean) / std`: statistics outside [0, 1] are
    another scale's (most often 0–255), and the schema says how to convert them."""
    with pytest.raises(UserError) as caught:
        parse_recipe(merged(data=stats), source="r.yaml")
    assert str(caught.value).startswith(f"r.yaml: {expected}"), str(caught.value)


def test_mean_and_std_at_the_ends_of_the_scale_are_accepted() -> None:
    data = parse_recipe(merged(data={"mean": [0.0, 1.0], "std": [1.0, 0.001]})).data
    assert (data.mean, data.std) == ((0.0, 1.0), (1.0, 0.001))


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ("{options: {0: 16}}", "student.kwargs: options: the key 0 is not text; quote it ('0')"),
        ("{when: 2024-01-01}", "student.kwargs: when: a date (datetime.date(2024, 1, 1))"),
        ("{sizes: [1, .inf]}", "student.kwargs: sizes[1]: inf is not a finite number"),
        ("{blob: !!binary aGk=}", "student.kwargs: blob: a bytes (b'hi')"),
    ],
    ids=["integer key", "date", "infinity", "binary"],
)
def test_kwargs_recipe_yaml_could_not_give_back_are_refused(
    tmp_path: Path, kwargs: str, expected: str
) -> None:
    """recipe.yaml keeps kwargs as JSON data: what it would give back changed (a quoted key,
    a date as text, null for inf) would make the run's recipe differ from its own (--resume
    refused every time) and export build the model from other kwargs than training."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"student: {{arch: resnet8, kwargs: {kwargs}}}\n", encoding="utf-8")
    with pytest.raises(UserError) as error:
        load_recipe(recipe)
    assert expected in error.value.lines[0]


def test_kwargs_of_plain_data_round_trip_through_recipe_yaml(tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "student: {arch: mobilenetv2, kwargs: {width_mult: 0.5}}\n"
        "teacher: {entrypoint: 'zoo:build', kwargs: {blocks: [1, 2], norm: {eps: 1.0e-5}, "
        "name: null, deep: true}}\n",
        encoding="utf-8",
    )
    loaded = load_recipe(recipe)
    again = tmp_path / "again.yaml"
    again.write_text(recipe_to_yaml(loaded), encoding="utf-8")
    assert load_recipe(again) == loaded


def test_a_milestone_given_twice_is_refused() -> None:
    """[3, 3] reads as "multiply the lr by gamma at epoch 3", but a multistep schedule counts
    each entry: the lr would drop by gamma squared there, which no one asked for."""
    schedule = {"name": "multistep", "milestones": [3, 3]}
    with pytest.raises(UserError) as error:
        parse_recipe(merged(train={"epochs": 5, "schedule": schedule}), source="r.yaml")
    assert str(error.value) == (
        "r.yaml: train.schedule: milestones must be increasing epoch numbers >= 1"
    )


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_on_a_cpu_device_is_refused(amp: str) -> None:
    """amp bf16 and fp16 are mixed precision on CUDA, which a run on train.device cpu never
    has: a recipe asking for either must be refused before the run, not train otherwise than
    it reads."""
    with pytest.raises(UserError) as error:
        parse_recipe(merged(train={"device": "cpu", "amp": amp}), source="r.yaml")
    assert str(error.value) == (
        f"r.yaml: train: amp '{amp}' is mixed precision on CUDA, but device is 'cpu'; set "
        "train.amp: auto or off, or train.device: cuda"
    )


def test_a_milestone_at_the_end_of_the_warm_up_is_accepted() -> None:
    """The warm-up reaches the full lr at epoch warmup_epochs, so a drop from there on is
    what the user asked for; only milestones inside the warm-up are refused."""
    schedule = {"name": "multistep", "milestones": [2, 3], "warmup_epochs": 2}
    train = parse_recipe(merged(train={"epochs": 5, "schedule": schedule})).train
    assert (train.schedule.milestones, train.schedule.warmup_epochs) == ([2, 3], 2)
