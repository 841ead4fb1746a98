"""export/report.py: how the export report writes its figures."""

from __future__ import annotations

import copy
import re
from pathlib import Path

from compressor.provenance import cpu_model, package_versions
from compressor.recipe.sections import ExportConfig
from export.report import (
    _code,
    _file_kind,
    _percentile_rows,
    _precision_rows,
    _size,
    _speedup_sentence,
    html_page,
    markdown,
    signed_points,
    times,
)
from export.settings import ExportOptions, export_settings
from tests.export.helpers import report_of


def test_signed_points_never_read_minus_zero() -> None:
    assert [signed_points(v) for v in (-0.0, -0.001, 0.126, -1.5)] == [
        "+0.00",
        "+0.00",
        "+0.13",
        "-1.50",
    ]


def test_a_speedup_far_below_one_is_not_shown_as_zero() -> None:
    assert [times(v) for v in (2.871, 0.1, 0.0048)] == ["2.87×", "0.10×", "0.0048×"]


def test_a_speedup_resting_on_a_noisy_timing_is_marked_as_in_the_terminal() -> None:
    def result(model: str, spread_by_batch: dict[str, float]) -> dict:
        latency = {batch: {"p50_ms": 2.0, "iqr_ms": 2 * s} for batch, s in spread_by_batch.items()}
        return {"model": model, "backend": "onnxruntime", "precision": "fp32", "latency": latency}

    payload = {
        "speedup": {"onnxruntime": {"1": 2.5, "64": 3.0}},
        "results": [result("teacher", {"1": 0.4, "64": 0.01}), result("student", {"1": 0.02})],
    }
    assert _speedup_sentence(payload) == (
        "Student speedup over the teacher (p50, fp32): onnxruntime **2.50×** at batch 1 "
        "(noisy timing), **3.00×** at batch 64"
    )


def test_a_reduced_precision_speedup_resting_on_a_noisy_timing_is_marked() -> None:
    row = {
        "model": "student",
        "backend": "onnxruntime",
        "precision": "int8",
        "accuracy": 98.0,
        "fp32_accuracy": 98.5,
        "accuracy_drop": 0.5,
        "top1_agreement": 99.0,
        "speedup": {"1": 1.25, "64": 1.5},
        "noisy_speedups": ["1"],
        "size_ratio": 3.5,
    }
    payload = {"precision_comparison": [row], "settings": {"batch_sizes": [1, 64]}}
    _, (cells,) = _precision_rows(payload)
    assert cells[-3:] == ["1.25× (noisy timing)", "1.50×", "3.5× smaller"]
    # A tiny model's INT8 file, larger for its scales and zero points: never "0.7× smaller".
    _, (cells,) = _precision_rows({**payload, "precision_comparison": [{**row, "size_ratio": 0.7}]})
    assert cells[-1] == "1.4× larger"


def test_sizes_are_in_binary_units_named_as_such() -> None:
    assert [_size(n) for n in (None, 900, 315_167, 1_165_656)] == [
        "—",
        "900 B",
        "307.8 KiB",
        "1.1 MiB",
    ]


def test_the_percentile_table_does_not_show_a_noisy_spread_as_the_bar() -> None:
    timing = {"p50_ms": 1.0, "p90_ms": 1.0, "p95_ms": 1.0, "p99_ms": 1.0, "mean_ms": 1.0}
    latency = {"64": {**timing, "iqr_ms": 0.1004, "throughput_ips": 64_000.0, "runs": 50}}
    result = {"model": "teacher", "backend": "onnxruntime", "precision": "fp32"}
    header, (row,) = _percentile_rows({"results": [{**result, "latency": latency}]})
    assert header[9] == "IQR / p50"
    assert row[9] == "0.1004"  # "0.100" would read as the bar too
    del latency["64"]["iqr_ms"]  # a report from before it was kept
    _, (row,) = _percentile_rows({"results": [{**result, "latency": latency}]})
    assert row[9] == "—"


def test_the_report_leads_with_the_verdict_and_the_bars_each_precision_was_judged_by(
    int8_run: Path,
) -> None:
    """A large INT8 max |diff| beside "pass" is read against the bar it passed: agreement."""
    lines = (int8_run / "export" / "export_report.md").read_text().splitlines()
    assert lines[2] == (
        "✅ **Export passed**: every student file matches PyTorch (fp32: max |diff| ≤ 0.0001 "
        "and top-1 agreement ≥ 99.90 %; int8: top-1 agreement ≥ 98.00 %, against PyTorch fp32)."
    )
    page = (int8_run / "export" / "export_report.html").read_text()
    assert '<p class="passed"><strong>✅ Export passed: every student file' in page


