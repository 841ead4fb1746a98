"""benchmarks/arguments.py: the flag checks the timing scripts share, refused in one
argparse line (exit 2) before any worker starts."""

from __future__ import annotations

from pathlib import Path

import int8
import pytest
import quality
import step_profile
import throughput


@pytest.mark.parametrize(
    ("main", "argv", "message"),
    [
        (throughput.parse_args, ["--steps", "0"], "argument --steps: 0: must be at least 1"),
        (throughput.parse_args, ["--warmup", "-1"], "argument --warmup: -1: must be at least 0"),
        (step_profile.main, ["--repeats", "0"], "argument --repeats: 0: must be at least 1"),
        (int8.parse_args, ["runs/x", "--repeats", "0"], "--repeats: 0: must be at least 1"),
        (throughput.parse_args, ["--steps", "two"], "argument --steps: invalid count value: 'two'"),
        # Batch norm cannot normalise a batch of one: a worker's traceback, exit 1.
        (throughput.parse_args, ["--batch-size", "1"], "--batch-size: 1: must be at least 2"),
        (
            throughput.parse_args,
            ["--torchdistill-batch-size", "1"],
            "--torchdistill-batch-size: 1: must be at least 2",
        ),
        (step_profile.main, ["--batch-size", "1"], "--batch-size: 1: must be at least 2"),
    ],
)
def test_a_count_below_its_minimum_is_one_line(
    main: object, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--steps 0 divided by zero, --repeats 0 raised StatisticsError or KeyError."""
    with pytest.raises(SystemExit) as stopped:
        main(argv)  # type: ignore[operator]
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_data_or_teacher_is_named_before_any_worker_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """throughput.py printed a worker's traceback after the other methods' timings."""
    with pytest.raises(SystemExit):
        throughput.parse_args(["--data-root", str(tmp_path)])
    assert f"--data-root {tmp_path}: no cifar-10-batches-py folder in it" in capsys.readouterr().err
    (tmp_path / "cifar-10-batches-py").mkdir()
    missing = tmp_path / "teacher.th"
    argv = ["--data-root", str(tmp_path), "--teacher-checkpoint", str(missing)]
    with pytest.raises(SystemExit):
        step_profile.main(argv)
    assert f"--teacher-checkpoint {missing}: no such file" in capsys.readouterr().err


def test_the_default_teacher_file_follows_the_teacher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--teacher resnet20` kept ResNet-56's file, which then failed to load in every worker;
    the folder is $COMPRESSOR_TEACHERS's, as for quality.py."""
    monkeypatch.setenv("COMPRESSOR_TEACHERS", str(tmp_path / "shared" / "teachers"))
    teacher = tmp_path / "shared" / "teachers" / "resnet20-12fca82f.th"
    teacher.parent.mkdir(parents=True)
    teacher.touch()
    (tmp_path / "data" / "cifar-10-batches-py").mkdir(parents=True)
    monkeypatch.setenv("COMPRESSOR_DATA_ROOT", str(tmp_path / "data"))
    for script in (throughput, quality):
        args = script.parse_args(["--teacher", "resnet20"])
        assert (args.teacher_checkpoint, args.data_root) == (teacher, tmp_path / "data")


def test_quality_names_missing_data_before_it_writes_a_recipe(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The run's own refusal said to edit a recipe the script writes again on every run."""
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stopped:
        quality.main(["--data-root", str(tmp_path), "--out", str(out)])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert f"--data-root {tmp_path}: no cifar-10-batches-py folder in it" in error
    assert "$COMPRESSOR_DATA_ROOT" in error
    assert not out.exists()
