"""Recipe validation: every bad recipe ends in one readable line per problem and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from compressor.errors import UserError
from compressor.recipe import (
    Recipe,
    load_recipe,
    parse_recipe,
    recipe_differences,
    recipe_schema,
    recipe_to_yaml,
)
from tests.cli_helpers import run_cli

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
    recipe = json.loads(json.dumps(GOOD))
    recipe.update(sections)
    return recipe


def test_defaults_are_filled_in_and_round_trip(tmp_path: Path) -> None:
    recipe = load_recipe(write_recipe(tmp_path, {"student": {"arch": "resnet8"}}))
    assert recipe.method.name == "ce"
    assert recipe.data.name == "digits"
    assert recipe.train.optimizer.name == "sgd"
    again = parse_recipe(yaml.safe_load(recipe_to_yaml(recipe)))
    assert again == recipe


def test_differences_name_each_changed_setting_with_both_values() -> None:
    before = parse_recipe(merged(method={"name": "kd"}))
    after = parse_recipe(
        merged(
            method={"name": "amkd"},
            train={"epochs": 3, "batch_size": 64, "optimizer": {"weight_decay": 1e-4}},
        )
    )
    differences = recipe_differences(before, after)
    assert 'method.name: "kd" → "amkd"' in differences
    # A key only one method has shows as appearing, not as a crash or a silent skip.
    assert "method.gamma: (unset) → 8.0" in differences
    assert "train.epochs: 2 → 3" in differences
    assert "train.optimizer.weight_decay: 0.0005 → 0.0001" in differences
    assert recipe_differences(before, before) == []
    # Recipe order, so the first differences shown are the most prominent sections'.
    assert differences.index("train.epochs: 2 → 3") > differences.index(
        'method.name: "kd" → "amkd"'
    )


def test_method_defaults_follow_the_design() -> None:
    recipe = parse_recipe(merged(method={"name": "amkd"}, teacher={"arch": "resnet20"}))
    assert recipe.method.attack.step_size == 0.3
    assert recipe.method.attack.epsilon == 1e-4
    assert recipe.method.attack.max_steps == 10
    assert recipe.method.weights.beta_stop_fraction == 0.75
    assert recipe.method.bank_epochs == 1  # bank mode is opt-in
    banked = parse_recipe(merged(method={"name": "bss", "bank_epochs": 5}, teacher={"arch": "x"}))
    assert banked.method.bank_epochs == 5
    triplet = parse_recipe(merged(method={"name": "triplet"}, teacher={"arch": "resnet20"}))
    assert (triplet.method.margin, triplet.method.triplet_weight) == (5.0, 2.0)


def test_relative_paths_resolve_against_the_recipe_folder(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    recipe = load_recipe(
        write_recipe(tmp_path / "sub", merged(teacher={"arch": "resnet20", "checkpoint": "t.pt"}))
    )
    assert recipe.teacher.checkpoint == (tmp_path / "sub" / "t.pt").resolve()
    up = write_recipe(
        tmp_path / "sub", merged(teacher={"arch": "resnet20", "checkpoint": "../w/t.pt"})
    )
    assert load_recipe(up).teacher.checkpoint == (tmp_path / "w" / "t.pt").resolve()  # no ".."


def test_environment_variables_expand_in_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_ROOT", str(tmp_path))
    recipe = parse_recipe(merged(data={"name": "cifar10", "root": "${MY_ROOT}/cifar"}))
    assert recipe.data.root == tmp_path / "cifar"
    fallback = parse_recipe(merged(data={"name": "cifar10", "root": "${UNSET_VAR_X:-/d}/c"}))
    assert fallback.data.root == Path("/d/c")


def test_data_root_defaults_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPRESSOR_DATA_ROOT", "/some/where")
    assert parse_recipe(merged(data={"name": "cifar10"})).data.root == Path("/some/where")


def test_a_relative_environment_data_root_is_kept_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From the working directory at load time: the run's recipe.yaml, read again from the run
    directory by export and --resume, must name the same folder (it used to say `root: data`,
    which then meant RUN/data)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COMPRESSOR_DATA_ROOT", "data")
    recipe = parse_recipe(merged(data={"name": "cifar10"}))
    assert recipe.data.root == tmp_path / "data"
    saved = tmp_path / "runs" / "r" / "recipe.yaml"
    saved.parent.mkdir(parents=True)
    saved.write_text(recipe_to_yaml(recipe), encoding="utf-8")
    monkeypatch.delenv("COMPRESSOR_DATA_ROOT")
    assert load_recipe(saved).data.root == tmp_path / "data"


def _recipe_in_a_subfolder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shipped recipes' path lines, in tmp/repo/recipes/, run from tmp/work."""
    recipe = merged(
        teacher={
            "arch": "resnet20",
            "checkpoint": "${COMPRESSOR_TEACHERS:-../teachers}/resnet20.th",
        },
        data={"name": "cifar10", "root": "${COMPRESSOR_DATA_ROOT:-../data}"},
    )
    (tmp_path / "repo" / "recipes").mkdir(parents=True)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    return write_recipe(tmp_path / "repo" / "recipes", recipe)


