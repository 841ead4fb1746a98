"""compressor/entry.py: how a command ends, as the user and a CI job read it: one line per
usage error, --debug's traceback, the help of a group called without a command, one line and
exit 130 for a Ctrl-C, 141 for a closed pipe, 3 and the traceback for a crash."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from compressor.entry import _exit_after_the_speaker, _stop_as_ctrl_c
from compressor.errors import DEBUG_HINT
from compressor.interrupt import stop
from tests.as_another_user import compress_as_nobody, open_folder
from tests.cli_helpers import run_cli
from tests.data.test_cifar import make_cifar10
from tests.export.helpers import one_error_line
from tests.signal_helpers import ctrl_c_while_importing, needs_posix_signals


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (
            ["export", "runs/x", "--runs", "abc"],
            ["Invalid value for '--runs'", "valid integer", "; see `compress export --help`"],
        ),
        (["export"], ["Missing argument 'RUN'; see `compress export --help`"]),
        (["nosuch"], ["No such command 'nosuch'; see `compress --help`"]),
        (
            ["distil", "r.yaml"],
            ["No such command 'distil'. Did you mean 'distill'? See `compress --help`"],
        ),
        (["gate", "runs/x", "--max-drop"], ["Option '--max-drop' requires an argument"]),
        (["recipe", "validate", "a.yaml", "--bogus"], ["No such option", "--bogus"]),
    ],
)
def test_a_usage_error_is_one_error_line(
    args: list[str], fragments: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A mistyped flag is bad input like any other: exit 2, one line, no usage text or panel.
    click's wording differs between releases; what the line must say does not."""
    line = one_error_line(run_cli(capsys, *args))
    assert line.startswith("error: "), line
    for fragment in fragments:
        assert fragment in line, line


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["distill", "r.yaml", "--debug"],
            "error: --debug is an option of compress itself, not of `compress distill`; put it "
            "before the command: `compress --debug distill r.yaml`",
        ),
        (
            ["recipe", "validate", "my recipe.yaml", "--debug"],
            "error: --debug is an option of compress itself, not of `compress recipe validate`; "
            "put it before the command: `compress --debug recipe validate 'my recipe.yaml'`",
        ),
        (
            ["gate", "runs/x", "--version"],
            "error: --version is an option of compress itself, not of `compress gate`; put it "
            "before the command: `compress --version`",
        ),
    ],
)
def test_an_option_of_compress_after_the_command_says_where_it_goes(
    args: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """click alone says "No such option: --debug", which reads as if there were none."""
    assert one_error_line(run_cli(capsys, *args)) == expected


def test_a_group_without_a_command_shows_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "recipe")
    assert result.code == 2
    assert "validate" in result.stdout + result.stderr
    assert "error:" not in result.stdout + result.stderr


