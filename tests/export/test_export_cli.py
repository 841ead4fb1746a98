"""`compress export` end to end on real digits runs: real ONNX files, real ONNX Runtime
sessions, the report a gate reads, and one clear line with exit 2 for every bad input."""

from __future__ import annotations

import hashlib
import html
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import yaml
from filelock import FileLock

from compressor import cli
from compressor.data import load_dataset
from compressor.errors import CompressorWarning
from compressor.gate import evaluate_gate
from compressor.io import file_sha256
from compressor.models import create_model
from compressor.recipe import DataConfig
from compressor.rundir import RunDir, claim_run_dir, discard_replaced_run
from export import ExportOptions, export_run, onnx_export, pipeline, staging
from export.run_inputs import read_run
from export.tensorrt_runner import tensorrt_missing
from tests.cli_helpers import run_cli, with_recipe
from tests.disk_full import compress_with_file_size_limit, needs_file_size_limits
from tests.export.helpers import (
    QUICK,
    copy_run,
    folder_contents,
    invoke,
    one_error_line,
    report_of,
    rows_of,
    write_recipe,
)
from tests.read_only import immutable
from tests.signal_helpers import needs_posix_signals

LATENCY_KEYS = {
    "p50_ms",
    "p90_ms",
    "p95_ms",
    "p99_ms",
    "mean_ms",
    "iqr_ms",
    "cv",
    "throughput_ips",
    "runs",
}

# How export and the gate word a stopped run's status.
STOPPED = {"interrupted": "was interrupted", "failed": "failed"}


def exported_copy(distilled_run: Path, folder: Path) -> Path:
    """A completed copy of the run with a quick student-only export in it."""
    run = copy_run(distilled_run, folder, "completed")
    invoke("export", str(run), "--no-teacher", *QUICK)
    return run