def test_a_relative_path_from_a_variable_is_read_from_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the shell that set it means it: COMPRESSOR_DATA_ROOT=data is ./data, wherever the
    recipe lies; it used to be read from the recipe's folder, while a recipe without
    data.root read the same variable from the working folder."""
    path = _recipe_in_a_subfolder(tmp_path, monkeypatch)
    monkeypatch.setenv("COMPRESSOR_DATA_ROOT", "data")
    monkeypatch.setenv("COMPRESSOR_TEACHERS", "../teachers")
    recipe = load_recipe(path)
    assert recipe.data.root == tmp_path / "work" / "data"
    assert recipe.teacher.checkpoint == tmp_path / "teachers" / "resnet20.th"
    assert parse_recipe(merged(data={"name": "cifar10"})).data.root == recipe.data.root


def test_a_default_is_read_from_the_recipe_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _recipe_in_a_subfolder(tmp_path, monkeypatch)
    monkeypatch.delenv("COMPRESSOR_DATA_ROOT", raising=False)
    monkeypatch.delenv("COMPRESSOR_TEACHERS", raising=False)
    recipe = load_recipe(path)
    assert recipe.data.root == tmp_path / "repo" / "data"
    assert recipe.teacher.checkpoint == tmp_path / "repo" / "teachers" / "resnet20.th"


def test_a_variable_inside_a_path_leaves_it_the_recipe_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whoever wrote a relative path's start decides its folder: here the recipe did."""
    monkeypatch.setenv("DATA_NAME", "cifar")
    recipe = load_recipe(
        write_recipe(tmp_path, merged(data={"name": "cifar10", "root": "sets/${DATA_NAME}"}))
    )
    assert recipe.data.root == tmp_path.resolve() / "sets" / "cifar"
    assert recipe.data.path_note("root") == " ('sets/cifar' read from the recipe's folder)"


def test_a_run_s_recipe_keeps_a_variable_s_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """recipe.yaml in the run directory names the folders the run read, without the
    variables that gave them (export and --resume read it again from elsewhere)."""
    path = _recipe_in_a_subfolder(tmp_path, monkeypatch)
    monkeypatch.setenv("COMPRESSOR_DATA_ROOT", "data")
    recipe = load_recipe(path)
    saved = tmp_path / "work" / "runs" / "r" / "recipe.yaml"
    saved.parent.mkdir(parents=True)
    saved.write_text(recipe_to_yaml(recipe), encoding="utf-8")
    monkeypatch.delenv("COMPRESSOR_DATA_ROOT")
    monkeypatch.chdir(tmp_path)
    again = load_recipe(saved, started=True)
    assert again.data.root == tmp_path / "work" / "data"
    assert again.teacher.checkpoint == tmp_path / "repo" / "teachers" / "resnet20.th"
    assert again.data.path_note("root") == ""  # absolute, as written


