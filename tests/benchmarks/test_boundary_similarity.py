"""benchmarks/boundary_similarity.py: a model measured against itself follows every boundary
sample exactly; real distilled runs (embedded digits) give a table; a bad run is one line."""

from __future__ import annotations

import re
from pathlib import Path

import boundary_similarity
import pytest
import torch
import yaml
from typer.testing import CliRunner

from compressor.cli import app
from compressor.methods.boundary import normalized_bounds
from compressor.recipe import AttackConfig
from export.run_inputs import read_run, read_splits, read_teacher

DATA = {"max_train_samples": 640, "max_test_samples": 300}


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A ResNet-8 teacher trained on digits, and a KD and an AMKD student distilled from it
    over two seeds' worth of run names (`kd-s0`, `kd-s1`, `amkd-s0`); `other-s0` is distilled
    from a second teacher (another seed)."""
    folder = tmp_path_factory.mktemp("boundary-runs")
    train = {"epochs": 3, "batch_size": 64, "device": "cpu"}
    output = {"dir": str(folder)}
    for teacher, seed in (("teacher", 0), ("other-teacher", 1)):
        recipe = _write(
            folder / f"{teacher}.yaml",
            {
                "student": {"arch": "resnet8"},
                "data": DATA,
                "train": {**train, "seed": seed},
                "output": output,
            },
        )
        assert CliRunner().invoke(app, ["train", str(recipe)]).exit_code == 0
    made = {}
    for name, method, seed in (
        ("kd-s0", "kd", 0),
        ("kd-s1", "kd", 1),
        ("amkd-s0", "amkd", 0),
        ("other-s0", "kd", 0),
    ):
        teacher = "other-teacher" if name.startswith("other") else "teacher"
        recipe = _write(
            folder / f"{name}.yaml",
            {
                "teacher": {"arch": "resnet8", "checkpoint": str(folder / teacher / "student.pt")},
                "student": {"arch": "resnet8"},
                "method": {"name": method},
                "data": DATA,
                "train": {**train, "seed": seed},
                "output": output,
            },
        )
        result = CliRunner().invoke(app, ["distill", str(recipe)])
        assert result.exit_code == 0, result.output
        made[name] = folder / name
    return made


def test_the_teacher_against_itself_follows_every_boundary_sample(runs: dict[str, Path]) -> None:
    inputs = read_run(runs["kd-s0"])
    teacher = read_teacher(inputs)
    _, test = read_splits(inputs, with_train=False)
    images = torch.from_numpy(test.batch(0, 200))
    labels = torch.from_numpy(test.labels[:200]).long()
    bounds = normalized_bounds(test.mean, test.std)
    same = boundary_similarity.measure(teacher, teacher, images, labels, AttackConfig(), bounds)
    assert same.images > 100 and same.teacher_landed > 10
    assert same.follows == 100.0 and same.stays == 0.0 and same.margin_closed >= 1.0
    assert same.cosine == pytest.approx(1.0) and same.magnitude == pytest.approx(1.0)
    assert same.distance_ratio == pytest.approx(1.0)
    # The teacher's own attack: its crossing lies on its step, where k is less sure than at the
    # step's end; a property of teacher, images and targets alone, not of the model measured.
    attack = same.teacher_attack
    assert 0.0 < attack.crossing_fraction <= 1.0
    assert 0.0 < attack.bisected_target_probability <= attack.attack_target_probability < 1.0
    student = boundary_similarity.measure(
        teacher, inputs.student, images, labels, AttackConfig(), bounds
    )
    assert student.teacher_attack == attack
    longer = AttackConfig(max_steps=30)
    other = boundary_similarity.measure(teacher, inputs.student, images, labels, longer, bounds)
    assert other.follows < 100.0 and other.margin_closed < same.margin_closed
    assert other.cosine < 0.99 and other.magnitude < 0.99


def test_runs_are_tabulated_one_row_per_variant(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [str(runs[name]) for name in ("kd-s0", "kd-s1", "amkd-s0")]
    # The teacher itself as the reference: the row that must follow every sample exactly.
    reference = f"resnet8={runs['kd-s0'].parent / 'teacher' / 'student.pt'}"
    assert boundary_similarity.main([*argv, "--images", "100", "--reference", reference]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    names = [row.split(" | ")[0] for row in rows[1:]]
    assert names == ["| kd", "| amkd", "| resnet8 (reference)"]
    kd = rows[1].split(" | ")
    assert kd[1:3] == ["3", "2"] and " ± " in kd[3] and " ± " in kd[4]
    assert float(kd[4].split(" ± ")[0]) < 100.0  # another network: not every sample followed
    # Every row on the same images: those the teacher and all three models get right.
    assert len({row.split(" | ")[-2] for row in rows[1:]}) == 1
    itself = rows[-1].split(" | ")
    assert itself[1:3] == ["—", "1"]
    assert itself[4:6] == ["100.0", "0.0"] and float(itself[6]) >= 1.0
    assert itself[7:9] == ["1.000", "1.000"]
    assert "The training attack itself, unbisected, on the teacher" in out


def test_a_run_given_twice_is_refused_and_the_header_says_how_many_images_were_read(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Given twice, one run made a row of 2 runs with a ± 0.00 spread; and --images above the
    test set's size was echoed as read."""
    twice = [str(runs["kd-s0"]), str(runs["kd-s0"])]
    with pytest.raises(SystemExit) as refused:
        boundary_similarity.main([*twice, "--images", "8"])
    assert refused.value.code == 2
    assert f"a run given twice: {runs['kd-s0']}" in capsys.readouterr().err
    assert (
        boundary_similarity.main([str(runs["kd-s0"]), "--images", "100000", "--max-steps", "1"])
        == 0
    )
    read = re.search(r"Of the first ([\d,]+) test images", capsys.readouterr().out)
    assert read is not None and int(read[1].replace(",", "")) < 100_000