def digits_inputs(record: dict) -> tuple[np.ndarray, np.ndarray]:
    """The digits test set, normalised by hand with student.pt's statistics."""
    test = load_dataset(DataConfig(name="digits")).test
    mean = np.asarray(record["mean"], dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(record["std"], dtype=np.float32).reshape(1, -1, 1, 1)
    images = (test.images.numpy().astype(np.float32) / 255.0 - mean) / std
    return images.astype(np.float32), test.labels.numpy()


def test_export_writes_onnx_files_and_reports(exported_run: Path) -> None:
    export = exported_run / "export"
    for name in ("student.onnx", "student.fp16.onnx", "teacher.onnx"):
        assert (export / name).stat().st_size > 10_000, name
    for suffix in ("json", "md", "html"):
        assert (export / f"export_report.{suffix}").is_file(), suffix


def test_report_follows_the_schema_the_gate_reads(exported_run: Path) -> None:
    report = report_of(exported_run)
    manifest = json.loads((exported_run / "manifest.json").read_text())
    assert report["schema_version"] == 1
    assert report["run"] == "distilled"
    assert report["recipe_sha256"] == manifest["recipe_sha256"]
    student = (exported_run / "student.pt").read_bytes()
    assert report["student_sha256"] == hashlib.sha256(student).hexdigest()
    assert report["dataset"] == "digits"
    assert report["eval_samples"] == len(load_dataset(DataConfig(name="digits")).test)
    assert report["host"]["threads"] == torch.get_num_threads()  # ONNX Runtime's too

    rows = rows_of(report)
    assert set(rows) == {
        ("student", "pytorch", "fp32"),
        ("student", "onnxruntime", "fp32"),
        ("student", "onnxruntime", "fp16"),
        ("teacher", "pytorch", "fp32"),
        ("teacher", "onnxruntime", "fp32"),
    }
    # Each backend reports the device it actually ran on: PyTorch takes the GPU when there is
    # one, ONNX Runtime only with its CUDA execution provider (onnxruntime-gpu).
    torch_device = "cuda" if torch.cuda.is_available() else "cpu"
    ort_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    ort_device = "cuda" if ort_cuda and torch.cuda.is_available() else "cpu"
    for (_, backend, _), result in rows.items():
        assert result["device"] == (torch_device if backend == "pytorch" else ort_device)
        assert 0.0 <= result["accuracy"] <= 100.0
        assert set(result["latency"]) == {"1", "8"}
        for latency in result["latency"].values():
            assert set(latency) == LATENCY_KEYS
            assert latency["runs"] == 2
            assert all(latency[key] > 0 for key in LATENCY_KEYS - {"cv", "iqr_ms"})
            assert latency["cv"] >= 0 and latency["iqr_ms"] >= 0
            assert latency["p50_ms"] <= latency["p90_ms"] <= latency["p95_ms"] <= latency["p99_ms"]

    student_pt = rows[("student", "pytorch", "fp32")]
    assert student_pt["parity"] is None
    assert student_pt["file"] == "student.pt"
    assert student_pt["size_bytes"] == (exported_run / "student.pt").stat().st_size
    run_report = json.loads((exported_run / "report.json").read_text())
    # Same model, same images: only the normalisation's float rounding differs from training.
    assert student_pt["accuracy"] == pytest.approx(
        run_report["results"]["student"]["accuracy"], abs=100 / 360 + 1e-9
    )

    fp32 = rows[("student", "onnxruntime", "fp32")]
    assert fp32["file"] == "export/student.onnx"
    assert fp32["size_bytes"] == (exported_run / "export" / "student.onnx").stat().st_size
    for row in rows.values():  # the published files are the ones measured
        assert row["sha256"] == file_sha256(exported_run / row["file"]), row["file"]
    assert fp32["parity"]["max_abs_diff"] <= 1e-4
    assert fp32["parity"]["mean_abs_diff"] <= fp32["parity"]["max_abs_diff"]
    assert fp32["parity"]["top1_agreement"] >= 99.9
    assert fp32["parity"]["tolerance_max_abs"] == 1e-4
    assert fp32["parity"]["min_agreement"] == 99.9
    assert fp32["parity"]["passed"] is True
    assert fp32["accuracy"] == pytest.approx(student_pt["accuracy"], abs=0.3)

    fp16 = rows[("student", "onnxruntime", "fp16")]
    assert fp16["file"] == "export/student.fp16.onnx"
    assert fp16["size_bytes"] < fp32["size_bytes"]
    assert fp16["parity"]["tolerance_max_abs"] is None  # fp16 is judged by agreement
    assert fp16["parity"]["min_agreement"] == 99.0
    assert fp16["parity"]["passed"] is True
    assert rows[("teacher", "onnxruntime", "fp32")]["parity"]["passed"] is True

    assert set(report["speedup"]) == {"pytorch", "onnxruntime"}
    for backend, by_batch in report["speedup"].items():
        for batch, value in by_batch.items():
            teacher = rows[("teacher", backend, "fp32")]["latency"][batch]["p50_ms"]
            student = rows[("student", backend, "fp32")]["latency"][batch]["p50_ms"]
            assert value == pytest.approx(teacher / student)


def test_onnx_files_carry_readable_metadata(exported_run: Path) -> None:
    record = torch.load(exported_run / "student.pt", map_location="cpu", weights_only=True)
    recipe_sha = json.loads((exported_run / "manifest.json").read_text())["recipe_sha256"]
    for name, precision in (("student", "fp32"), ("student.fp16", "fp16"), ("teacher", "fp32")):
        model = onnx.load(exported_run / "export" / f"{name}.onnx")
        onnx.checker.check_model(model, full_check=True)
        props = {entry.key: entry.value for entry in model.metadata_props}
        assert json.loads(props["classes"]) == record["classes"]
        assert json.loads(props["input_shape"]) == record["image_shape"]
        assert json.loads(props["mean"]) == pytest.approx(record["mean"])
        assert json.loads(props["std"]) == pytest.approx(record["std"])
        assert props["recipe_sha256"] == recipe_sha
        assert props["precision"] == precision
        assert [o.version for o in model.opset_import if o.domain == ""] == [18]
        batch_axis = model.graph.input[0].type.tensor_type.shape.dim[0]
        assert batch_axis.dim_param == "batch"
        elem_type = model.graph.input[0].type.tensor_type.elem_type
        expected = onnx.TensorProto.FLOAT16 if precision == "fp16" else onnx.TensorProto.FLOAT
        assert elem_type == expected


def test_onnx_runtime_matches_pytorch_at_any_batch_size(exported_run: Path) -> None:
    """Checked without the export package: a plain session against the rebuilt student."""
    record = torch.load(exported_run / "student.pt", map_location="cpu", weights_only=True)
    model = create_model(record["arch"], record["num_classes"], record["image_shape"][0])
    model.load_state_dict(record["state_dict"])
    model.eval()
    images, labels = digits_inputs(record)
    session = ort.InferenceSession(
        str(exported_run / "export" / "student.onnx"), providers=["CPUExecutionProvider"]
    )
    for batch in (1, 7, len(images)):
        (logits,) = session.run(None, {"input": images[:batch]})
        with torch.no_grad():
            reference = model(torch.from_numpy(images[:batch])).numpy()
        assert logits.shape == (batch, 10)
        assert np.abs(logits - reference).max() < 1e-4
    report = rows_of(report_of(exported_run))
    accuracy = 100.0 * float(np.mean(logits.argmax(1) == labels))
    assert report[("student", "onnxruntime", "fp32")]["accuracy"] == pytest.approx(accuracy)


def test_markdown_reads_as_a_pull_request_comment(exported_run: Path) -> None:
    text = (exported_run / "export" / "export_report.md").read_text()
    assert text.startswith("## compressor export: `distilled`")
    table = []
    for line in text.splitlines():
        if line.startswith("| model | backend | precision | device"):
            table = [line]
        elif table and line.startswith("|"):
            table.append(line)
        elif table:
            break
    header, align, *rows = table
    assert len(rows) == 5
    assert "| max abs diff | mean abs diff | agree % |" in header  # parity, as README says
    assert all(row.count("|") == header.count("|") for row in [align, *rows])
    assert sum("✅ pass" in row for row in rows) == 3
    assert sum("reference" in row for row in rows) == 2
    assert "Student speedup over the teacher" in text
    assert f", {torch.get_num_threads()} CPU thread(s) for PyTorch and ONNX Runtime alike." in text
    assert "<details><summary>Latency percentiles (ms)</summary>" in text


def test_html_report_is_self_contained(exported_run: Path) -> None:
    page = (exported_run / "export" / "export_report.html").read_text()
    # accuracy per backend, size per precision (fp16 was exported), p50 at batch 1 and 8
    assert page.count("data:image/png;base64,") == 4
    assert "Reduced precision against fp32" in page
    assert "http://" not in page and "https://" not in page
    assert "<table>" in page


def test_run_without_teacher_exports_the_student_alone(
    teacher_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_cli(capsys, "export", str(teacher_run), *QUICK)
    assert result.code == 0, result.stderr
    report = report_of(teacher_run)
    assert set(rows_of(report)) == {
        ("student", "pytorch", "fp32"),
        ("student", "onnxruntime", "fp32"),
    }
    assert report["speedup"] == {}
    assert (teacher_run / "export" / "student.onnx").is_file()
    assert not (teacher_run / "export" / "teacher.onnx").exists()
    assert "export_report.html" in result.stdout


@pytest.mark.parametrize("flags", [["--trt"], ["--trt", "--int8"]], ids=["trt", "trt-int8"])
def test_trt_where_tensorrt_cannot_run_is_refused_before_any_work(
    flags: list[str], exported_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exporting without the TensorRT asked for would replace the previous export with less
    than was asked for: one line names what is missing (and how to install it), and the
    previous export is left byte for byte."""
    missing = tensorrt_missing(torch.cuda.is_available())
    if missing is None:
        pytest.skip("TensorRT can run here; tests/export/test_tensorrt.py covers it")
    run = Path(shutil.copytree(exported_run, tmp_path / "run"))
    before = folder_contents(run / "export")
    line = one_error_line(run_cli(capsys, "export", str(run), *flags, *QUICK))
    assert folder_contents(run / "export") == before
    assert line == (
        f"error: --trt: {missing}; nothing was exported: drop --trt to export and validate "
        "with ONNX Runtime alone"
    )
    assert "pip install" in line or "no NVIDIA GPU" in line


def test_a_failed_parity_check_fails_the_export_and_keeps_its_reports(
    exported_run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another model given as the student: its logits are not the student's. Exit 1, as a
    failed gate rule, so a CI step that exports fails too; the reports say what happened."""
    run = Path(shutil.copytree(exported_run, tmp_path / "run"))
    other = Path(shutil.copy(run / "export" / "teacher.onnx", tmp_path / "resnet20.onnx"))
    monkeypatch.chdir(tmp_path)
    result = run_cli(
        capsys,
        "export",
        str(run),
        "--no-teacher",
        "--student-onnx",
        "resnet20.onnx",  # relative to here, not to the run: the report names it absolutely
        "--max-abs-diff",
        "0.00015",
        *QUICK,
    )
    assert result.code == 1, result.stdout + result.stderr
    assert "export FAILED: parity with PyTorch for student onnxruntime fp32" in result.stdout
    said = " ".join(result.stdout.split())  # the console wraps long lines
    assert "parity failed for student onnxruntime fp32: max |diff|" in said
    assert "warning: parity failed" not in " ".join(result.stderr.split())
    # The reports lead with the verdict and file the cause as a failure, not a warning.
    report = report_of(run)
    assert report["verdict"] == "failed"
    [failure] = report["failures"]
    assert "(limit 0.00015)" in failure  # as it was set
    assert not any(line.startswith("parity failed") for line in report["warnings"])
    markdown = (run / "export" / "export_report.md").read_text().splitlines()
    assert markdown[2].startswith(
        "❌ **Export FAILED**: parity with PyTorch for student onnxruntime fp32 (fp32: max |diff| "
        "≤ 0.00015 and top-1 agreement ≥ 99.90 %"
    )
    assert f"> ❌ {failure.replace('|', chr(92) + '|')}" in markdown  # its pipes escaped
    page = (run / "export" / "export_report.html").read_text()
    assert '<p class="problem"><strong>❌ Export FAILED: parity with PyTorch for student' in page
    # The cause, in red and in words.
    assert f'<p class="problem"><strong>❌ failed:</strong> {html.escape(failure)}</p>' in page
    fp32 = rows_of(report)[("student", "onnxruntime", "fp32")]
    assert fp32["parity"]["passed"] is False
    assert fp32["file"] == str(other.resolve())


def test_a_teacher_failing_parity_warns_and_the_export_passes(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The teacher's files are exported for the speedup figures only; what ships is the
    student. A teacher whose ONNX form drifts from PyTorch is reported (its row says FAIL, a
    warning says by how much), and the export still exits 0 when every student passes; the
    gate's speedup, timed on that file, says its baseline is not the teacher PyTorch runs."""
    recipe = write_recipe(
        workdir / "drifting.yaml",
        {
            "teacher": {"entrypoint": "tests.export.drifting:build"},
            "student": {"arch": "resnet8"},
            "method": {"name": "kd"},
            "train": {"epochs": 1, "batch_size": 64, "max_steps_per_epoch": 2, "device": "cpu"},
            "output": {"dir": str(workdir)},
        },
    )
    invoke("distill", str(recipe))
    run = workdir / "drifting"
    result = run_cli(capsys, "export", str(run), *QUICK)
    assert result.code == 0, result.stdout + result.stderr
    assert "export FAILED" not in result.stdout
    warned = " ".join(result.stderr.split())  # the console wraps long lines
    assert "warning: parity failed for teacher onnxruntime fp32: max |diff|" in warned
    rows = rows_of(report_of(run))
    assert rows[("teacher", "onnxruntime", "fp32")]["parity"]["passed"] is False
    assert rows[("teacher", "onnxruntime", "fp32")]["parity"]["top1_agreement"] == 100.0
    assert rows[("student", "onnxruntime", "fp32")]["parity"]["passed"] is True
    warnings = report_of(run)["warnings"]
    assert [line for line in warnings if line.startswith("parity failed")] == [
        next(line for line in warnings if line.startswith("parity failed for teacher "))
    ]
    markdown = (run / "export" / "export_report.md").read_text()
    assert "> ⚠️ parity failed for teacher onnxruntime fp32" in markdown
    assert report_of(run)["verdict"] == "passed"
    assert markdown.splitlines()[2].startswith("✅ **Export passed**: every student file")
    # The gate's speedup is against that teacher file: its detail says the baseline drifted.
    speedup = evaluate_gate(run, {"min_speedup": 0.01}).rules[-1]
    assert speedup.name == "speedup"
    assert "; the teacher's onnxruntime fp32 file failed parity with PyTorch (max |Δ| " in (
        speedup.detail
    )
    assert speedup.detail.endswith(
        "so its timing may not be the teacher's: see the export report's warning"
    )


def test_a_folder_where_the_export_writes_a_file_is_refused_before_any_work(
    exported_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It would stop the export halfway through swapping its files in."""
    run = Path(shutil.copytree(exported_run, tmp_path / "run"))
    for name in ("teacher.onnx", "export_report.md"):
        (run / "export" / name).unlink()
        (run / "export" / name).mkdir()
        before = folder_contents(run / "export")
        line = one_error_line(run_cli(capsys, "export", str(run), *QUICK))
        assert f"export/{name}: a folder where the export writes a file" in line
        assert folder_contents(run / "export") == before
        (run / "export" / name).rmdir()


def test_model_that_cannot_export(
    workdir: Path, teacher_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A teacher with a custom operator distils fine in eager PyTorch, but has no ONNX form.

    The failure comes after the student's new file is written: the earlier export must be
    left whole, its files still those its report describes."""
    recipe = write_recipe(
        workdir / "custom-op.yaml",
        {
            "teacher": {"entrypoint": "tests.export.unexportable:build"},
            "student": {"arch": "resnet8"},
            "method": {"name": "kd"},
            "train": {"epochs": 1, "batch_size": 64, "max_steps_per_epoch": 2, "device": "cpu"},
            "output": {"dir": str(workdir)},
        },
    )
    invoke("distill", str(recipe))
    run = workdir / "custom-op"
    invoke("export", str(run), "--no-teacher", *QUICK)
    before = folder_contents(run / "export")
    line = one_error_line(run_cli(capsys, "export", str(run), *QUICK))
    assert line.startswith("error: teacher: torch.onnx.export cannot export this model")
    assert "soft_clip" in line
    assert line.endswith("--no-teacher")
    assert folder_contents(run / "export") == before


def test_a_new_export_removes_what_the_last_one_wrote(
    distilled_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Files an earlier export made that this one does not are gone, not shipped stale; a
    --student-onnx file kept in export/ stays."""
    run = copy_run(distilled_run, tmp_path / "again", "completed")
    invoke("export", str(run), "--fp16", "--int8", "--calibration-images", "64", *QUICK)
    export = run / "export"
    shutil.copy(export / "student.onnx", export / "optimised.onnx")
    assert {"teacher.onnx", "teacher.int8.onnx", "student.fp16.onnx"} <= {
        path.name for path in export.iterdir()
    }
    invoke(
        "export", str(run), "--no-teacher", "--student-onnx", str(export / "student.onnx"), *QUICK
    )
    assert sorted(path.name for path in export.iterdir()) == [
        ".lock",
        "export_report.html",
        "export_report.json",
        "export_report.md",
        "optimised.onnx",
        "student.onnx",
    ]


@needs_posix_signals
def test_ctrl_c_keeps_the_previous_export_and_says_how_to_finish(
    distilled_run: Path, tmp_path: Path
) -> None:
    run = exported_copy(distilled_run, tmp_path / "stopped")
    before = folder_contents(run / "export")
    command = [sys.executable, "-m", "compressor", "export", str(run), "--runs", "100000"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list((run / "export").glob(".partial-*/teacher.onnx")):
        assert process.poll() is None and time.monotonic() < deadline, "the export did not start"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130
    assert f"export interrupted: run `compress export {run} --runs 100000` again" in (
        stderr.decode()
    )  # on stderr, so that a terminal shows it with the log in a file
    assert "Traceback" not in stderr.decode()
    assert folder_contents(run / "export") == before


@needs_posix_signals
def test_a_ctrl_c_that_torchs_exporter_wraps_in_its_own_error_is_still_a_stop(
    distilled_run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """torch.onnx.export catches a KeyboardInterrupt that lands inside it and raises an error
    of its own (TorchExportError, or an AttributeError of a half-imported torch._dynamo): that
    is the user's Ctrl-C (exit 130, how to finish), not "cannot export this model" (exit 2)."""
    run = exported_copy(distilled_run, tmp_path / "wrapped")
    before = folder_contents(run / "export")

    def exporter_wrapping_ctrl_c(*args: object) -> None:
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt as interrupt:
            raise RuntimeError("the exporter's own error") from interrupt

    monkeypatch.setattr(onnx_export, "_export", exporter_wrapping_ctrl_c)
    result = run_cli(capsys, "export", str(run), *QUICK)
    assert result.code == 130, result.stderr
    assert f"export interrupted: run `compress export {run}" in result.stderr
    assert "cannot export" not in result.stdout + result.stderr
    assert folder_contents(run / "export") == before
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_narrow_terminal_shows_every_figure_of_the_export_and_the_gate(
    distilled_run: Path, tmp_path: Path
) -> None:
    """At 40 columns rich shrank the tables' figures to "9…"; the table is drawn as wide as
    its figures need and the terminal wraps it."""
    run = copy_run(distilled_run, tmp_path / "narrow", "completed")
    narrow = {**os.environ, "COLUMNS": "40"}
    shown = ""
    for command in (["export", str(run), *QUICK], ["gate", str(run)]):
        done = subprocess.run(
            [sys.executable, "-m", "compressor", *command],
            capture_output=True,
            text=True,
            env=narrow,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        shown += done.stdout
    report = report_of(run)
    student = rows_of(report)["student", "onnxruntime", "fp32"]
    assert "…" not in shown
    assert f" {student['accuracy']:.2f} " in shown
    assert "onnxruntime" in shown and "student_accuracy" in shown


def test_a_min_agreement_flag_written_as_a_fraction_is_warned_about(
    distilled_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = copy_run(distilled_run, tmp_path / "fraction", "completed")
    result = run_cli(capsys, "export", str(run), "--no-teacher", "--min-agreement", "0.999", *QUICK)
    assert result.code == 0, result.stderr
    assert result.stderr.startswith("warning: --min-agreement is 0.999 %, a bar almost")
    assert "warning" not in result.stdout  # warnings go to stderr
    assert "export.min_agreement" not in result.stderr  # the flag's bar, not the recipe's


def test_export_run_without_warn_tells_its_log_the_warnings(
    distilled_run: Path, tmp_path: Path
) -> None:
    """The Python API: a caller that gives `log` alone still hears each warning, marked."""
    run = copy_run(distilled_run, tmp_path / "api", "completed")
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    recipe["export"] |= {"min_agreement": 0.999}
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    heard: list[str] = []
    options = ExportOptions(teacher=False, batch_sizes=[1], timed_runs=2, warmup_runs=1)
    export_run(run, options, log=heard.append)
    assert any(
        line.startswith(f"warning: {run / 'recipe.yaml'}: export.min_agreement is 0.999 %")
        for line in heard
    )
    # With neither `log` nor `warn`, nothing hears them but Python's warnings.
    with pytest.warns(CompressorWarning, match="export.min_agreement is 0.999 %"):
        export_run(run, options)


def test_export_run_and_read_run_leave_the_callers_random_stream_alone(
    distilled_run: Path, tmp_path: Path
) -> None:
    """Building the models drew from it: a notebook's numbers depended on whether it had
    exported first (a run already put the stream back)."""
    run = copy_run(distilled_run, tmp_path / "api", "completed")
    options = ExportOptions(teacher=True, batch_sizes=[1], timed_runs=2, warmup_runs=1)
    for call in (lambda: read_run(run), lambda: export_run(run, options)):
        torch.manual_seed(0)
        expected = torch.rand(3)
        torch.manual_seed(0)
        call()
        torch.testing.assert_close(torch.rand(3), expected)


def test_a_fraction_edited_into_the_runs_recipe_is_warned_about(
    distilled_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The export section of a run's recipe.yaml may change after training, past the
    preflight's warning: each bar this export applies from it is checked."""
    run = copy_run(distilled_run, tmp_path / "edited", "completed")
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    recipe["export"] |= {"min_agreement": 0.999, "fp16_min_agreement": 0.99}
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    result = run_cli(capsys, "export", str(run), "--no-teacher", "--fp16", *QUICK)
    assert result.code == 0, result.stderr
    said = " ".join(result.stderr.split())
    for setting in ("export.min_agreement is 0.999 %", "export.fp16_min_agreement is 0.99 %"):
        assert f"warning: {run / 'recipe.yaml'}: {setting}, a bar almost anything passes" in said


@needs_file_size_limits
def test_an_export_that_cannot_write_its_files_keeps_the_previous_one(
    distilled_run: Path, tmp_path: Path
) -> None:
    """A full disk halfway through an export: one line naming the file as it would have been
    published (not the staging folder, gone by then), exit 2, the previous export whole."""
    run = exported_copy(distilled_run, tmp_path / "full")
    before = folder_contents(run / "export")
    student_size = (run / "export" / "student.onnx").stat().st_size
    # The student fits; the teacher, several times its size, does not.
    full = compress_with_file_size_limit(2 * student_size, "export", str(run), *QUICK)
    assert full.returncode == 2, full.stderr
    assert [line for line in full.stderr.splitlines() if line.strip()] == [
        f"error: {run / 'export' / 'teacher.onnx'}: cannot write it (File too large); the file "
        "is larger than this process may write (see `ulimit -f`); nothing in "
        f"{run / 'export'} was changed"
    ]
    assert folder_contents(run / "export") == before


def test_ctrl_c_once_the_export_is_in_place_says_it_is_complete(
    distilled_run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Ctrl-C that lands after the publish (as the staging folder is removed, or while the
    summary prints) must not say "run it again; the previous export is as it was"."""
    run = copy_run(distilled_run, tmp_path / "late", "completed")

    class CtrlCOnRelease(FileLock):
        """The export's lock, released last, after the publish: a Ctrl-C lands then."""

        def release(self, force: bool = False) -> None:
            super().release(force)
            if not force:  # (filelock's own clean-up at garbage collection forces)
                raise KeyboardInterrupt

    def lock_then_ctrl_c(path: Path, busy: str) -> FileLock:
        lock = CtrlCOnRelease(path)
        lock.acquire(timeout=0)
        return lock

    with monkeypatch.context() as patch:
        patch.setattr(staging, "lock_or_refuse", lock_then_ctrl_c)
        late = run_cli(capsys, "export", str(run), "--no-teacher", *QUICK)
    assert late.code == 130
    html = run / "export" / "export_report.html"
    assert f"export complete, then stopped: reports in {html}" in late.stderr
    assert "export interrupted" not in late.stdout + late.stderr
    assert report_of(run)["results"]  # the new export is there, whole

    def print_then_ctrl_c(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "print_export", print_then_ctrl_c)
    printing = run_cli(capsys, "export", str(run), "--no-teacher", *QUICK)
    assert printing.code == 130
    assert "export complete, then stopped" in printing.stderr


def test_an_export_removes_the_staging_folder_a_killed_one_left(
    distilled_run: Path, tmp_path: Path
) -> None:
    """SIGKILL or a power cut skips all clean-up: the next export finds the folder and, holding
    the run's export lock, knows no live export owns it."""
    run = copy_run(distilled_run, tmp_path / "killed", "completed")
    abandoned = run / "export" / ".partial-killed"
    abandoned.mkdir(parents=True)
    (abandoned / "teacher.onnx").write_bytes(b"half written")
    invoke("export", str(run), "--no-teacher", *QUICK)
    assert not list((run / "export").glob(".partial-*"))
    assert report_of(run)["run"] == "killed"


def test_a_run_given_as_dot_is_named_by_its_folder(
    distilled_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`cd runs/kd && compress export .`: the report, its title and the ONNX metadata name
    the run's folder, not ""."""
    run = copy_run(distilled_run, tmp_path / "here", "completed")
    monkeypatch.chdir(run)
    invoke("export", ".", "--no-teacher", *QUICK)
    assert report_of(run)["run"] == "here"
    assert "compressor export: `here`" in (run / "export" / "export_report.md").read_text()
    metadata = onnx.load(run / "export" / "student.onnx").metadata_props
    assert {prop.key: prop.value for prop in metadata}["run"] == "here"


def test_an_export_section_edited_after_the_export_needs_a_new_one_before_the_gate(
    distilled_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The `export:` section of a run's recipe.yaml may be edited after training; no run
    hash sees the edit, so the gate compares the section the export read with the one there
    now, and names the export to run for the precision it gates."""
    run = copy_run(distilled_run, tmp_path / "edited", "completed")
    invoke("export", str(run), "--no-teacher", "--fp16", *QUICK)
    assert run_cli(capsys, "gate", str(run), "--precision", "fp16").code in (0, 1)
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    recipe["export"]["fp16_min_agreement"] = 99.9
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    line = one_error_line(run_cli(capsys, "gate", str(run), "--precision", "fp16"))
    assert "made with other export settings than the `export:` section of" in line
    assert line.endswith(f"(edited since); re-export with `compress export {run} --fp16`")
    # Edited through --resume, which writes the run's report again with the recipe's new hash:
    # still said as the export section that changed, not as "another recipe".
    written = (run / "report.json").read_text()
    run_report = json.loads(written)
    run_report["recipe_sha256"] = "1" * 64
    (run / "report.json").write_text(json.dumps(run_report))
    line = one_error_line(run_cli(capsys, "gate", str(run), "--precision", "fp16"))
    assert "made with other export settings than the `export:` section of" in line
    (run / "report.json").write_text(written)
    invoke("export", str(run), "--no-teacher", "--fp16", *QUICK)
    result = run_cli(capsys, "gate", str(run), "--precision", "fp16")
    assert result.code in (0, 1), result.stderr
    assert "99.90 %" in result.stdout  # the edited bar, applied by the new export


def test_a_second_export_of_one_run_is_refused_while_the_first_runs(
    distilled_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two exports publishing into one export/ would mix their files; the second one stops
    before writing anything, and the first one's staging folder is left alone."""
    run = exported_copy(distilled_run, tmp_path / "busy")
    (run / "export" / ".partial-live").mkdir()
    before = folder_contents(run / "export")
    with FileLock(run / "export" / ".lock"):
        line = one_error_line(run_cli(capsys, "export", str(run), *QUICK))
    assert "another export of this run is in progress, or a gate is reading it" in line
    assert folder_contents(run / "export") == before


def test_a_run_trained_again_while_the_export_read_it_is_not_exported(
    distilled_run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An --overwrite that completes after the export has read the run, before it takes the
    export lock: the old run's export would land in the new run's export/. The new student
    here is the same file (a deterministic retrain), so the gate's student check would not
    catch it."""
    run = copy_run(distilled_run, tmp_path / "retrained", "completed")
    read_splits = pipeline.read_splits

    def read_splits_while_trained_again(*args: object, **kwargs: object) -> object:
        claim_run_dir(RunDir(run), resume=False, overwrite=True).release()
        copy_run(distilled_run, tmp_path / "again", "completed")
        manifest = json.loads((tmp_path / "again" / "manifest.json").read_text())
        manifest["started"] = "2026-12-07T00:00:00+00:00"
        (tmp_path / "again" / "manifest.json").write_text(json.dumps(manifest))
        shutil.copytree(tmp_path / "again", run, dirs_exist_ok=True)
        return read_splits(*args, **kwargs)

    monkeypatch.setattr(pipeline, "read_splits", read_splits_while_trained_again)
    line = one_error_line(run_cli(capsys, "export", str(run), "--no-teacher", *QUICK))
    assert f"{run}: the run changed while the export read it (trained again" in line
    assert "nothing was exported: export it again once it completes" in line
    assert sorted(p.name for p in (run / "export").iterdir()) == [".lock"]


def test_a_set_aside_run_removed_while_the_export_read_it_is_not_made_again(
    distilled_run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The run an --overwrite set aside goes when the new run completes. An export of it
    that had read it crashed (exit 3), and the export/ it made anew stopped the next
    --overwrite ("in the way")."""
    run = copy_run(distilled_run, tmp_path / "run", "completed")
    claim_run_dir(RunDir(run), resume=False, overwrite=True).release()
    aside = tmp_path / "run.replaced"
    read_splits = pipeline.read_splits

    def read_splits_while_the_new_run_completes(*args: object, **kwargs: object) -> object:
        assert discard_replaced_run(RunDir(run)) == f"removed {aside}, the run this one replaced"
        return read_splits(*args, **kwargs)

    monkeypatch.setattr(pipeline, "read_splits", read_splits_while_the_new_run_completes)
    line = one_error_line(run_cli(capsys, "export", str(aside), "--no-teacher", *QUICK))
    assert line == f"error: {aside}: removed while the export read it; nothing was exported"
    assert sorted(tmp_path.iterdir()) == [run]


@pytest.mark.skipif(shutil.which("chattr") is None, reason="needs chattr (e2fsprogs)")
def test_an_export_folder_where_only_the_lock_is_writable_is_one_line(
    distilled_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The lock file can be taken in a folder where nothing can be created: the staging
    folder then fails to appear, which used to end in a traceback (exit 3)."""
    run = exported_copy(distilled_run, tmp_path / "locked-in")
    before = folder_contents(run / "export")
    with immutable(run / "export"):
        line = one_error_line(run_cli(capsys, "export", str(run), *QUICK))
    assert f"{run / 'export'}: cannot write the export there" in line
    assert "make the run directory writable" in line
    assert folder_contents(run / "export") == before


@pytest.mark.skipif(shutil.which("chattr") is None, reason="needs chattr (e2fsprogs)")
def test_a_file_that_cannot_be_replaced_while_publishing_is_one_line_and_completable(
    distilled_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Past the commit point a failed rename used to crash (exit 3); it is one line, and the
    export left waiting is refused by the gate and completed by the next export."""
    run = exported_copy(distilled_run, tmp_path / "stuck")
    with immutable(run / "export" / "export_report.html"):
        line = one_error_line(run_cli(capsys, "export", str(run), "--no-teacher", *QUICK))
    html = run / "export" / "export_report.html"
    assert f"{run / 'export'}: cannot put the new export in place (" in line
    assert f"cannot replace {html}); the rest of it waits in .publishing-" in line
    assert "then export the run again" in line
    gate = one_error_line(run_cli(capsys, "gate", str(run)))
    assert "stopped while putting its files in place (killed, or a file it" in gate
    invoke("export", str(run), "--no-teacher", *QUICK)
    assert run_cli(capsys, "gate", str(run)).code in (0, 1)


def test_an_export_folder_that_is_a_file(
    distilled_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = copy_run(distilled_run, tmp_path / "blocked", "completed")
    (run / "export").write_text("not a folder")
    line = one_error_line(run_cli(capsys, "export", str(run), *QUICK))
    assert "export: is a file, not a folder; move it away" in line
    assert (run / "export").read_text() == "not a folder"


def test_missing_run_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = one_error_line(run_cli(capsys, "export", str(tmp_path / "nowhere")))
    assert "no such run directory" in line
    # A name too long to look up crashed export and gate alike (exit 3).
    for command in ("export", "gate"):
        line = one_error_line(run_cli(capsys, command, str(tmp_path / ("a" * 300))))
        assert f"{'a' * 300}: cannot be read (File name too long); give the folder" in line


@pytest.mark.parametrize(
    ("run", "status", "command"),
    [
        ("distilled", "running", "compress distill RECIPE --resume"),
        ("distilled", "failed", "compress distill RECIPE --resume"),
        ("teacher", "interrupted", "compress train RECIPE --resume"),
        ("teacher", None, "compress train RECIPE --resume"),
        ("teacher", ["completed"], "compress train RECIPE --resume"),  # not a status: no crash
    ],
)
def test_an_unfinished_run_is_refused_with_its_own_resume_command(
    run: str,
    status: str | list[str] | None,
    command: str,
    teacher_run: Path,
    distilled_run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Its student.pt may be a previous run's (an --overwrite stopped early): not exportable."""
    source = distilled_run if run == "distilled" else teacher_run
    copy = copy_run(source, tmp_path / "copy", status)
    line = one_error_line(run_cli(capsys, "export", str(copy), *QUICK))
    if status == "running":  # and no process holds the run's lock
        assert "the run stopped without finishing: manifest.json says running" in line
    elif isinstance(status, list):
        assert f"the run's status is {status!r}, not completed" in line
    else:
        assert f"the run {STOPPED.get(status, 'has no status')}, not completed" in line
    assert with_recipe(f"`{command}`", copy) in line
    assert not (copy / "export").exists()


def test_run_without_student_or_manifest(
    distilled_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    completed = copy_run(distilled_run, tmp_path / "completed", "completed")
    (completed / "student.pt").unlink()
    line = one_error_line(run_cli(capsys, "export", str(completed)))
    repair = with_recipe("`compress distill RECIPE --resume` (it writes them again", completed)
    assert "no student.pt" in line and repair in line
    (completed / "manifest.json").unlink()
    line = one_error_line(run_cli(capsys, "export", str(completed)))
    assert "manifest.json: missing or unreadable" in line


def test_teacher_flag_on_a_run_without_teacher(
    teacher_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = one_error_line(run_cli(capsys, "export", str(teacher_run), "--teacher"))
    assert "the run has no teacher" in line


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_onnx_file(
    exported_run: Path,
    teacher_run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    damage: str,
) -> None:
    good = (exported_run / "export" / "teacher.onnx").read_bytes()
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x00not onnx at all" * 64 if damage == "garbage" else good[:2000])
    line = one_error_line(
        run_cli(capsys, "export", str(teacher_run), "--student-onnx", str(broken))
    )
    assert "not a readable ONNX model" in line and "corrupt" in line


def test_onnx_file_with_unsupported_opset(
    exported_run: Path, teacher_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = onnx.load(exported_run / "export" / "teacher.onnx")
    for entry in model.opset_import:
        if entry.domain == "":
            entry.version = 40
    future = tmp_path / "future.onnx"
    onnx.save(model, future)
    line = one_error_line(
        run_cli(capsys, "export", str(teacher_run), "--student-onnx", str(future))
    )
    assert "ONNX opset 40 is not supported" in line


def test_opset_the_exporter_cannot_write(
    teacher_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """torch's exporter writes opset 18+; the ResNets' Pad has no down-conversion to 17."""
    line = one_error_line(run_cli(capsys, "export", str(teacher_run), "--opset", "17", *QUICK))
    assert "ONNX opset 17 is not supported for this model" in line
    assert "--opset 18" in line


def test_opset_outside_the_recipe_range(
    teacher_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = one_error_line(run_cli(capsys, "export", str(teacher_run), "--opset", "12"))
    assert "opset" in line and "13" in line


def test_a_run_whose_teacher_file_is_gone_names_the_recipe_and_no_teacher(
    distilled_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    moved = tmp_path / "moved"
    shutil.copytree(distilled_run, moved, ignore=shutil.ignore_patterns("export"))
    recipe = yaml.safe_load((moved / "recipe.yaml").read_text())
    recipe["teacher"]["checkpoint"] = str(tmp_path / "gone" / "teacher.pt")
    (moved / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    result = run_cli(capsys, "export", str(moved), *QUICK)
    line = one_error_line(result)
    assert "the run's teacher" in line and str(moved / "recipe.yaml") in line
    assert "--no-teacher" in line and "gone" in line


def test_a_teacher_retrained_in_place_is_refused_and_the_same_weights_resaved_are_not(
    distilled_run: Path, teacher_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The manifest pins the teacher by its weights: another teacher at teacher.checkpoint
    would be timed and scored beside a student it did not teach."""
    copy = tmp_path / "copy"
    shutil.copytree(distilled_run, copy, ignore=shutil.ignore_patterns("export"))
    record = torch.load(teacher_run / "student.pt", map_location="cpu", weights_only=True)
    retrained = {**record, "state_dict": dict(record["state_dict"])}
    name = next(key for key in retrained["state_dict"] if key.endswith("weight"))
    retrained["state_dict"][name] = retrained["state_dict"][name] + 1e-3
    torch.save(retrained, tmp_path / "retrained.pt")
    torch.save(record["state_dict"], tmp_path / "resaved.pt")  # a bare state dict this time

    def export_with_teacher(checkpoint: Path):
        recipe = yaml.safe_load((copy / "recipe.yaml").read_text())
        recipe["teacher"]["checkpoint"] = str(checkpoint)
        (copy / "recipe.yaml").write_text(yaml.safe_dump(recipe))
        return run_cli(capsys, "export", str(copy), *QUICK)

    line = one_error_line(export_with_teacher(tmp_path / "retrained.pt"))
    assert f"{tmp_path / 'retrained.pt'}: not the teacher {copy} was distilled from" in line
    assert "--no-teacher" in line and str(copy / "recipe.yaml") in line
    assert not (copy / "export").exists()
    assert export_with_teacher(tmp_path / "resaved.pt").code == 0
    assert {row["model"] for row in report_of(copy)["results"]} == {"student", "teacher"}


def test_an_entrypoint_teacher_that_draws_new_weights_each_time_is_refused(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Distilled from one random teacher, it would be exported beside another: distill tells
    before training; export tells a builder whose weights changed since (new code, here)."""
    recipe = write_recipe(
        workdir / "unseeded.yaml",
        {
            "teacher": {"entrypoint": "tests.export.drifting:build", "kwargs": {"seed": None}},
            "student": {"arch": "resnet8"},
            "method": {"name": "kd"},
            "train": {"epochs": 1, "batch_size": 64, "max_steps_per_epoch": 2, "device": "cpu"},
            "output": {"dir": str(workdir)},
        },
    )
    line = one_error_line(run_cli(capsys, "distill", str(recipe)))
    assert line.startswith(
        "error: teacher.entrypoint tests.export.drifting:build: builds other weights on every "
        "call (two calls differ)"
    )
    assert not (workdir / "unseeded").exists()

    seeded = yaml.safe_load(recipe.read_text())
    seeded["teacher"]["kwargs"] = {"seed": 0}
    invoke("distill", str(write_recipe(recipe, seeded)))
    run = workdir / "unseeded"
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["teacher_weights_sha256"] = "0" * 64  # what an older build() made
    (run / "manifest.json").write_text(json.dumps(manifest))
    line = one_error_line(run_cli(capsys, "export", str(run), *QUICK))
    assert line.startswith(
        "error: teacher.entrypoint tests.export.drifting:build: built another teacher than "
        f"the one {run} was distilled from"
    )
    assert "must build the same weights every time" in line
    invoke("export", str(run), "--no-teacher", *QUICK)