def test_debug_shows_the_traceback_and_keeps_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--debug adds the traceback; bad input still exits 2, not 1 (the gate's "failed")."""
    result = run_cli(capsys, "--debug", "gate", str(tmp_path / "nope"))
    assert result.code == 2
    assert "Traceback" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("error: ")


def test_the_hint_to_use_debug_is_left_out_under_debug(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A teacher entrypoint that raises says how to see the traceback into the user's code;
    under --debug that traceback is shown, and the hint would only repeat the command."""
    (tmp_path / "raising_teacher.py").write_text(
        "def build(num_classes):\n    raise RuntimeError('GPU not found')\n", encoding="utf-8"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "teacher: {entrypoint: 'raising_teacher:build'}\nstudent: {arch: resnet8}\n",
        encoding="utf-8",
    )
    # `recipe validate` gathers every problem into one error: it kept the user's cause too.
    for command in (["teacher"], ["recipe", "validate"]):
        plain = one_error_line(run_cli(capsys, *command, str(recipe)))
        assert plain.endswith("raised RuntimeError: GPU not found" + DEBUG_HINT)
        debugged = run_cli(capsys, "--debug", *command, str(recipe))
        assert debugged.code == 2
        assert "raise RuntimeError('GPU not found')" in debugged.stderr  # the user's own line
        last = debugged.stderr.rstrip().splitlines()[-1]
        assert last.endswith("raised RuntimeError: GPU not found") and "--debug" not in last


@needs_posix_signals
def test_ctrl_c_while_a_command_loads_torch_is_one_line_and_130(tmp_path: Path) -> None:
    """typer turns a KeyboardInterrupt the command does not handle into exit 130, silently:
    the command line says what stopped it (and only that, no traceback)."""
    result = ctrl_c_while_importing("torch", "export", str(tmp_path / "run"))
    assert result.returncode == 130, result.stderr
    assert result.stderr == "stopped by Ctrl-C\n"
    assert result.stdout == ""


@needs_posix_signals
def test_ctrl_c_pressed_again_as_the_command_ends_changes_nothing(tmp_path: Path) -> None:
    """Python's own handler was back by then: the process died of the signal, after a
    traceback from an atexit callback."""
    result = ctrl_c_while_importing("torch", "export", str(tmp_path / "run"), again=True)
    assert (result.returncode, result.stderr) == (130, "stopped by Ctrl-C\n")


def test_a_second_stop_signal_does_not_cut_short_the_handling_of_the_first() -> None:
    """A Ctrl-C pressed again while the command wrote where it stopped raised a second
    KeyboardInterrupt there; the exit code tells the first signal."""
    stop.signal, stop.ending = None, False
    try:
        with pytest.raises(KeyboardInterrupt):
            _stop_as_ctrl_c(signal.SIGINT, None)
        for again in (signal.SIGINT, signal.SIGTERM):
            try:
                _stop_as_ctrl_c(again, None)
            except KeyboardInterrupt:
                pytest.fail(f"signal {again} raised again")
        assert stop.signal == signal.SIGINT
    finally:
        stop.signal = None


@needs_posix_signals
def test_a_process_that_does_not_say_a_shared_refusal_waits_for_the_one_that_does() -> None:
    """Under torchrun a process that exited first had the one that says the refusal
    (LOCAL_RANK 0) stopped before its line. It waits until torchrun stops it (SIGTERM) as
    the speaker exits, and then exits 2 without a word."""
    stop.signal, stop.ending = None, False
    handler = signal.signal(signal.SIGTERM, _stop_as_ctrl_c)
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        with pytest.raises(SystemExit) as ended:
            _exit_after_the_speaker()
        assert ended.value.code == 2
        assert stop.signal == signal.SIGTERM  # it was still waiting when torchrun stopped it
    finally:
        timer.cancel()
        signal.signal(signal.SIGTERM, handler)
        stop.signal = None


@pytest.mark.skipif(not hasattr(signal, "SIGPIPE"), reason="needs POSIX pipes")
@pytest.mark.parametrize(
    ("args", "closed"),
    [
        (["--help"], "stdout"),  # typer handles the BrokenPipeError, with exit 1
        (["models"], "stdout"),
        (["recipe", "schema"], "stdout"),
        (["recipe"], "stderr"),  # the group's help, printed by main() itself
        (["gate", "no-such-run"], "stderr"),  # an error line, printed by main() itself
    ],
)
def test_output_into_a_closed_pipe_ends_quietly_with_141(
    args: list[str], closed: str, tmp_path: Path
) -> None:
    """`compress --help | head -1`, with the reader gone before the first byte is written:
    no traceback, and 141 (128 + SIGPIPE), never 1, which would read as a failed check."""
    reader, writer = os.pipe()
    os.close(reader)
    other = subprocess.PIPE
    process = subprocess.Popen(
        [sys.executable, "-m", "compressor", *args],
        stdout=writer if closed == "stdout" else other,
        stderr=writer if closed == "stderr" else other,
        cwd=tmp_path,
        text=True,
    )
    os.close(writer)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 141, (out, err)
    assert (out or "") + (err or "") == ""


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("args", [["models"], ["--help"], ["recipe", "schema"]])
def test_output_to_a_full_device_is_one_line_and_2_not_a_crash(
    args: list[str], tmp_path: Path
) -> None:
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "compressor", *args],
            stdout=full,
            stderr=subprocess.PIPE,
            cwd=tmp_path,
            text=True,
            timeout=120,
        )
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        "error: cannot write the output (No space left on device); free space where it goes\n"
    )


@pytest.mark.parametrize("closed", ["stdout", "stderr"])
def test_a_closed_standard_stream_is_written_to_nowhere_not_a_crash(
    closed: str, tmp_path: Path
) -> None:
    """`compress models >&-`: Python sees the stream as None, and importing the CLI crashed."""
    done = subprocess.run(
        [sys.executable, "-m", "compressor", "models"],
        stdout=subprocess.PIPE if closed == "stderr" else subprocess.DEVNULL,
        stderr=subprocess.PIPE if closed == "stdout" else subprocess.DEVNULL,
        cwd=tmp_path,
        text=True,
        timeout=120,
        preexec_fn=lambda: os.close(1 if closed == "stdout" else 2),
    )
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert ("resnet8" in (done.stdout or "")) is (closed == "stderr")
    assert not done.stderr


_CRASHING_TEACHER = """
import torch


class Teacher(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(64, 10)

    def forward(self, x):
        if x.shape[0] > 2:  # passes the two-image probe, fails when scored: a bug in user code
            raise RuntimeError("boom in the user's teacher")
        return self.linear(x.flatten(1))


def build():
    with torch.random.fork_rng(devices=[]):  # the same weights on every call
        torch.manual_seed(0)
        return Teacher()
"""


def test_a_crash_shows_its_traceback_and_exits_3_not_a_failed_checks_1(tmp_path: Path) -> None:
    (tmp_path / "crashing_teacher.py").write_text(_CRASHING_TEACHER, encoding="utf-8")
    (tmp_path / "r.yaml").write_text(
        "teacher: {entrypoint: 'crashing_teacher:build'}\nstudent: {arch: resnet8}\n"
        "method: {name: kd}\ntrain: {epochs: 1, device: cpu}\n",
        encoding="utf-8",
    )
    result = _compress_with_modules_from(tmp_path, "distill", "r.yaml")
    assert result.returncode == 3, result.stderr
    assert "Traceback" in result.stderr and "boom in the user's teacher" in result.stderr
    last = result.stderr.rstrip().splitlines()[-1]
    assert last.startswith("error: compress crashed (RuntimeError: boom in the user's teacher)")
    assert not (tmp_path / "runs").exists()


def test_a_data_folder_this_user_may_not_enter_is_bad_input_not_a_crash() -> None:
    """Path.is_file raises on a folder it may not search (EACCES): `recipe validate`,
    `teacher` and `distill` crashed with a traceback and exit 3 on a CIFAR root or a
    teacher's folder another user owns."""
    with open_folder() as folder:
        data = folder / "data"
        make_cifar10(data)
        data.chmod(0o700)  # root's own: nobody may not enter it
        recipe = folder / "locked.yaml"
        recipe.write_text(
            "student: {arch: resnet8}\n"
            f"data: {{name: cifar10, root: {data}}}\n"
            "train: {epochs: 1, device: cpu}\n"
        )
        said = compress_as_nobody(folder, "recipe", "validate", str(recipe))
        refused = one_error_line(said)
        assert refused.startswith(f"error: {data}/")
        assert "Permission denied; give this user access to it" in refused

        teacher = data / "teacher.pt"
        teacher.write_bytes(b"weights")
        recipe.write_text(
            f"teacher: {{arch: resnet20, checkpoint: {teacher}}}\n"
            "student: {arch: resnet8}\nmethod: {name: kd}\n"
        )
        said = compress_as_nobody(folder, "recipe", "validate", str(recipe))
        assert one_error_line(said) == (
            f"error: {teacher}: Permission denied; give this user access to it (read, or write "
            "where compress writes) and to the folders above it"
        )


def test_a_users_export_py_on_the_module_path_is_named_not_a_crash(tmp_path: Path) -> None:
    """`PYTHONPATH=. compress export` (as entrypoint recipes have users set it) beside an
    export.py, a common script name: "compress crashed ... a bug", exit 3."""
    (tmp_path / "export.py").write_text("")
    done = _compress_with_modules_from(tmp_path, "export", "runs/none")
    assert (done.returncode, done.stderr) == (
        2,
        f"error: {tmp_path / 'export.py'} stands in for compressor's `export` package, as its "
        "folder comes first on the module path (PYTHONPATH, or the working folder); rename "
        "that file, or leave its folder out of PYTHONPATH\n",
    )


def _compress_with_modules_from(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`compress ARGS` run from `folder`, with `folder` on PYTHONPATH (a user's modules)."""
    return subprocess.run(
        [sys.executable, "-m", "compressor", *args],
        cwd=folder,
        env={**os.environ, "PYTHONPATH": str(folder)},
        capture_output=True,
        text=True,
        timeout=300,
    )