def test_a_path_note_names_the_variable_or_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _recipe_in_a_subfolder(tmp_path, monkeypatch)
    monkeypatch.setenv("COMPRESSOR_DATA_ROOT", "mydata")
    monkeypatch.delenv("COMPRESSOR_TEACHERS", raising=False)
    recipe = load_recipe(path)
    assert recipe.data.path_note("root") == (
        " (from $COMPRESSOR_DATA_ROOT=mydata, read from the working folder)"
    )
    assert recipe.teacher.path_note("checkpoint") == (
        " ('../teachers/resnet20.th' read from the recipe's folder; $COMPRESSOR_TEACHERS is not "
        "set)"
    )
    monkeypatch.setenv("COMPRESSOR_DATA_ROOT", str(tmp_path))
    assert parse_recipe(merged(data={"name": "cifar10"})).data.path_note("root") == (
        f" (from $COMPRESSOR_DATA_ROOT={tmp_path})"
    )


def test_schema_is_json_schema_with_every_section() -> None:
    schema = recipe_schema()
    assert set(schema["properties"]) == set(Recipe.model_fields)
    assert schema["additionalProperties"] is False
    json.dumps(schema)


def test_schema_shows_list_and_mapping_defaults() -> None:
    """pydantic leaves factory-made defaults out of the schema; an editor should show them."""
    definitions = recipe_schema()["$defs"]
    assert definitions["ExportConfig"]["properties"]["batch_sizes"]["default"] == [1, 64]
    assert definitions["ScheduleConfig"]["properties"]["milestones"]["default"] == []
    assert definitions["StudentConfig"]["properties"]["kwargs"]["default"] == {}
    assert "default" not in recipe_schema()["properties"]["train"]  # a section: per field
    # ...except which method a recipe without `method:` trains.
    assert recipe_schema()["properties"]["method"]["default"] == {"name": "ce"}
    assert parse_recipe({"student": {"arch": "resnet8"}}, source="t").method.name == "ce"