def test_a_missing_run_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert boundary_similarity.main([str(tmp_path / "absent")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("error: ")


def test_a_run_without_a_teacher_is_refused_in_one_line(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    teacher_run = runs["kd-s0"].parent / "teacher"  # `compress train`: no teacher of its own
    assert boundary_similarity.main([str(teacher_run)]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert errors == [
        f"error: {teacher_run}: trained without a teacher (`compress train`); give runs whose "
        "recipe has one (`compress distill`, or quality.py's, CE included)"
    ]


def test_runs_of_two_budgets_get_a_row_each() -> None:
    attack = boundary_similarity.Overshoot(0.2, 0.99, 0.5)
    measured = boundary_similarity.Similarity(
        100, 80.0, 70.0, 10.0, 85.0, 0.1, 0.05, 0.5, 0.6, attack
    )
    results = [boundary_similarity.RunResult("kd", epochs, 70.0, measured) for epochs in (4, 15, 4)]
    rows = boundary_similarity.table(results)[2:]
    assert [row.split(" | ")[1:3] for row in rows] == [["4", "2"], ["15", "1"]]


def test_runs_of_two_teachers_are_refused(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert boundary_similarity.main([str(runs["kd-s0"]), str(runs["other-s0"])]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert errors == [
        f"error: {runs['other-s0']}: distilled from another teacher than {runs['kd-s0']}; "
        "compare the runs of one teacher"
    ]


@pytest.mark.parametrize(
    ("reference", "says"),
    [
        ("resnet8=/no/such/file.pt", "--reference resnet8=/no/such/file.pt: "),
        ("nosuchnet=/no/such/file.pt", "--reference nosuchnet=/no/such/file.pt: "),
        ("resnet8=${NO_SUCH_VARIABLE}/t.pt", "--reference resnet8=${NO_SUCH_VARIABLE}/t.pt: "),
    ],
)
def test_a_bad_reference_is_one_error_line(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str], reference: str, says: str
) -> None:
    assert boundary_similarity.main([str(runs["kd-s0"]), "--reference", reference]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith(f"error: {says}")