def test_the_intro_names_the_processor_and_the_versions_behind_the_timings(
    int8_run: Path,
) -> None:
    report = report_of(int8_run)
    assert report["host"]["cpu"] == cpu_model()
    if "model name" in Path("/proc/cpuinfo").read_text(errors="replace"):
        assert report["host"]["cpu"] not in ("x86_64", "aarch64")  # what platform says
    versions = package_versions()
    intro = markdown(report).splitlines()[4]
    assert f"on {cpu_model()} ({report['host']['cpu_count']} logical cores), " in intro
    assert "thread(s) for PyTorch and ONNX Runtime alike." in intro
    assert f"torch {versions['torch']}, onnx {versions['onnx']}, onnxruntime " in intro
    assert f"exported {report['created'][:10]} " in intro


def test_an_export_that_ran_no_backend_and_no_teacher_says_so(int8_run: Path) -> None:
    """--no-onnx --no-teacher: the PyTorch rows alone. The verdict must not read as a pass,
    the intro must not name ONNX Runtime, and the missing speedup is explained."""
    report = copy.deepcopy(report_of(int8_run))
    report["results"] = [
        r for r in report["results"] if r["model"] == "student" and r["backend"] == "pytorch"
    ]
    report.update(verdict="unvalidated", speedup={}, precision_comparison=[], int8=None)
    text = markdown(report)
    assert text.splitlines()[2] == (
        "⚠️ **Export not validated**: no backend ran the exported files (`--no-onnx`)."
    )
    assert "thread(s) for PyTorch. torch " in text and "ONNX Runtime" not in text
    assert "The teacher was not exported (`--no-teacher`, or a run without a teacher)" in text
    assert "Student speedup" not in text


def test_markdown_keeps_a_run_name_with_backticks_in_one_code_span() -> None:
    assert [_code(name) for name in ("run", "a`b", "x``y", "`z")] == [
        "`run`",
        "``a`b``",
        "```x``y```",
        "`` `z ``",
    ]


def test_markdown_keeps_a_run_name_with_a_line_break_in_its_heading() -> None:
    """A folder's name may hold a line break: it would end the heading with the span open,
    and the rest of the name would render as Markdown (or HTML)."""
    assert _code("a\nb<img>") == "`a\\nb<img>`"


def test_messages_render_in_markdown_as_the_terminal_printed_them(int8_run: Path) -> None:
    """A warning or failure names the user's paths: posted as a pull-request comment, a path
    holding `<img ...>` or `*u*` rendered as HTML or emphasis."""
    report = copy.deepcopy(report_of(int8_run))
    path = "/tmp/x<b>/s`t<img src=x onerror=alert(1)>*u*|v&amp;.onnx"
    report.update(warnings=[f"--no-onnx: no backend timed {path}"], failures=[f"{path}\nfailed"])
    text = markdown(report)
    assert (
        "> ⚠️ --no-onnx: no backend timed "
        + (r"/tmp/x\<b\>/s\`t\<img src=x onerror=alert(1)\>\*u\*\|v\&amp;.onnx")
        in text.splitlines()
    )
    assert any(
        line.startswith("> ❌ /tmp/x") and line.endswith(" failed") for line in text.splitlines()
    )
    page = html_page(report)
    assert '<p class="warning"><strong>⚠️ warning:</strong> --no-onnx' in page
    assert '<p class="problem"><strong>❌ failed:</strong> /tmp/x&lt;b&gt;' in page


def test_both_reports_name_a_student_file_given_with_student_onnx(int8_run: Path) -> None:
    """The table reads as for an export of student.pt; the JSON alone named the file."""
    report = copy.deepcopy(report_of(int8_run))
    assert "--student-onnx" not in markdown(report)
    report["student_onnx"] = {"file": "/elsewhere/made by hand.onnx", "precision": "int8"}
    assert (
        "The student rows measure `/elsewhere/made by hand.onnx` (int8), given with "
        "`--student-onnx`, not an export of the run's student.pt."
    ) in markdown(report)
    assert "<code>/elsewhere/made by hand.onnx</code> (int8)" in html_page(report)