BAD_RECIPES = [
    ("unknown top-level key", merged(trainer={"epochs": 1}), ["trainer", "unknown key"]),
    (
        "typo in a nested key",
        merged(train={"optimizer": {"momentm": 0.9}}),
        ["train.optimizer.momentm", "unknown key", "momentum"],
    ),
    ("wrong type", merged(train={"epochs": "ten"}), ["train.epochs", "'ten'", "integer"]),
    ("out of range", merged(train={"batch_size": 1}), ["train.batch_size", "greater than"]),
    ("negative lr", merged(train={"optimizer": {"lr": -0.1}}), ["train.optimizer.lr", "-0.1"]),
    ("nan lr", merged(train={"optimizer": {"lr": float("nan")}}), ["train.optimizer.lr", "nan"]),
    ("unknown method", merged(method={"name": "dkd"}), ["method", "'dkd'", "amkd"]),
    (
        "unquoted off for a word",
        merged(train={"amp": False}),
        ["train.amp: Input should be", "(got false; YAML reads an unquoted on/off/yes/no"],
    ),
    (
        "one number for a per-channel list",
        merged(data={"mean": 0.5, "std": [0.2]}),
        ["data.mean: Input should be a list (got 0.5)"],
    ),
    (
        "class count in student kwargs",
        merged(student={"arch": "resnet8", "kwargs": {"num_classes": 5}}),
        ["student", "kwargs may not set num_classes", "data set's class and channel counts"],
    ),
    (
        "channel count in zoo teacher kwargs",
        merged(teacher={"arch": "resnet20", "kwargs": {"in_channels": 1}}),
        ["teacher", "kwargs may not set in_channels"],
    ),
    (
        "option of another method",
        merged(method={"name": "kd", "margin": 1.0}, teacher={"arch": "resnet20"}),
        ["method.margin", "unknown key", "temperature"],
    ),
    (
        "bank of zero epochs",
        merged(method={"name": "amkd", "bank_epochs": 0}, teacher={"arch": "resnet20"}),
        ["method.bank_epochs", "greater than or equal to 1", "(got 0)"],
    ),
    (
        "bad AMKD choice",
        merged(method={"name": "amkd", "embedding": "pixels"}, teacher={"arch": "resnet20"}),
        ["method.embedding", "'logits'", "'pixels'"],
    ),
    ("missing student", {"data": {"name": "digits"}}, ["student", "missing"]),
    ("unknown data set", merged(data={"name": "mnist"}), ["data.name", "'mnist'", "cifar10"]),
    ("mean without std", merged(data={"mean": [0.5]}), ["data", "both mean and std"]),
    ("bad device", merged(train={"device": "gpu"}), ["train.device", "'gpu'"]),
    ("bad amp", merged(train={"amp": "int8"}), ["train.amp", "'int8'", "bf16"]),
    (
        "milestone past the end",
        merged(train={"epochs": 5, "schedule": {"name": "multistep", "milestones": [3, 9]}}),
        ["train", "milestones", "< epochs (5)"],
    ),
    (
        "milestone at the end, which never applies",
        merged(train={"epochs": 5, "schedule": {"name": "multistep", "milestones": [3, 5]}}),
        ["train", "< epochs (5)", "never applies"],
    ),
    (
        "multistep without milestones",
        merged(train={"schedule": {"name": "multistep"}}),
        ["train.schedule", "multistep needs milestones"],
    ),
    (
        "milestones on a cosine schedule",
        merged(train={"schedule": {"name": "cosine", "milestones": [3]}}),
        ["train.schedule", "a cosine schedule would ignore them"],
    ),
    (
        "gamma on a constant schedule",
        merged(train={"schedule": {"name": "constant", "gamma": 0.5}}),
        ["train.schedule", "a constant schedule would ignore them"],
    ),
    (
        "warm-up as long as a one-epoch run",
        merged(train={"epochs": 1, "schedule": {"warmup_epochs": 1}}),
        ["train", "warmup_epochs must be smaller than epochs (1)"],
    ),
    (
        "adamw with momentum",
        merged(train={"optimizer": {"name": "adamw", "momentum": 0.5}}),
        ["train.optimizer", "adamw takes no momentum or nesterov"],
    ),
    (
        "adamw with nesterov",
        merged(train={"optimizer": {"name": "adamw", "nesterov": True}}),
        ["train.optimizer", "adamw takes no momentum or nesterov"],
    ),
    (
        "nesterov without momentum",
        merged(train={"optimizer": {"momentum": 0, "nesterov": True}}),
        ["train.optimizer", "nesterov needs momentum > 0"],
    ),
    (
        "digits with a root",
        merged(data={"name": "digits", "root": "/data/cifar"}),
        ["data", "digits is embedded and reads no files, so root is not used"],
    ),
    (
        "download of an image folder",
        merged(data={"name": "imagefolder", "root": "/data/imgs", "download": True}),
        ["data", "only cifar10 and cifar100 can be downloaded, not imagefolder"],
    ),
    (
        "teacher with arch and entrypoint",
        merged(teacher={"arch": "resnet20", "entrypoint": "pkg.mod:build"}),
        ["teacher", "either arch or entrypoint"],
    ),
    (
        "malformed entrypoint",
        merged(teacher={"entrypoint": "pkg.mod.build"}),
        ["teacher.entrypoint", "pkg.mod.build"],
    ),
    (
        "unset environment variable",
        merged(data={"name": "cifar10", "root": "${SURELY_UNSET_VAR_123}/x"}),
        ["data.root", "SURELY_UNSET_VAR_123", "not set"],
    ),
    (
        "min_accuracy as a fraction above 100",
        merged(teacher={"arch": "resnet20", "min_accuracy": 900}),
        ["teacher.min_accuracy", "less than or equal to 100"],
    ),
]


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
    ):
        with pytest.raises(UserError):
            parse_recipe(merged(train=train))
        parse_recipe(merged(train=train), started=True)
    for data in ({"name": "digits", "root": "/d"}, {"name": "tiny_imagenet", "download": True}):
        with pytest.raises(UserError):
            parse_recipe(merged(data=data))
        parse_recipe(merged(data=data), started=True)
    past_the_end = {"epochs": 5, "schedule": {"name": "multistep", "milestones": [6]}}
    with pytest.raises(UserError, match=r"milestones must be <= epochs \(5\)"):
        parse_recipe(merged(train=past_the_end), started=True)
    warm = {"epochs": 3, "schedule": {"warmup_epochs": 3}}
    with pytest.raises(UserError, match="warmup_epochs must be smaller than epochs"):
        parse_recipe(merged(train=warm), started=True)


