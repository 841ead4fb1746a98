"""`compress gate` through the real CLI, on real run directories.

The runs come from the real `compress train` (no teacher) and `compress distill` on digits.
Their export reports are written here from the exporter's documented schema, with the numbers
derived from each run's own report.json and varied per test to make each rule pass or fail:
they are the gate's real input file, written by the test instead of by the exporter.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from filelock import FileLock
from typer.testing import CliRunner

from compressor.cli import app
from compressor.errors import CompressorWarning, UserError
from compressor.gate import evaluate_gate
from compressor.io import lock_or_refuse, shared_lock_or_refuse
from export.latency import NOISY_SPREAD
from tests.cli_helpers import CliResult, run_cli, with_recipe
from tests.read_only import immutable

RULES = ["student_accuracy", "export_accuracy", "export_agreement", "speedup"]
# The distilled run's own acceptance criteria; each differs from the GateConfig default so a
# test can tell which one was applied.
RECIPE_GATE = {"max_drop": 90.0, "max_export_drop": 1.0, "min_agreement": 99.0, "min_speedup": 2.0}

# How export and the gate word a stopped run's status.
STOPPED = {"interrupted": "was interrupted", "failed": "failed"}


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def made_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A resnet8 trained without a teacher (3 epochs on 640 images, ~85 %), then distilled
    into a student stopped after 2 steps (~15 %): a real run with and one without a teacher."""
    workdir = tmp_path_factory.mktemp("gate-runs")
    data = {"max_train_samples": 640, "max_test_samples": 300}
    plain = write_yaml(
        workdir / "plain.yaml",
        {
            "student": {"arch": "resnet8"},
            "data": data,
            "train": {"epochs": 3, "batch_size": 64, "device": "cpu"},
            "output": {"dir": str(workdir)},
        },
    )
    result = CliRunner().invoke(app, ["train", str(plain)])
    assert result.exit_code == 0, result.output
    distilled = write_yaml(
        workdir / "kd.yaml",
        {
            "teacher": {"arch": "resnet8", "checkpoint": str(workdir / "plain" / "student.pt")},
            "student": {"arch": "resnet8"},
            "method": {"name": "kd"},
            "data": data,
            "train": {"epochs": 1, "batch_size": 64, "device": "cpu", "max_steps_per_epoch": 2},
            "gate": RECIPE_GATE,
            "output": {"dir": str(workdir)},
        },
    )
    result = CliRunner().invoke(app, ["distill", str(distilled)])
    assert result.exit_code == 0, result.output
    return {"kd": workdir / "kd", "plain": workdir / "plain"}


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def accuracies(run: Path) -> tuple[float, float | None]:
    """(student, teacher) top-1 from the run's report.json; teacher None without one."""
    results = read_json(run / "report.json")["results"]
    teacher = results["teacher"]
    return results["student"]["accuracy"], teacher["accuracy"] if teacher else None


def latency(batch_1_ms: float, batch_64_ms: float) -> dict[str, dict[str, float | int]]:
    def timing(batch: int, p50: float) -> dict[str, float | int]:
        return {
            "p50_ms": p50,
            "p90_ms": p50 * 1.1,
            "p95_ms": p50 * 1.2,
            "p99_ms": p50 * 1.3,
            "mean_ms": p50 * 1.05,
            "iqr_ms": p50 * 0.02,
            "cv": 0.02,
            "throughput_ips": batch * 1000 / p50,
            "runs": 100,
        }

    return {"1": timing(1, batch_1_ms), "64": timing(64, batch_64_ms)}


def parity(agreement: float) -> dict[str, Any]:
    return {
        "max_abs_diff": 2e-5,
        "mean_abs_diff": 3e-6,
        "top1_agreement": agreement,
        "tolerance_max_abs": 1e-4,
        "min_agreement": 99.0,
        "passed": True,
    }


def write_export_report(
    run: Path,
    *,
    export_drop: float = 0.1,
    agreement: float = 99.9,
    teacher_ms: tuple[float, float] = (0.75, 15.0),
    fp16: bool = False,
) -> None:
    """An export report for `run` as the exporter writes it: PyTorch and ONNX Runtime fp32
    rows for the student (and the teacher, when the run has one). The student's p50 is 0.5 ms
    at batch 1 and 5 ms at batch 64, so the default speedups are 1.5× and 3×. `fp16` adds an
    ONNX Runtime fp16 student only, as the exporter does: 0.2 points lower, twice as fast."""
    report = read_json(run / "report.json")
    student, teacher = accuracies(run)
    rows: list[dict[str, Any]] = []
    models = [("student", student, (0.5, 5.0))]
    if teacher is not None:
        models.append(("teacher", teacher, teacher_ms))
    for model, accuracy, timings in models:
        rows.append(
            {
                "model": model,
                "backend": "pytorch",
                "precision": "fp32",
                "device": "cpu",
                "file": None,
                "size_bytes": None,
                "accuracy": accuracy,
                "parity": None,
                "latency": latency(timings[0] * 2, timings[1] * 2),
            }
        )
        rows.append(
            {
                "model": model,
                "backend": "onnxruntime",
                "precision": "fp32",
                "device": "cpu",
                "file": f"{model}.onnx",
                "size_bytes": 300_000,
                "accuracy": accuracy - export_drop if model == "student" else accuracy,
                "parity": parity(agreement if model == "student" else 100.0),
                "latency": latency(*timings),
            }
        )
    if fp16:
        rows.append(
            {
                **rows[1],
                "precision": "fp16",
                "file": "student.fp16.onnx",
                "accuracy": student - 0.2,
                "parity": parity(99.8),
                "latency": latency(0.25, 2.5),
            }
        )
    speedup = {"onnxruntime": {"1": teacher_ms[0] / 0.5, "64": teacher_ms[1] / 5.0}}
    export = {
        "schema_version": 1,
        "run": run.name,
        "recipe_sha256": report["recipe_sha256"],
        "student_sha256": hashlib.sha256((run / "student.pt").read_bytes()).hexdigest(),
        "dataset": "digits",
        "eval_samples": report["results"]["test_samples"],
        "results": rows,
        "speedup": speedup if teacher is not None else {},
    }
    (run / "export").mkdir(exist_ok=True)
    (run / "export" / "export_report.json").write_text(json.dumps(export), encoding="utf-8")


@pytest.fixture
def kd_run(made_runs: dict[str, Path], tmp_path: Path) -> Path:
    """A private copy of the distilled run, so each test can write its own export report."""
    run = Path(shutil.copytree(made_runs["kd"], tmp_path / "kd"))
    write_export_report(run)
    return run


@pytest.fixture
def plain_run(made_runs: dict[str, Path], tmp_path: Path) -> Path:
    run = Path(shutil.copytree(made_runs["plain"], tmp_path / "plain"))
    write_export_report(run)
    return run


def row(result: CliResult, rule: str) -> list[str]:
    """The cells (rule, measured, threshold, result) of a rule's first table line."""
    for line in result.stdout.splitlines():
        cells = [cell.strip() for cell in line.strip("│┃ ").split("│")]
        if cells[0] == rule:
            return cells[:4]
    raise AssertionError(f"no table row for {rule}:\n{result.stdout}")


