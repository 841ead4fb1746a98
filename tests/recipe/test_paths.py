"""Paths in a recipe: `${VAR}`, `~`, which folder a relative path is read from, and the
note an error about a missing file gives on how a path came about."""

from __future__ import annotations

from pathlib import Path

import pytest

from compressor.recipe import (
    DataConfig,
    Recipe,
    TeacherConfig,
    load_recipe,
    parse_recipe,
    recipe_to_yaml,
)
from tests.recipe.helpers import merged, write_recipe


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


def test_a_recipe_built_in_code_reads_relative_paths_from_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It has no folder of its own. Kept relative, the run's recipe.yaml named the teacher
    relative to the run folder, and export and the gate looked for it there."""
    monkeypatch.chdir(tmp_path)
    recipe = parse_recipe(
        merged(
            teacher={"arch": "resnet20", "checkpoint": "../w/t.pt"},
            data={"name": "cifar10", "root": "data"},
        )
    )
    assert recipe.teacher.checkpoint == tmp_path.parent / "w" / "t.pt"
    assert recipe.data.root == tmp_path / "data"
    assert "read from the working folder" in recipe.teacher.path_note("checkpoint")
    written = recipe_to_yaml(recipe)
    assert f"checkpoint: {tmp_path.parent / 'w' / 't.pt'}" in written


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
    # Set to nothing (`COMPRESSOR_TEACHERS= compress ...`): not "not set", which it is.
    monkeypatch.setenv("COMPRESSOR_TEACHERS", "")
    assert (
        load_recipe(path).teacher.path_note("checkpoint").endswith("$COMPRESSOR_TEACHERS is empty)")
    )


@pytest.mark.parametrize("root", ["$HOME/data", "${1X}/data", "${X:-data"])
def test_a_variable_not_written_as_one_is_named_in_the_note(tmp_path: Path, root: str) -> None:
    """Taken as a path as it is, the '$' silently part of a folder's name."""
    recipe = load_recipe(write_recipe(tmp_path, merged(data={"name": "cifar10", "root": root})))
    assert recipe.data.root == tmp_path / root
    assert recipe.data.path_note("root").endswith(
        "its '$' was read as a character: a variable is written ${NAME} or ${NAME:-default})"
    )


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


def test_a_section_built_in_code_notes_its_paths_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a recipe file (no folder to read from) a relative path is the working folder's;
    a section handed over already built keeps the notes it was built with."""
    teacher = TeacherConfig(arch="resnet20", checkpoint="t.pt")
    assert teacher.path_note("checkpoint") == " (read from the working folder)"
    data = DataConfig.model_validate(
        {"name": "cifar10", "root": "d"}, context={"base_dir": tmp_path}
    )
    assert data.root == tmp_path / "d"
    assert data.path_note("root") == " ('d' read from the recipe's folder)"
    recipe = Recipe(student={"arch": "resnet8"}, teacher=teacher, data=data)
    assert recipe.teacher is not None
    assert recipe.teacher.path_note("checkpoint") == " (read from the working folder)"
    assert recipe.data.path_note("root") == " ('d' read from the recipe's folder)"
    monkeypatch.delenv("COMPRESSOR_DATA_ROOT", raising=False)
    assert DataConfig(name="cifar10").path_source("root") is None