@pytest.mark.parametrize(
    ("case", "data", "expected"), BAD_RECIPES, ids=[case for case, _, _ in BAD_RECIPES]
)
def test_bad_recipe_schema_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, data: dict, expected: list[str]
) -> None:
    path = write_recipe(tmp_path, data)
    result = run_cli(capsys, "recipe", "validate", str(path))
    assert result.code == 2, result
    assert "Traceback" not in result.stderr
    first = result.stderr.strip().splitlines()[0]
    assert first.startswith(f"error: {path}: "), first
    for fragment in expected:
        assert fragment in result.stderr, (case, fragment, result.stderr)


def test_several_problems_are_reported_together(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_recipe(tmp_path, merged(train={"epochs": 0, "batch_size": 0, "amp": "x"}))
    result = run_cli(capsys, "recipe", "validate", str(path))
    assert result.code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3
    assert {line.split(": ")[2] for line in lines} == {
        "train.epochs",
        "train.batch_size",
        "train.amp",
    }


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("student: {arch: resnet8\n", ["not valid YAML", "line"]),
        ("- student\n- data\n", ["YAML mapping"]),
        ("just a string\n", ["YAML mapping"]),
    ],
)
def test_unreadable_recipe_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, expected: list[str]
) -> None:
    result = run_cli(capsys, "recipe", "validate", str(write_recipe(tmp_path, content)))
    assert result.code == 2
    for fragment in expected:
        assert fragment in result.stderr


def test_missing_recipe_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "recipe", "validate", str(tmp_path / "nope.yaml"))
    assert result.code == 2
    assert "recipe file not found" in result.stderr


def test_yaml_tags_that_build_objects_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    content = "student: !!python/object/apply:os.system ['echo pwned']\n"
    result = run_cli(capsys, "recipe", "validate", str(write_recipe(tmp_path, content)))
    assert result.code == 2
    assert "not valid YAML" in result.stderr


def test_a_recipe_equals_itself_however_its_paths_were_written(tmp_path: Path) -> None:
    """A run's recipe.yaml holds absolute paths; the recipe that started it, relative ones.
    --resume and quickstart compare the two: how a path was written must not count."""
    (tmp_path / "t.pt").write_bytes(b"")
    relative = {"teacher": {"arch": "resnet20", "checkpoint": "t.pt"}, "method": {"name": "kd"}}
    absolute = merged(
        teacher={"arch": "resnet20", "checkpoint": str(tmp_path / "t.pt")}, method={"name": "kd"}
    )
    first = load_recipe(write_recipe(tmp_path, merged(**relative), "relative.yaml"))
    second = load_recipe(write_recipe(tmp_path, absolute, "absolute.yaml"))
    assert first.teacher is not None and first.teacher.path_note("checkpoint")
    assert first == second
    other = merged(teacher={"arch": "resnet56", "checkpoint": "t.pt"}, method={"name": "kd"})
    assert first != load_recipe(write_recipe(tmp_path, other, "other.yaml"))