def test_html_aligns_text_left_and_figures_right_and_describes_each_plot(
    int8_run: Path,
) -> None:
    page = html_page(report_of(int8_run))
    precision_table = page[page.index("<h2>Reduced precision") :]
    first_row = re.search(r"<tr><td.*?</tr>", precision_table).group(0)
    cells = re.findall(r"<td( class=\"text\")?>", first_row)
    assert cells[:4] == [' class="text"'] * 3 + [""]  # model, backend, precision | top-1 %
    summary = page[: page.index("<h2>Reduced precision")]
    header = re.findall(r'<th scope="col"( class="text")?>([^<]*)</th>', summary)
    assert [bool(mark) for mark, name in header if name in ("device", "top-1 %", "parity")] == [
        True,
        False,
        True,
    ]
    assert re.findall(r'<img alt="([^"]*)"', page) == [
        "top-1 accuracy per backend",
        "size on disk per precision and file format",
        "p50 latency, batch 1",
        "p50 latency, batch 8",
    ]


def test_sizes_are_grouped_by_file_format_so_none_hides_another() -> None:
    """student.pt and student.onnx are both fp32: keyed by precision alone, one overwrote
    the other in the size plot."""
    names = ["runs/a/student.pt", "export/student.onnx", "export/student.int8.onnx", "s.engine"]
    assert [_file_kind(name) for name in names] == [
        "PyTorch .pt",
        "ONNX",
        "ONNX",
        "TensorRT engine",
    ]


def test_batch_sizes_are_timed_and_reported_in_increasing_order() -> None:
    """The last column is the throughput batch, the largest, as the gate reads it. The
    recipe keeps its order: sorted there, an existing recipe's hashes changed with an
    upgrade, and the gate asked for a re-export nobody needed."""
    recipe = ExportConfig(batch_sizes=[64, 1, 8])
    assert recipe.batch_sizes == [64, 1, 8]
    assert export_settings(recipe, ExportOptions()).batch_sizes == [1, 8, 64]
    assert export_settings(recipe, ExportOptions(batch_sizes=[32, 4])).batch_sizes == [4, 32]


def test_a_tail_percentile_of_few_runs_is_said_to_rest_on_them(int8_run: Path) -> None:
    report = report_of(int8_run)
    few = markdown({**report, "settings": {**report["settings"], "timed_runs": 20}})
    assert "With 20 timed runs, p95 and p99 rest on the slowest few of them" in few
    many = markdown({**report, "settings": {**report["settings"], "timed_runs": 100}})
    assert "p95 and p99 rest" not in many


def test_the_intro_names_onnxruntime_gpu_and_tensorrt_together(int8_run: Path) -> None:
    """A GPU box with --trt: onnxruntime-gpu stood in for TensorRT, not for onnxruntime."""
    report = copy.deepcopy(report_of(int8_run))
    report["versions"] |= {"onnxruntime": None, "onnxruntime-gpu": "1.22.0", "tensorrt": "10.9"}
    tensorrt = {**report["results"][1], "backend": "tensorrt", "device": "cuda"}
    report["results"].append(tensorrt)
    intro = markdown(report).splitlines()[4]
    assert "onnxruntime-gpu 1.22.0, tensorrt 10.9;" in intro


def test_the_reports_give_the_int8_student_s_speedup_over_the_int8_teacher(int8_run: Path) -> None:
    """The figure `compress gate --precision int8` judges, and the weights' width as made."""
    report = report_of(int8_run)
    (student,) = [r for r in report["precision_comparison"] if r["model"] == "student"]
    times_by_row = {(r["model"], r["precision"]): r["latency"] for r in report["results"]}
    teacher, int8 = times_by_row["teacher", "int8"], times_by_row["student", "int8"]
    for batch, ratio in student["teacher_speedup"].items():
        assert ratio == teacher[batch]["p50_ms"] / int8[batch]["p50_ms"]
    markdown_text = (int8_run / "export" / "export_report.md").read_text()
    first = f"{student['teacher_speedup']['1']:.2f}×"
    assert f"Student int8 speedup over the teacher int8 (p50): onnxruntime **{first}**" in (
        markdown_text
    )
    page = (int8_run / "export" / "export_report.html").read_text()
    assert f"Student int8 speedup over the teacher int8 (p50): onnxruntime {first}" in page
    weights = "7-bit (reduce_range)" if report["int8"]["reduce_range"] else "int8"
    assert f"activations, {weights} weights per channel." in markdown_text