def test_all_rules_pass(kd_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    student, teacher = accuracies(kd_run)
    result = run_cli(capsys, "gate", str(kd_run))
    assert result.code == 0, result.stdout + result.stderr
    assert [row(result, rule)[3] for rule in RULES] == ["PASS"] * 4
    bar = f"≥ {max(teacher - 90, 0):.2f} %"  # the recipe's max_drop 90; never below 0 %
    assert row(result, "student_accuracy")[1:3] == [f"{student:.2f} %", bar]
    detail = f"teacher {teacher:.2f} % − max_drop 90"  # the table may wrap it
    assert evaluate_gate(kd_run).rules[0].detail == detail
    # The speedup is judged at the largest timed batch: 15 / 5 ms, not 0.75 / 0.5 ms.
    assert row(result, "speedup")[1:3] == ["3.00×", "≥ 2.00×"]
    assert "gate passed" in result.stdout
    assert result.stderr == ""


def test_recipe_gate_section_applies_without_flags(
    kd_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Drop 0.8 and agreement 99.2 fail the defaults (0.5, 99.5) but pass the recipe's."""
    student, _ = accuracies(kd_run)
    write_export_report(kd_run, export_drop=0.8, agreement=99.2)
    result = run_cli(capsys, "gate", str(kd_run))
    assert result.code == 0, result.stdout
    assert row(result, "export_accuracy")[1:] == [
        f"{student - 0.8:.2f} %",
        f"≥ {student - 1.0:.2f} %",
        "PASS",
    ]
    assert row(result, "export_agreement")[1:] == ["99.20 %", "≥ 99.00 %", "PASS"]


def test_flags_override_the_recipe(kd_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    student, _ = accuracies(kd_run)
    write_export_report(kd_run, export_drop=0.8, agreement=99.2)
    result = run_cli(
        capsys,
        "gate",
        str(kd_run),
        "--max-export-drop",
        "0.5",
        "--min-agreement",
        "99.5",
        "--min-speedup",
        "4",
    )
    assert result.code == 1
    assert row(result, "export_accuracy")[2:] == [f"≥ {student - 0.5:.2f} %", "FAIL"]
    assert row(result, "export_agreement")[2:] == ["≥ 99.50 %", "FAIL"]
    assert row(result, "speedup")[1:] == ["3.00×", "≥ 4.00×", "FAIL"]
    assert row(result, "student_accuracy")[3] == "PASS"
    assert "gate FAILED: export_accuracy, export_agreement, speedup" in result.stdout


@pytest.mark.parametrize(
    ("rule", "export", "measured"),
    [
        ("student_accuracy", {}, "{student:.2f} %"),
        ("export_accuracy", {"export_drop": 1.5}, "{exported:.2f} %"),
        ("export_agreement", {"agreement": 98.75}, "98.75 %"),
        ("speedup", {"teacher_ms": (0.75, 7.5)}, "1.50×"),
    ],
)
def test_each_rule_can_fail(
    kd_run: Path,
    capsys: pytest.CaptureFixture[str],
    rule: str,
    export: dict[str, Any],
    measured: str,
) -> None:
    student, teacher = accuracies(kd_run)
    assert teacher is not None and teacher - student > 10, "the fixture's student must trail"
    write_export_report(kd_run, **export)
    flags = ["--max-drop", f"{(teacher - student) / 2:.3f}"] if rule == "student_accuracy" else []
    result = run_cli(capsys, "gate", str(kd_run), *flags)
    assert result.code == 1, result.stdout + result.stderr
    cells = row(result, rule)
    assert cells[1] == measured.format(student=student, exported=student - 1.5)
    assert cells[3] == "FAIL"
    assert all(row(result, other)[3] == "PASS" for other in RULES if other != rule)
    assert f"gate FAILED: {rule}\n" in result.stdout
    assert result.stderr == ""


def test_speedup_batch_flag_picks_the_batch(
    kd_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_cli(capsys, "gate", str(kd_run), "--speedup-batch", "1")
    assert result.code == 1
    assert row(result, "speedup")[1:] == ["1.50×", "≥ 2.00×", "FAIL"]


def test_a_speedup_from_noisy_timings_says_so(
    kd_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The verdict stands, but its detail tells the CI log that the timing was not quiet."""
    path = kd_run / "export" / "export_report.json"
    export = json.loads(path.read_text())
    teacher = next(r for r in export["results"] if r["model"] == "teacher" and r["file"])
    teacher["latency"]["64"]["iqr_ms"] = 0.4 * teacher["latency"]["64"]["p50_ms"]
    path.write_text(json.dumps(export))
    junit = kd_run / "gate.xml"
    result = run_cli(capsys, "gate", str(kd_run), "--min-speedup", "4", "--junit", str(junit))
    assert result.code == 1
    assert "noisy timing (teacher IQR / p50 0.40 &gt; 0.1)" in junit.read_text()
    quiet = run_cli(capsys, "gate", str(kd_run), "--speedup-batch", "1", "--min-speedup", "1")
    assert quiet.code == 0
    assert "noisy timing" not in quiet.stdout


def teacher_onnx_row(report: dict[str, Any]) -> dict[str, Any]:
    """The export report's ONNX Runtime row of the teacher: the speedup's denominator."""
    return next(r for r in report["results"] if r["model"] == "teacher" and r["file"])


def test_a_timing_just_above_the_noise_bar_is_said_to_be_noisy(kd_run: Path) -> None:
    """A spread a fifth above the bar (0.12 against 0.1) is noisy too: the note must not wait
    for timings twice as spread as the bar allows."""
    spread = 1.2 * NOISY_SPREAD

    def noisier(report: dict[str, Any]) -> None:
        timing = teacher_onnx_row(report)["latency"]["64"]
        timing["iqr_ms"] = spread * timing["p50_ms"]

    edit_json(EXPORT, noisier)(kd_run)
    speedup = next(rule for rule in evaluate_gate(kd_run).rules if rule.name == "speedup")
    assert f"; noisy timing (teacher IQR / p50 {spread:.2f} > {NOISY_SPREAD:g})" in speedup.detail


def test_a_report_from_before_the_interquartile_range_was_kept_is_not_called_noisy(
    kd_run: Path,
) -> None:
    """Such a report's timings cannot be judged by the spread: no note, no refusal."""

    def older(report: dict[str, Any]) -> None:
        for result in report["results"]:
            for timing in result["latency"].values():
                del timing["iqr_ms"]
                timing["cv"] = 0.9

    edit_json(EXPORT, older)(kd_run)
    speedup = next(rule for rule in evaluate_gate(kd_run).rules if rule.name == "speedup")
    assert "noisy" not in speedup.detail


def test_a_teacher_file_that_failed_parity_is_named_in_the_speedup_rule(kd_run: Path) -> None:
    """The export warns and exits 0 when the teacher's file fails parity (only the student
    ships), but the speedup is then over a graph that computes something else: the detail
    says so, lest a gate job that sees only the reports trust it."""
    edit_json(
        EXPORT,
        lambda report: teacher_onnx_row(report)["parity"].update(top1_agreement=97.0, passed=False),
    )(kd_run)
    speedup = next(rule for rule in evaluate_gate(kd_run).rules if rule.name == "speedup")
    assert (
        "; the teacher's onnxruntime fp32 file failed parity with PyTorch (max |Δ| "
        in speedup.detail
    )
    assert "top-1 agreement 97.00 %), so its timing may not be the teacher's" in speedup.detail


def test_the_judged_file_must_be_the_one_the_export_measured(
    kd_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A truncated or swapped student.onnx is bad input; a missing one (a gate job given the
    reports alone) is judged from the report, and the verdict says so."""
    model = kd_run / "export" / "student.onnx"
    model.write_bytes(b"the exported model")
    path = kd_run / "export" / "export_report.json"
    export = json.loads(path.read_text())
    judged = export["results"][1]
    assert (judged["model"], judged["backend"]) == ("student", "onnxruntime")
    judged.update(file="export/student.onnx", sha256=hashlib.sha256(model.read_bytes()).hexdigest())
    path.write_text(json.dumps(export))
    assert run_cli(capsys, "gate", str(kd_run)).code == 0

    model.write_bytes(b"the exported mo")
    result = run_cli(capsys, "gate", str(kd_run))
    assert result.code == 2
    assert "student.onnx: not the file the export measured" in result.stderr

    model.unlink()
    junit = kd_run / "gate.xml"
    result = run_cli(capsys, "gate", str(kd_run), "--junit", str(junit))
    assert result.code == 0
    note = f"{model} is not here: judged from the export report alone"
    assert f"gate passed; {note}\n" in result.stdout  # with the verdict, not only in a detail
    properties = ET.parse(junit).getroot().iter("property")
    assert ("note", note) in {(p.get("name"), p.get("value")) for p in properties}


def test_a_teacher_trained_again_since_the_export_is_said_with_the_verdict(
    kd_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`compress export` refuses such a run; the gate still judges it (its figures are of the
    teacher the student was distilled from), and says the teacher file has changed."""
    teacher = tmp_path / "teacher.pt"
    teacher.write_bytes(b"the teacher's weights")
    path = kd_run / "export" / "export_report.json"
    export = json.loads(path.read_text())
    [row] = [r for r in export["results"] if (r["model"], r["backend"]) == ("teacher", "pytorch")]
    row.update(file=str(teacher), sha256=hashlib.sha256(teacher.read_bytes()).hexdigest())
    path.write_text(json.dumps(export))
    assert run_cli(capsys, "gate", str(kd_run)).stdout.count("gate passed\n") == 1

    teacher.write_bytes(b"the teacher's weights, trained again")
    result = run_cli(capsys, "gate", str(kd_run))
    assert result.code == 0
    now = hashlib.sha256(teacher.read_bytes()).hexdigest()
    assert (
        f"gate passed; the teacher {teacher} has changed since the export (sha256 "
        f"{row['sha256'][:12]}, now {now[:12]}): judged against the teacher the student was "
        "distilled from\n"
    ) in result.stdout
    teacher.unlink()  # a gate job given the run alone
    assert "gate passed\n" in run_cli(capsys, "gate", str(kd_run)).stdout


def test_a_replaced_fp16_file_is_re_exported_with_its_flag(
    kd_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The hint used to be a bare `compress export RUN`, which deletes the fp16 student."""
    write_export_report(kd_run, fp16=True)
    model = kd_run / "export" / "student.fp16.onnx"
    model.write_bytes(b"the exported model")
    path = kd_run / "export" / "export_report.json"
    export = json.loads(path.read_text())
    [judged] = [r for r in export["results"] if (r["model"], r["precision"]) == ("student", "fp16")]
    judged.update(file="export/student.fp16.onnx", sha256="0" * 64)
    path.write_text(json.dumps(export))
    result = run_cli(capsys, "gate", str(kd_run), "--precision", "fp16")
    assert result.code == 2 and "not the file the export measured" in result.stderr
    assert result.stderr.rstrip().endswith(f"re-export with `compress export {kd_run} --fp16`")


def test_fp16_student_is_compared_with_the_fp32_teacher(
    kd_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The exporter converts only the student to fp16; the teacher baseline stays fp32."""
    student, _ = accuracies(kd_run)
    write_export_report(kd_run, fp16=True)
    result = run_cli(capsys, "gate", str(kd_run), "--precision", "fp16")
    assert result.code == 0, result.stdout + result.stderr
    assert row(result, "export_accuracy")[1] == f"{student - 0.2:.2f} %"
    assert row(result, "export_agreement")[1] == "99.80 %"
    assert row(result, "speedup")[1] == "6.00×"
    detail = evaluate_gate(kd_run, precision="fp16").rules[3].detail
    assert "teacher fp32 p50 15 ms / student fp16 p50 2.5 ms" in detail


def test_an_int8_student_is_compared_with_the_int8_teacher(kd_run: Path) -> None:
    """`--int8` quantises the teacher too: its INT8 row is the baseline, not its fp32 one
    (which would read 6×)."""
    write_export_report(kd_run)
    path = kd_run / "export" / "export_report.json"
    export = read_json(path)
    fp32 = {(r["model"], r["backend"], r["precision"]): r for r in export["results"]}
    for model, timings in (("student", (0.25, 2.5)), ("teacher", (0.5, 10.0))):
        export["results"].append(
            {
                **fp32[(model, "onnxruntime", "fp32")],
                "precision": "int8",
                "file": f"{model}.int8.onnx",
                "latency": latency(*timings),
            }
        )
    path.write_text(json.dumps(export))
    speedup = evaluate_gate(kd_run, precision="int8").rules[3]
    assert speedup.measured == pytest.approx(4.0)
    assert "teacher int8 p50 10 ms / student int8 p50 2.5 ms" in speedup.detail


def test_reduced_precision_is_held_to_the_exports_agreement_bar(
    kd_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """fp16 at 99.2 % agreement passes the export's 99.0 % bar, not gate.min_agreement's 99.5 %,
    unless --min-agreement asks for more."""
    write_export_report(kd_run, fp16=True)
    report_path = kd_run / "export" / "export_report.json"
    export = read_json(report_path)
    export["results"][-1]["parity"] = parity(99.2)
    report_path.write_text(json.dumps(export))
    result = run_cli(capsys, "gate", str(kd_run), "--precision", "fp16")
    assert result.code == 0, result.stdout + result.stderr
    assert row(result, "export_agreement")[1:] == ["99.20 %", "≥ 99.00 %", "PASS"]
    result = run_cli(capsys, "gate", str(kd_run), "--precision", "fp16", "--min-agreement", "99.5")
    assert result.code == 1
    assert row(result, "export_agreement")[1:] == ["99.20 %", "≥ 99.50 %", "FAIL"]


def test_a_file_the_exports_parity_check_failed_is_named_in_the_agreement_rule(
    kd_run: Path,
) -> None:
    """The export holds fp32 to 99.9 % agreement and 1e-4, the gate to its own 99.5 %: the
    verdict is the gate's, and the detail says the export rejected the file."""
    edit_json(
        EXPORT,
        lambda report: report["results"][1]["parity"].update(top1_agreement=99.7, passed=False),
    )(kd_run)
    result = evaluate_gate(kd_run)
    agreement = next(rule for rule in result.rules if rule.name == "export_agreement")
    assert agreement.status == "PASS"
    assert agreement.detail.endswith("; the export's own parity check failed this file")
    write_export_report(kd_run, agreement=99.7)
    agreement = next(
        rule for rule in evaluate_gate(kd_run).rules if rule.name == "export_agreement"
    )
    assert "parity check failed" not in agreement.detail


def test_logits_that_are_not_finite_fail_the_agreement_rule_whatever_they_agree_on(
    kd_run: Path,
) -> None:
    """Logits of NaN all argmax to class 0: an exported file (or a PyTorch student) that
    gives them "agreed" 100 % and passed."""
    edit_json(
        EXPORT,
        lambda report: report["results"][1]["parity"].update(
            max_abs_diff=None, top1_agreement=100.0, passed=False
        ),
    )(kd_run)
    result = evaluate_gate(kd_run)
    agreement = next(rule for rule in result.rules if rule.name == "export_agreement")
    assert (agreement.status, result.passed) == ("FAIL", False)
    assert agreement.detail.endswith(
        "vs PyTorch fp32: logits NaN or infinite (max |Δ| not finite), so no top-1 can be compared"
    )


def test_comparison_tolerates_float32_rounding(
    kd_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """199 of 200 samples agree: 99.5 %, which float32 arithmetic reports as 99.4999993 %."""
    write_export_report(kd_run, agreement=99.49999928474426)
    assert run_cli(capsys, "gate", str(kd_run), "--min-agreement", "99.5").code == 0
    write_export_report(kd_run, agreement=99.49)
    assert run_cli(capsys, "gate", str(kd_run), "--min-agreement", "99.5").code == 1


def test_run_without_teacher_skips_the_teacher_rule(
    plain_run: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    student, teacher = accuracies(plain_run)
    assert teacher is None
    junit = tmp_path / "reports" / "gate.xml"
    result = run_cli(capsys, "gate", str(plain_run), "--junit", str(junit))
    assert result.code == 0, result.stdout + result.stderr
    assert row(result, "student_accuracy") == ["student_accuracy", f"{student:.2f} %", "—", "SKIP"]
    assert row(result, "speedup")[3] == "SKIP"
    assert "run has no teacher" in result.stdout
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("4", "0", "2")
    skipped = {case.get("name"): case.find("skipped") for case in suite.iter("testcase")}
    assert skipped["student_accuracy"] is not None and skipped["speedup"] is not None
    assert "no teacher" in skipped["student_accuracy"].get("message", "")
    assert skipped["export_accuracy"] is None


@pytest.mark.parametrize(
    ("flags", "fragments"),
    [
        (["--max-drop", "1"], ["--max-drop compares the student with its teacher"]),
        (["--min-speedup", "1.5"], ["no teacher onnxruntime timing, which min_speedup needs"]),
        # No batch was timed for a teacher, so --speedup-batch names an untimed batch.
        (["--speedup-batch", "64"], ["--speedup-batch 64: ", "drop --speedup-batch"]),
        (["--speedup-batch", "7"], ["--speedup-batch 7: ", "no teacher onnxruntime timing"]),
    ],
)
def test_teacher_rules_asked_of_a_run_without_teacher_are_refused(
    plain_run: Path, capsys: pytest.CaptureFixture[str], flags: list[str], fragments: list[str]
) -> None:
    result = run_cli(capsys, "gate", str(plain_run), *flags)
    assert result.code == 2
    assert all(fragment in result.stderr for fragment in fragments), result.stderr
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize("status", ["running", "interrupted", "failed"])
def test_unfinished_run_is_refused_with_its_resume_command(
    plain_run: Path, capsys: pytest.CaptureFixture[str], status: str
) -> None:
    """A run trained without a teacher is resumed with `compress train`, not `distill`.
    ("running" with its lock held: a process is training it now.)"""
    edit_json("manifest.json", lambda manifest: manifest.update(status=status))(plain_run)
    with FileLock(plain_run / ".lock"):
        result = run_cli(capsys, "gate", str(plain_run))
    assert result.code == 2
    if status == "running":
        assert result.stderr == (
            f"error: {plain_run}: the run is still being trained (a process holds its .lock); "
            "wait for it to end\n"
        )
    else:
        assert result.stderr == with_recipe(
            f"error: {plain_run}: the run {STOPPED[status]}, not completed (manifest.json); "
            "finish it with `compress train RECIPE --resume`\n",
            plain_run,
        )
    assert "gate passed" not in result.stdout


def test_a_stopped_torchrun_run_is_continued_under_torchrun(
    plain_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """In one process a 2-process run goes on only approximately (another process count):
    the advice is the one the training command gave, torchrun with its options as before."""
    edit_json("manifest.json", lambda manifest: manifest.update(status="interrupted", processes=2))(
        plain_run
    )
    result = run_cli(capsys, "gate", str(plain_run))
    assert result.code == 2
    assert result.stderr.endswith(
        with_recipe(
            "finish it with torchrun with its options as before (2 processes), running "
            "`-m compressor train RECIPE --resume`\n",
            plain_run,
        )
    )


def test_a_run_stopped_before_its_first_checkpoint_is_started_again(
    plain_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--resume would find nothing to resume: the way on is --overwrite."""
    edit_json("manifest.json", lambda manifest: manifest.update(status="failed"))(plain_run)
    shutil.rmtree(plain_run / "checkpoints")
    result = run_cli(capsys, "gate", str(plain_run))
    expected = with_recipe("finish it with `compress train RECIPE --overwrite`", plain_run)
    assert expected in result.stderr


def without_min_speedup(run: Path) -> None:
    """Leave the recipe's min_speedup unset, so the speedup rule is skipped."""
    recipe = yaml.safe_load((run / "recipe.yaml").read_text(encoding="utf-8"))
    recipe["gate"]["min_speedup"] = None
    write_yaml(run / "recipe.yaml", recipe)


def test_a_run_moved_elsewhere_may_say_where_its_files_are_now(
    kd_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The recipe check leaves data.root/download, teacher.checkpoint, output, export and gate
    free."""

    def moved(recipe: dict[str, Any]) -> None:
        recipe["data"]["root"] = "/elsewhere/data"
        recipe["data"]["download"] = True
        recipe["teacher"]["checkpoint"] = "/elsewhere/teacher.pt"
        recipe["gate"]["max_drop"] = 95.0

    _, teacher = accuracies(kd_run)
    edit_yaml("recipe.yaml", moved)(kd_run)
    result = run_cli(capsys, "gate", str(kd_run))
    assert result.code == 0, result.stdout + result.stderr
    assert row(result, "student_accuracy")[2] == f"≥ {max(teacher - 95.0, 0):.2f} %"
    assert evaluate_gate(kd_run).rules[0].detail == f"teacher {teacher:.2f} % − max_drop 95"


def test_an_export_report_from_before_student_hashes_is_still_gated(
    kd_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit_json(EXPORT, lambda report: report.pop("student_sha256"))(kd_run)
    assert run_cli(capsys, "gate", str(kd_run)).code == 0


@pytest.mark.parametrize(("flags", "shown"), [([], "3.00×"), (["--speedup-batch", "1"], "1.50×")])
def test_speedup_without_min_speedup_is_shown_not_judged(
    kd_run: Path, capsys: pytest.CaptureFixture[str], flags: list[str], shown: str
) -> None:
    """Unset, min_speedup judges nothing, but the figure is shown: at the largest batch, or
    at the --speedup-batch asked for, which would otherwise be a flag silently ignored."""
    without_min_speedup(kd_run)
    result = run_cli(capsys, "gate", str(kd_run), *flags)
    assert result.code == 0, result.stdout + result.stderr
    assert row(result, "speedup")[1:] == [shown, "—", "SKIP"]
    batch = int(flags[1]) if flags else None
    detail = evaluate_gate(kd_run, speedup_batch=batch).rules[3].detail
    assert detail.startswith("min_speedup is not set, so not judged; onnxruntime batch ")


@pytest.mark.parametrize("name", ["", "reports"])
def test_junit_path_that_is_a_folder_is_refused(
    kd_run: Path,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
) -> None:
    """`--junit ""` names the working directory; neither it nor any folder can be written."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "reports").mkdir()
    result = run_cli(capsys, "gate", str(kd_run), "--junit", name)
    assert result.code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "gate passed" not in result.stdout  # refused before the gate runs
    assert lines[0].startswith(f"error: --junit {name or '.'}: a folder")
    assert "give a file name such as gate.xml" in lines[0]


# What the Jenkins junit-10 schema (the one CI systems accept) allows per element:
# (allowed attributes, required attributes, allowed children).
JUNIT_10: dict[str, tuple[set[str], set[str], set[str]]] = {
    "testsuites": ({"name", "time", "tests", "failures", "errors"}, set(), {"testsuite"}),
    "testsuite": (
        {"name", "tests", "failures", "errors", "group", "time", "skipped", "timestamp"}
        | {"hostname", "id", "package", "file", "log", "url"},
        {"name", "tests", "failures", "errors"},
        {"testsuite", "properties", "testcase", "system-out", "system-err"},
    ),
    "properties": (set(), set(), {"property"}),
    "property": ({"name", "value"}, {"name", "value"}, set()),
    "testcase": (
        {"name", "time", "classname", "group"},
        {"name"},
        {"skipped", "error", "failure", "system-out", "system-err"},
    ),
    "failure": ({"type", "message"}, set(), set()),
    "error": ({"type", "message"}, set(), set()),
    "skipped": ({"type", "message"}, set(), set()),
    "system-out": (set(), set(), set()),
}
SUREFIRE_TIME = re.compile(r"(([0-9]{0,3},)*[0-9]{3}|[0-9]{0,3})*(\.[0-9]*)?")


def assert_junit_10(element: ET.Element) -> None:
    allowed, required, children = JUNIT_10[element.tag]
    assert required <= set(element.attrib) <= allowed, (element.tag, element.attrib)
    if element.tag in ("testsuites", "testsuite"):
        assert SUREFIRE_TIME.fullmatch(element.get("time", "")), element.get("time")
    for child in element:
        assert child.tag in children, (element.tag, child.tag)
        assert_junit_10(child)


def test_junit_file_reports_each_rule(
    kd_run: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    write_export_report(kd_run, agreement=98.75)
    junit = tmp_path / "gate.xml"
    result = run_cli(capsys, "gate", str(kd_run), "--junit", str(junit))
    assert result.code == 1
    assert f"wrote {junit}" in result.stdout
    assert result.stdout.splitlines()[-1].startswith("gate FAILED")  # the verdict last
    root = ET.parse(junit).getroot()
    assert_junit_10(root)
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("4", "1", "0")
    suites = root.findall("testsuite")
    assert len(suites) == 1 and suites[0].get("name") == "compressor.gate.kd.onnxruntime.fp32"
    assert suites[0].get("skipped") == "0"
    properties = {p.get("name"): p.get("value") for p in suites[0].iter("property")}
    assert properties == {"run": str(kd_run), "backend": "onnxruntime", "precision": "fp32"}
    cases = suites[0].findall("testcase")
    assert [case.get("name") for case in cases] == RULES
    assert {case.get("classname") for case in cases} == {"compressor.gate.kd.onnxruntime.fp32"}
    failures = {case.get("name"): case.find("failure") for case in cases}
    failure = failures.pop("export_agreement")
    assert failure is not None
    assert "measured 98.75 %, needs ≥ 99.00 %" in failure.get("message", "")
    assert set(failures.values()) == {None}
    assert all(case.find("skipped") is None for case in cases)


def test_junit_file_records_a_gate_that_could_not_run(
    kd_run: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A bad input replaces an earlier passing JUnit file, so CI cannot show a stale pass."""
    junit = tmp_path / "gate.xml"
    assert run_cli(capsys, "gate", str(kd_run), "--junit", str(junit)).code == 0
    (kd_run / "export" / "export_report.json").unlink()
    result = run_cli(capsys, "gate", str(kd_run), "--junit", str(junit))
    assert result.code == 2
    root = ET.parse(junit).getroot()
    assert_junit_10(root)
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("1", "0", "1")
    error = root.find("testsuite/testcase/error")
    assert error is not None
    assert "export_report.json: not found" in error.get("message", "")
    assert error.get("message", "") in result.stderr


def test_junit_file_holds_the_verdict_when_the_output_is_cut_short(
    kd_run: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`compress gate RUN --junit gate.xml | head -1`: the reader gone before the verdict table
    is printed. The file must hold this gate's failure, not an earlier pass that CI would show."""
    junit = tmp_path / "gate.xml"
    assert run_cli(capsys, "gate", str(kd_run), "--junit", str(junit)).code == 0
    reader, writer = os.pipe()
    os.close(reader)
    command = [sys.executable, "-m", "compressor", "gate", str(kd_run), "--junit", str(junit)]
    process = subprocess.Popen([*command, "--min-speedup", "1000"], stdout=writer, text=True)
    os.close(writer)
    process.communicate(timeout=120)
    assert process.returncode == 141
    root = ET.parse(junit).getroot()
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("4", "1", "0")
    failure = root.find("testsuite/testcase[@name='speedup']/failure")
    assert failure is not None


def test_junit_file_records_a_gate_stopped_before_its_verdict(
    kd_run: Path,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A CI job's timeout (SIGTERM) or a Ctrl-C while the gate reads the reports left the
    earlier passing file, which CI showed; a SIGKILL leaves the same error."""
    junit = tmp_path / "gate.xml"
    assert run_cli(capsys, "gate", str(kd_run), "--junit", str(junit)).code == 0

    def stopped(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("compressor.gate.evaluate_gate", stopped)
    assert run_cli(capsys, "gate", str(kd_run), "--junit", str(junit)).code == 130
    root = ET.parse(junit).getroot()
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("1", "0", "1")
    error = root.find("testsuite/testcase/error")
    assert error is not None
    assert error.get("message") == (
        f"the gate of {kd_run} did not finish (stopped or killed); run it again"
    )


def test_junit_file_records_a_crash_as_the_bug_it_is_not_as_bad_input(
    kd_run: Path,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Exit 3 is a bug in compressor: a CI dashboard grouping errors by type must not file it
    with the user's bad input (UserError)."""
    junit = tmp_path / "gate.xml"

    def crashed(*_args: object, **_kwargs: object) -> None:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr("compressor.gate.evaluate_gate", crashed)
    assert run_cli(capsys, "gate", str(kd_run), "--junit", str(junit)).code == 3
    error = ET.parse(junit).getroot().find("testsuite/testcase/error")
    assert error is not None
    assert error.get("type") == "ZeroDivisionError"
    assert error.get("message") == "the gate crashed: ZeroDivisionError('division by zero')"


def test_junit_file_records_a_mistyped_command_line(
    kd_run: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A flag typer refuses before the gate runs also replaces an earlier passing file."""
    junit = tmp_path / "gate.xml"
    for bad in (["--max-drop", "abc"], ["--max-dorp", "1"]):
        assert run_cli(capsys, "gate", str(kd_run), "--junit", str(junit)).code == 0
        result = run_cli(capsys, "gate", str(kd_run), f"--junit={junit}", *bad)
        assert result.code == 2
        error = ET.parse(junit).getroot().find("testsuite/testcase/error")
        assert error is not None and error.get("message", "") in result.stderr


def test_a_link_loop_as_the_run_is_bad_input_recorded_in_the_junit_file(
    kd_run: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Resolving it raised RuntimeError (Python 3.11) before the gate ran: exit 3, and the
    earlier passing JUnit file stayed."""
    junit = tmp_path / "gate.xml"
    assert run_cli(capsys, "gate", str(kd_run), "--junit", str(junit)).code == 0
    (tmp_path / "one").symlink_to(tmp_path / "two")
    (tmp_path / "two").symlink_to(tmp_path / "one")
    result = run_cli(capsys, "gate", str(tmp_path / "one"), "--junit", str(junit))
    assert result.code == 2, result.stderr
    error = ET.parse(junit).getroot().find("testsuite/testcase/error")
    assert error is not None and "no such run directory" in error.get("message", "")


def test_an_unwritable_junit_file_does_not_hide_why_the_gate_could_not_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A flag typer refuses: the gate's own checks never ran, and the JUnit file that should
    record it cannot be written (a folder that is a link to nowhere): both are told."""
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    junit = tmp_path / "link" / "g.xml"
    result = run_cli(capsys, "gate", "run", f"--junit={junit}", "--max-dorp", "1")
    assert result.code == 2
    assert "No such option: --max-dorp" in result.stderr
    assert "cannot write the JUnit file" in result.stderr


@pytest.mark.parametrize("where", ["dangling link", "read-only folder"])
def test_an_unwritable_junit_file_is_refused_before_the_gate_runs(
    kd_run: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path, where: str
) -> None:
    """Found only when written, it came after the table and "gate passed", and a passing
    gate exited 2."""
    if where == "dangling link":
        (tmp_path / "link").symlink_to(tmp_path / "nowhere")
        junit = tmp_path / "link" / "g.xml"
        context: Any = contextlib.nullcontext()
    else:
        (tmp_path / "ro").mkdir()
        junit = tmp_path / "ro" / "g.xml"
        context = immutable(tmp_path / "ro")
    with context:
        result = run_cli(capsys, "gate", str(kd_run), "--junit", str(junit))
    assert result.code == 2
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: --junit {junit}: cannot write the JUnit file (")
    if where == "read-only folder":
        assert line.endswith(f"); make {tmp_path / 'ro'} writable")
    assert result.stdout == "" and not junit.exists()


def test_a_junit_path_in_a_file_is_refused_before_the_gate_runs(
    kd_run: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "r20.yaml").write_text("")
    result = run_cli(capsys, "gate", str(kd_run), "--junit", str(tmp_path / "r20.yaml" / "g.xml"))
    assert result.code == 2
    assert result.stderr.splitlines() == [
        f"error: --junit {tmp_path / 'r20.yaml' / 'g.xml'}: {tmp_path / 'r20.yaml'} is a file, "
        "not a folder; give a path in a folder, such as gate.xml"
    ]
    assert "PASS" not in result.stdout


def test_a_stricter_gate_in_the_recipe_keeps_the_export(
    kd_run: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """gate: may change after training: the recipe re-applied with `--resume` rewrites the
    run's report, and the export of the same student is still the one the gate judges."""
    recipe = yaml.safe_load((kd_run / "recipe.yaml").read_text(encoding="utf-8"))
    recipe["output"] = {"dir": str(tmp_path)}
    recipe["gate"] = {**RECIPE_GATE, "max_drop": 0.0}
    path = write_yaml(tmp_path / "kd.yaml", recipe)
    assert run_cli(capsys, "distill", str(path), "--resume").code == 0
    result = run_cli(capsys, "gate", str(kd_run))
    assert result.code == 1, result.stdout + result.stderr
    assert row(result, "student_accuracy")[3] == "FAIL"


def test_a_junit_path_naming_a_file_of_the_run_is_refused(
    kd_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It would replace the run's report with XML; a JUnit file kept in the run is fine."""
    report = (kd_run / "report.json").read_bytes()
    for own in (kd_run / "report.json", kd_run / "export" / "export_report.json"):
        result = run_cli(capsys, "gate", str(kd_run), "--junit", str(own))
        assert result.code == 2
        assert result.stderr.splitlines() == [
            f"error: --junit {own}: a file of the run {kd_run}, which the JUnit XML would "
            "replace; give another name, such as gate.xml"
        ]
    assert (kd_run / "report.json").read_bytes() == report
    folder = run_cli(capsys, "gate", str(kd_run), "--junit", str(kd_run / "export"))
    assert folder.stderr.splitlines() == [
        f"error: --junit {kd_run / 'export'}: a folder, not a file; give a file name such as "
        "gate.xml"
    ]
    for _ in range(2):  # written, then replaced
        assert run_cli(capsys, "gate", str(kd_run), "--junit", str(kd_run / "gate.xml")).code == 0
    # A mistyped flag is recorded in the JUnit file before the gate runs: not over the report.
    result = run_cli(capsys, "gate", str(kd_run), "--junit", str(kd_run / "report.json"), "--x")
    assert result.code == 2 and "a file of the run" in result.stderr
    assert (kd_run / "report.json").read_bytes() == report
    # Nor under the name of a file the run lacks now: it would be taken for that file later.
    (kd_run / "export" / "export_report.json").unlink()
    missing = kd_run / "export" / "export_report.json"
    result = run_cli(capsys, "gate", str(kd_run), "--junit", str(missing))
    assert result.code == 2 and not missing.exists()
    # Nor after a mistyped flag, where RUN is not known: the run the file would lie in is.
    for junit in (missing, kd_run / ".lock"):
        result = run_cli(capsys, "gate", str(kd_run), "--max-drop", "x", f"--junit={junit}")
        assert result.code == 2 and f"--junit {junit}: a file of the run {kd_run}" in result.stderr
    assert not missing.exists()


def test_a_gate_that_could_not_run_keeps_its_suite_name(
    kd_run: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    junit = tmp_path / "gate-int8.xml"
    result = run_cli(capsys, "gate", str(kd_run), "--precision", "int8", "--junit", str(junit))
    assert result.code == 2
    [suite] = ET.parse(junit).getroot().iter("testsuite")
    assert suite.get("name") == "compressor.gate.kd.onnxruntime.int8"


def test_python_api_returns_the_verdict(kd_run: Path) -> None:
    result = evaluate_gate(kd_run, {"min_speedup": 5.0, "max_drop": None})
    assert [rule.name for rule in result.rules] == RULES
    assert [rule.status for rule in result.rules] == ["PASS", "PASS", "PASS", "FAIL"]
    assert not result.passed and [rule.name for rule in result.failed] == ["speedup"]
    speedup = result.rules[3]
    assert (speedup.measured, speedup.threshold, speedup.unit) == (pytest.approx(3.0), 5.0, "×")


def edit_json(name: str, change: Callable[[dict[str, Any]], None]) -> Callable[[Path], None]:
    def apply(run: Path) -> None:
        data = read_json(run / name)
        change(data)
        (run / name).write_text(json.dumps(data), encoding="utf-8")

    return apply


def edit_yaml(name: str, change: Callable[[dict[str, Any]], None]) -> Callable[[Path], None]:
    def apply(run: Path) -> None:
        data = yaml.safe_load((run / name).read_text(encoding="utf-8"))
        change(data)
        write_yaml(run / name, data)

    return apply


def retrained_student(run: Path) -> None:
    """student.pt replaced by another one of the same architecture."""
    record = torch.load(run / "student.pt", weights_only=True)
    for weights in record["state_dict"].values():
        weights.add_(1)
    torch.save(record, run / "student.pt")


def delete(name: str) -> Callable[[Path], None]:
    return lambda run: (run / name).unlink()


def corrupt(name: str) -> Callable[[Path], None]:
    return lambda run: (run / name).write_text('{"schema_version": 1, "resu', encoding="utf-8")


EXPORT = "export/export_report.json"
BAD_INPUTS: list[tuple[str, Callable[[Path], None] | None, list[str], list[str]]] = [
    ("missing run dir", None, ["{run}-absent"], ["kd-absent: no such run directory"]),
    ("missing report", delete("report.json"), [], ["report.json: not found", "RECIPE --resume"]),
    (
        "corrupt report",
        corrupt("report.json"),
        [],
        ["report.json: not valid JSON (line 1, column 23: Unterminated string); "],
    ),
    (
        "report of a distilled run without its teacher",
        edit_json("report.json", lambda d: d["results"].update(teacher=None)),
        [],
        ["report.json: no teacher result, but the run was distilled from a teacher", "repair"],
    ),
    (
        "report that is a sparse file of gigabytes",  # read whole, it took the memory
        lambda run: os.truncate(run / "report.json", 2**31),
        [],
        ["report.json: 2,048 MiB, far more than a record of a run holds; "],
    ),
    (
        "manifest that is a named pipe",  # read, it blocked the gate for ever
        lambda run: ((run / "manifest.json").unlink(), os.mkfifo(run / "manifest.json")),
        [],
        ["manifest.json: missing or unreadable; the run directory is incomplete"],
    ),
    (
        "manifest whose reason holds terminal escapes",  # printed, they faked the verdict
        edit_json(
            "manifest.json",
            lambda manifest: manifest.update(
                status="failed", reason="\x1b]0;title\x07\x1b[2J\x1b[32mgate passed"
            ),
        ),
        [],
        ["the run failed on its input: \\x1b]0;title\\x07\\x1b[2J\\x1b[32mgate passed"],
    ),
    (
        "report nested too deeply for the JSON reader",
        lambda run: (run / "report.json").write_text("[" * 100_000),
        [],
        ["report.json: not JSON that can be read (nested too deeply to read); "],
    ),
    (
        "export report with a number too long to convert",
        lambda run: (run / EXPORT).write_text('{"schema_version": ' + "9" * 5000 + "}"),
        [],
        ["export_report.json: not JSON that can be read (Exceeds the limit (4300 digits)"],
    ),
    (
        "report without student accuracy",
        edit_json("report.json", lambda d: d["results"]["student"].pop("accuracy")),
        [],
        ["report.json: results.student.accuracy: required, but missing"],
    ),
    (
        "missing recipe",
        delete("recipe.yaml"),
        [],
        ["kd: not a run directory (no recipe.yaml in it)"],
    ),
    (
        "folder that is not a run",
        lambda run: (run.parent / "notarun").mkdir(),
        ["{run}/../notarun"],
        ["notarun: not a run directory (no recipe.yaml in it)"],
    ),
    (
        "file instead of a run",
        lambda run: (run.parent / "run.txt").write_text("", encoding="utf-8"),
        ["{run}/../run.txt"],
        ["run.txt: a file, not a run directory"],
    ),
    *(
        (
            f"student accuracy {value} in the export report",
            edit_json(EXPORT, lambda d, value=value: d["results"][1].update(accuracy=value)),
            [],
            ["export_report.json: results[1].accuracy: Input should be"],
        )
        for value in (float("nan"), 1e9)
    ),
    (
        "agreement NaN in the export report",
        edit_json(EXPORT, lambda d: d["results"][1]["parity"].update(top1_agreement=float("nan"))),
        [],
        ["export_report.json: results[1].parity.top1_agreement: Input should be"],
    ),
    (
        "export scored on another test split",
        edit_json(EXPORT, lambda d: d.update(eval_samples=d["eval_samples"] - 1)),
        [],
        ["test images, the run's report on", "the test data changed between training and"],
    ),
    (
        "recipe changed since training",
        edit_yaml("recipe.yaml", lambda d: d["data"].update(max_test_samples=20)),
        [],
        ["kd/recipe.yaml: changed since the run was trained", "`compress distill RECIPE"],
    ),
    (
        "student.pt of another run",
        retrained_student,
        [],
        ["kd/student.pt: not the student this run trained"],
    ),
    (
        "missing manifest",
        delete("manifest.json"),
        [],
        ["manifest.json: missing or unreadable", "`compress distill RECIPE --resume`"],
    ),
    *(
        (
            f"{status} run",
            edit_json("manifest.json", lambda d, status=status: d.update(status=status)),
            [],
            [
                f"kd: the run {STOPPED[status]}, not completed (manifest.json); finish it with "
                "`compress distill RECIPE --resume`"
            ],
        )
        for status in ("interrupted", "failed")
    ),
    (
        "run that crashed",
        edit_json("manifest.json", lambda d: d.update(status="running")),
        [],
        [
            "kd: the run stopped without finishing: manifest.json says running, but no process "
            "is training it",
            "`compress distill RECIPE --resume`",
        ],
    ),
    (
        "run without student.pt",
        delete("student.pt"),
        [],
        ["the run has no student.pt although it completed", "`compress distill RECIPE"],
    ),
    ("missing export", delete(EXPORT), [], ["export_report.json: not found", "compress export"]),
    (
        "export report is a folder",
        lambda run: (delete(EXPORT)(run), (run / EXPORT).mkdir()),
        [],
        ["export_report.json: a folder, not the export report", "`compress export"],
    ),
    ("corrupt export", corrupt(EXPORT), [], ["export_report.json: not valid JSON"]),
    (
        "export folder a file",
        lambda run: (shutil.rmtree(run / "export"), (run / "export").write_text("hi")),
        [],
        ["export: a file, not a folder; move it away, then export the run with `compress export"],
    ),
    (
        "export report of the wrong shape",
        edit_json(EXPORT, lambda d: d.update(results=[1])),
        [],
        ["results[0]: expected a section of keys", "; export the run with `compress export"],
    ),
    (
        "newer export schema",
        edit_json(EXPORT, lambda d: d.update(schema_version=2)),
        [],
        ["schema_version 2, but this compressor reads 1"],
    ),
    (
        "infinite latency",
        edit_json(EXPORT, lambda d: d["results"][3]["latency"]["64"].update(p50_ms=float("inf"))),
        [],
        ["results[3].latency.64.p50_ms", "finite number"],
    ),
    (
        "export row without agreement",
        edit_json(EXPORT, lambda d: d["results"][1]["parity"].pop("top1_agreement")),
        [],
        ["results[1].parity.top1_agreement: required, but missing"],
    ),
    (
        "export of another recipe",
        edit_json(EXPORT, lambda d: d.update(recipe_sha256="0" * 64)),
        [],
        ["made for another recipe", "re-export with `compress export"],
    ),
    (
        "export of an earlier student.pt",
        edit_json(EXPORT, lambda d: d.update(student_sha256="0" * 64)),
        [],
        ["made from another student.pt (sha256 000000000000", "student.pt replaced, since"],
    ),
    (
        "student file name too long for the file system",
        edit_json(EXPORT, lambda d: d["results"][1].update(file="x" * 5000, sha256="0" * 64)),
        [],
        ["student file 'xxxx", "File name too long; re-export with `compress export"],
    ),
    (
        "export without pytorch reference",
        edit_json(EXPORT, lambda d: d["results"].pop(0)),
        [],
        ["no PyTorch fp32 student result"],
    ),
    (
        "unknown backend",
        None,
        ["--backend", "tflite"],
        ["--backend 'tflite' is unknown; choose one of: onnxruntime, tensorrt"],
    ),
    ("unknown precision", None, ["--precision", "bf16"], ["--precision 'bf16' is unknown"]),
    (
        "backend not exported",
        None,
        ["--backend", "tensorrt"],
        [
            "no tensorrt fp32 student (exported: onnxruntime fp32)",
            "--trt` on a machine with an NVIDIA GPU and TensorRT",
        ],
    ),
    (
        "precision not exported",
        None,
        ["--precision", "int8"],
        [
            "no onnxruntime int8 student (exported: onnxruntime fp32)",
            "--int8`, or gate an exported one with --backend onnxruntime --precision fp32",
        ],
    ),
    (
        "fp16 not exported",
        None,
        ["--precision", "fp16"],
        ["no onnxruntime fp16 student", "run `compress export", " --fp16`"],
    ),
    (
        "batch not timed",
        None,
        ["--speedup-batch", "32"],
        ["--speedup-batch 32: not timed", "timed batches: 1, 64"],
    ),
    (
        "batch not timed, min speedup unset",
        without_min_speedup,
        ["--speedup-batch", "7"],
        ["--speedup-batch 7: not timed", "timed batches: 1, 64"],
    ),
    ("batch below 1", None, ["--speedup-batch", "0"], ["--speedup-batch 0: must be"]),
    (
        "negative max drop",
        None,
        ["--max-drop", "-1"],
        ["--max-drop -1.0: ", "greater than or equal to 0"],
    ),
    ("negative export drop", None, ["--max-export-drop", "-0.5"], ["--max-export-drop -0.5"]),
    ("agreement over 100", None, ["--min-agreement", "100.5"], ["less than or equal to 100"]),
    ("zero speedup", None, ["--min-speedup", "0"], ["--min-speedup 0.0: ", "greater than 0"]),
    # Infinities and nan are no bar; a drop is in points of top-1, 100 at most.
    *(
        (f"{value} {flag}", None, [flag, value], [f"{flag} {float(value)!r}: Input should be"])
        for flag in ("--max-drop", "--max-export-drop", "--min-agreement", "--min-speedup")
        for value in ("-inf", "inf", "nan")
    ),
    *(
        (f"150 {flag}", None, [flag, "150"], [f"{flag} 150.0: 150 points is more than top-1 can"])
        for flag in ("--max-drop", "--max-export-drop")
    ),
    (
        "huge speedup",
        None,
        ["--min-speedup", "1e300"],
        ["--min-speedup 1e+300: beyond float32's largest value (3.403e+38), the precision"],
    ),
]


@pytest.mark.parametrize(
    ("setup", "args", "fragments"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_INPUTS],
)
def test_bad_input_exits_2_with_one_line(
    kd_run: Path,
    capsys: pytest.CaptureFixture[str],
    setup: Callable[[Path], None] | None,
    args: list[str],
    fragments: list[str],
) -> None:
    if setup is not None:
        setup(kd_run)
    if not args or args[0].startswith("--"):
        args = [str(kd_run), *args]
    result = run_cli(capsys, "gate", *(arg.format(run=kd_run) for arg in args))
    assert result.code == 2, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert with_recipe(fragment, kd_run) in lines[0]
    assert "PASS" not in result.stdout and "FAIL" not in result.stdout


def test_distill_export_gate_end_to_end(
    made_runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real `compress export` writes the report here: the two stages must agree on it."""
    run = Path(shutil.copytree(made_runs["kd"], tmp_path / "kd"))
    exported = run_cli(
        capsys, "export", str(run), "--batch-sizes", "1,8", "--runs", "3", "--warmup", "1"
    )
    assert exported.code == 0, exported.stdout + exported.stderr
    junit = tmp_path / "gate.xml"
    # Lenient speedup: teacher and student share an architecture here.
    result = run_cli(capsys, "gate", str(run), "--min-speedup", "0.01", "--junit", str(junit))
    assert result.code == 0, result.stdout + result.stderr
    assert [row(result, rule)[3] for rule in RULES] == ["PASS"] * 4
    rows = read_json(run / "export" / "export_report.json")["results"]
    ort = next(r for r in rows if (r["model"], r["backend"]) == ("student", "onnxruntime"))
    assert row(result, "export_accuracy")[1] == f"{ort['accuracy']:.2f} %"
    assert row(result, "export_agreement")[1] == f"{ort['parity']['top1_agreement']:.2f} %"
    assert ET.parse(junit).getroot().get("failures") == "0"


def test_an_export_whose_outputs_are_not_finite_fails_the_agreement_rule(
    kd_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The exporter writes a non-finite max |Δ| as null (strict JSON); the gate reads it."""
    edit_json(
        EXPORT,
        lambda report: report["results"][1]["parity"].update(max_abs_diff=None, top1_agreement=0),
    )(kd_run)
    result = run_cli(capsys, "gate", str(kd_run))
    assert result.code == 1, result.stdout + result.stderr
    assert "gate FAILED: export_agreement" in result.stdout


NO_TORCH = """
import sys
for name in ("torch", "torchvision"):
    sys.modules[name] = None  # as on a deployment box without them: importing either fails
from compressor.entry import main
sys.argv = ["compress", "gate", *sys.argv[1:]]
main()
"""


def test_the_gate_runs_without_torch(kd_run: Path, tmp_path: Path) -> None:
    """A gate job reads JSON reports only: a CI runner needs no torch, GPU, data or models."""
    junit = tmp_path / "gate.xml"
    command = [sys.executable, "-c", NO_TORCH, str(kd_run), "--junit", str(junit)]
    passed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "gate passed" in passed.stdout and junit.is_file()
    failed = subprocess.run(
        [*command, "--max-drop", "0"], capture_output=True, text=True, timeout=120
    )
    assert failed.returncode == 1, failed.stdout + failed.stderr


def test_a_log_that_cannot_show_the_symbols_keeps_the_verdict(kd_run: Path, tmp_path: Path) -> None:
    """A Windows CI agent pipes output in cp1252 (no ≥): the gate spells what the code page
    lacks in ASCII (`?` left a threshold unreadable: at least, or at most?), and still exits
    with its verdict and writes its JUnit file."""
    junit = tmp_path / "gate.xml"
    command = [sys.executable, "-c", NO_TORCH, str(kd_run), "--junit", str(junit)]
    environment = {**os.environ, "PYTHONIOENCODING": "ascii"}
    for extra, code in (([], 0), (["--max-drop", "0"], 1)):
        result = subprocess.run(
            [*command, *extra], capture_output=True, text=True, timeout=120, env=environment
        )
        assert result.returncode == code, result.stdout + result.stderr
        assert ">= " in result.stdout and "?" not in result.stdout, result.stdout
        table = [line for line in result.stdout.splitlines() if line.startswith("|")]
        assert len({len(line) for line in table}) == 1, result.stdout  # columns aligned
        assert "crashed" not in result.stderr
        assert junit.is_file()
        junit.unlink()


def test_the_other_commands_say_they_need_torch(kd_run: Path) -> None:
    """On that box, training and export commands end in one line, not an import traceback."""
    code = NO_TORCH.replace('"compress", "gate", ', '"compress", ')
    for argv in (["models"], ["export", str(kd_run)], ["recipe", "validate", "r.yaml"]):
        result = subprocess.run(
            [sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 2, result.stdout + result.stderr
        command = " ".join(argv[:2] if argv[0] == "recipe" else argv[:1])
        assert result.stderr.startswith(f"error: `compress {command}` needs torch, which is not")
        assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1


def test_onnx_validation_imports_without_torch() -> None:
    """What a deployment box validates an ONNX file with: onnxruntime, onnx and numpy."""
    code = NO_TORCH.split("from compressor.entry")[0] + (
        "from export import OnnxRuntimeRunner, measure_latency, parity, predict, read_metadata\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_a_run_whose_export_is_in_progress_is_refused_until_it_ends(
    kd_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its report is the previous export's until it publishes, then part old, part new."""
    lock = kd_run / "export" / ".lock"
    with FileLock(lock):
        result = run_cli(capsys, "gate", str(kd_run))
    assert result.code == 2
    assert result.stderr.strip() == (
        f"error: {kd_run / 'export'}: an export of this run is in progress; wait for it to "
        "end, then gate"
    )
    assert run_cli(capsys, "gate", str(kd_run)).code == 0  # the lock file stays; nobody holds it


def test_gates_of_one_run_read_it_together_and_keep_an_export_out(
    kd_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The fp32 and int8 gates of one run in parallel CI jobs: the second was refused as if
    an export were in progress. An export waits for both (staging.py takes the lock)."""
    lock = kd_run / "export" / ".lock"
    lock.touch()  # as an export leaves it
    release = shared_lock_or_refuse(lock, "busy")  # another gate, reading
    try:
        assert run_cli(capsys, "gate", str(kd_run)).code == 0
        with pytest.raises(UserError, match="an export is writing"):
            lock_or_refuse(lock, "an export is writing")
    finally:
        release()
    lock_or_refuse(lock, "an export is writing").release()


def test_a_command_to_run_quotes_a_run_path_with_spaces(
    made_runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What the gate says to run must paste: an unquoted path would be split by the shell."""
    run = Path(shutil.copytree(made_runs["kd"], tmp_path / "my runs" / "kd 1"))
    write_export_report(run)
    result = run_cli(capsys, "gate", str(run), "--precision", "int8")
    assert result.code == 2
    assert f"run `compress export '{run}' --int8`, or gate" in result.stderr


def test_a_re_export_hint_keeps_the_files_the_export_has(
    made_runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Following `compress export RUN --int8` would remove the fp16 student: a re-export
    without a flag removes the files it made. The hint carries every flag the export used."""
    run = Path(shutil.copytree(made_runs["kd"], tmp_path / "kd"))
    write_export_report(run, fp16=True)
    result = run_cli(capsys, "gate", str(run), "--precision", "int8")
    assert result.code == 2
    assert f"run `compress export {run} --fp16 --int8`, or gate" in result.stderr
    # Made on a GPU machine, gated on a CPU box: --trt would be refused there, so it is left
    # out unless TensorRT is what is gated.
    export = run / "export" / "export_report.json"
    data = json.loads(export.read_text())
    data["results"].append({**data["results"][-1], "backend": "tensorrt", "device": "cuda"})
    export.write_text(json.dumps(data))
    result = run_cli(capsys, "gate", str(run), "--precision", "int8")
    assert f"run `compress export {run} --fp16 --int8`, or gate" in result.stderr

    export.write_text(export.read_text().replace('"recipe_sha256": "', '"recipe_sha256": "0'))
    result = run_cli(capsys, "gate", str(run), "--backend", "tensorrt")
    assert result.code == 2
    assert "made for another recipe" in result.stderr
    assert result.stderr.rstrip().endswith(f"re-export with `compress export {run} --trt --fp16`")


def test_a_min_agreement_flag_written_as_a_fraction_is_warned_about(
    kd_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`gate.min_agreement: 0.995` in a recipe is warned about; the same slip as a flag
    passed anything without a word."""
    result = run_cli(capsys, "gate", str(kd_run), "--min-agreement", "0.995")
    assert result.code == 0, result.stderr
    assert result.stderr == (
        "warning: --min-agreement is 0.995 %, a bar almost anything passes; it is a "
        "percentage: for 99.5 % write 99.5\n"
    )
    assert "warning" not in result.stdout  # on stderr: `gate RUN > verdict.txt` still shows it
    assert "warning" not in run_cli(capsys, "gate", str(kd_run), "--min-agreement", "99.5").stderr


def test_a_fraction_edited_into_the_runs_gate_section_is_warned_about(
    kd_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The gate section of a run's recipe.yaml may change after training, past the
    preflight's warning; a flag given instead is the bar, and the recipe's is not named."""
    edit_yaml("recipe.yaml", lambda recipe: recipe["gate"].update(min_agreement=0.995))(kd_run)
    result = run_cli(capsys, "gate", str(kd_run))
    assert result.code == 0, result.stderr
    assert " ".join(result.stderr.split()).startswith(
        f"warning: {kd_run / 'recipe.yaml'}: gate.min_agreement is 0.995 %, a bar almost"
    )
    assert "warning" not in run_cli(capsys, "gate", str(kd_run), "--min-agreement", "99").stderr
    # The Python API without `warn`: a CompressorWarning, not silence.
    with pytest.warns(CompressorWarning, match="gate.min_agreement is 0.995 %"):
        evaluate_gate(kd_run)


def test_a_drop_allowed_past_the_whole_accuracy_is_a_bar_of_zero(kd_run: Path) -> None:
    """max_drop 100 against a teacher at 85 % would be a bar of -15 %: shown as a figure, it
    reads as one. Every accuracy meets a bar of 0 % alike, so the verdict is the same."""
    result = evaluate_gate(kd_run, {"max_drop": 100.0, "max_export_drop": 100.0})
    rules = {rule.name: rule for rule in result.rules}
    for name in ("student_accuracy", "export_accuracy"):
        assert rules[name].threshold == 0.0
        assert rules[name].threshold_text == "≥ 0.00 %"
        assert rules[name].status == "PASS"
    assert "− max_drop 100" in rules["student_accuracy"].detail


def test_an_override_that_is_no_gate_setting_is_named_as_a_key_not_a_flag(kd_run: Path) -> None:
    """evaluate_gate(run, {"max_dorp": 1}) said "--max-dorp 1: Extra inputs are not
    permitted", a flag nobody typed, in pydantic's words."""
    with pytest.raises(UserError) as refused:
        evaluate_gate(kd_run, {"max_dorp": 1.0})
    assert refused.value.lines == [
        "overrides: max_dorp is not a gate setting; the settings are max_drop, "
        "max_export_drop, min_agreement, min_speedup"
    ]
