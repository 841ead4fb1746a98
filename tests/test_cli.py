"""compressor/cli.py: the commands' usage lines, help and version, and what `compress gate`
leaves in its JUnit file when it crashes."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import typer

import compressor
from compressor.cli import app
from tests.cli_helpers import run_cli


def _commands(group: typer.core.TyperGroup, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command under `group`, as the words that call it."""
    found = []
    for name, command in group.commands.items():
        if isinstance(command, typer.core.TyperGroup):
            found += _commands(command, (*path, name))
        else:
            found.append((*path, name))
    return found


def test_every_usage_line_names_its_argument_as_the_readme_does(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`compress export [OPTIONS] RUN`, not typer's `{run}` or `{RUN}`."""
    arguments = {
        ("recipe", "validate"): " FILE",
        ("recipe", "schema"): "",
        ("teacher",): " FILE",
        ("train",): " FILE",
        ("distill",): " FILE",
        ("export",): " RUN",
        ("gate",): " RUN",
        ("quickstart",): "",
        ("models",): "",
    }
    commands = _commands(typer.main.get_command(app))
    assert sorted(commands) == sorted(arguments)
    for words in commands:
        usage = run_cli(capsys, *words, "--help").stdout.splitlines()[0]
        assert usage == f"Usage: compress {' '.join(words)} [OPTIONS]{arguments[words]}"


def test_help_and_version_exit_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(capsys, "export", "--help").code == 0
    train = run_cli(capsys, "train", "--help")
    # A flag takes no value: no type label beside it, as if it did.
    assert "--overwrite  Replace an existing run" in train.stdout and "<bool>" not in train.stdout
    listing = run_cli(capsys, "--help").stdout
    assert "export      Export to ONNX (+ TensorRT), validate and time.\n" in listing
    commands = listing[listing.index("Commands:") :]
    assert "..." not in commands.replace("(AMKD, KD, ...)", "")  # no summary cut short
    result = run_cli(capsys, "--version")
    assert result.code == 0
    assert result.stdout.startswith(f"compressor {compressor.__version__}")


def test_the_version_runs_record_is_the_one_the_package_is_built_with() -> None:
    """`compress --version` and manifest.json read compressor.__version__; pyproject.toml's
    version names the built package: a bump of one alone had runs record the wrong one."""
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text(encoding="utf-8")
    built = re.search(r'^version = "([^"]+)"$', pyproject, re.MULTILINE)
    assert built is not None and built[1] == compressor.__version__


def test_a_gate_that_crashes_leaves_no_earlier_verdict_in_its_junit_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CI job shows the JUnit file: a crash (injected here; none is known) must replace an
    earlier passing verdict there with an error."""
    import compressor.gate

    def crash(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("injected")

    monkeypatch.setattr(compressor.gate, "evaluate_gate", crash)
    junit = tmp_path / "gate.xml"
    junit.write_text(
        '<testsuites name="compressor.gate" tests="1" failures="0" errors="0"/>', encoding="utf-8"
    )
    with pytest.raises(SystemExit) as stop:
        from compressor.entry import main

        monkeypatch.setattr(sys, "argv", ["compress", "gate", "runs/x", "--junit", str(junit)])
        main()
    assert stop.value.code == 3
    assert 'errors="1"' in junit.read_text() and "ZeroDivisionError" in junit.read_text()
    assert (
        capsys.readouterr()
        .err.rstrip()
        .endswith(
            "a bug, not bad input or a failed check; "
            "the traceback above says where (in compressor, or in code the recipe runs)"
        )
    )


@pytest.mark.parametrize("local_rank", ["0", "1"])
def test_a_command_of_one_process_is_refused_under_torchrun(
    local_rank: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`torchrun -m compressor quickstart` hung for good: both processes trained the teacher,
    then waited on each other; an export under torchrun failed with a message that said to
    run it again. The first process of the machine says why; the others end with it."""
    for name, value in {"WORLD_SIZE": "2", "RANK": local_rank, "LOCAL_RANK": local_rank}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("compressor.entry._SPEAKER_GRACE_SECONDS", 0.0)  # no torchrun to stop it
    for command in (["quickstart"], ["export", "runs/quickstart"], ["recipe", "schema"]):
        result = run_cli(capsys, *command)
        assert result.code == 2 and result.stdout == ""
        said = (
            f"error: compress {command[0]} runs in one process: run it without torchrun, "
            "which starts several for train and distill only\n"
        )
        assert result.stderr == (said if local_rank == "0" else "")
    assert run_cli(capsys, "--version").code == 0


@pytest.mark.parametrize("local_rank", ["0", "1"])
def test_a_usage_error_under_torchrun_is_said_once_per_machine(
    local_rank: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every process parses the same command line: a mistyped flag was printed once per
    process. The first process of the machine says it; the others end with it, silently."""
    for name, value in {"WORLD_SIZE": "2", "RANK": local_rank, "LOCAL_RANK": local_rank}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("compressor.entry._SPEAKER_GRACE_SECONDS", 0.0)  # no torchrun to stop it
    for command in (["distill", "recipe.yaml", "--bogus"], ["train"]):
        result = run_cli(capsys, *command)
        assert result.code == 2 and result.stdout == ""
        lines = result.stderr.splitlines()
        assert len(lines) == (1 if local_rank == "0" else 0), result.stderr
        assert all(line.startswith("error: ") for line in lines)
