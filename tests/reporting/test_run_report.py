"""The run report's Markdown and HTML, written by the real writer into a run directory.

tests/engine/test_run_cli.py checks the reports of real training runs; here the figures are
fixed by hand, so the exact sentences each file shows can be compared.
"""

from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path

from compressor.recipe import parse_recipe
from compressor.reporting.run_report import _loss_curves, write_run_report
from compressor.rundir import RunDir

FIELDS = {
    "dataset": "digits",
    "test_samples": 360,
    "student": {"accuracy": 99.1667, "parameters": 75_002, "flops": 1_494_272},
    "teacher": {"accuracy": 98.3333, "parameters": 269_434, "flops": 5_033_216},
    "top1_agreement": 98.6111,
}
EPOCHS = [
    {"epoch": 1, "loss": 1.5, "loss_ce": 1.0, "train_accuracy": 60.0, "test_accuracy": 70.0},
    {"epoch": 2, "loss": 0.4294, "loss_ce": 0.3, "train_accuracy": 99.08, "test_accuracy": 99.17},
]


def _write_report(run_root: Path, student_arch: str, fields: dict = FIELDS) -> RunDir:
    """report.md and report.html of a two-epoch KD run with the figures above."""
    run = RunDir(run_root)
    run_root.mkdir()
    lines = [json.dumps({**entry, "images_per_second": 1234.4}) for entry in EPOCHS]
    run.metrics.write_text("\n".join(lines) + "\n", encoding="utf-8")
    recipe = parse_recipe(
        {
            "teacher": {"entrypoint": "my_models:build"},
            "student": {"arch": student_arch},
            "method": {"name": "kd"},
            "train": {"epochs": 2},
        }
    )
    write_run_report(run, recipe, fields)
    return run


def _markdown_paragraphs(text: str) -> list[str]:
    """report.md's sentences (not its title or table), without Markdown's marks."""
    return [
        line.replace("**", "").replace("`", "")
        for line in text.splitlines()
        if line and not line.startswith(("#", "|"))
    ]


def _html_paragraphs(page: str) -> list[str]:
    """report.html's <p> texts, tags dropped and entities read back."""
    return [
        html.unescape(re.sub(r"<[^>]+>", "", body))
        for body in re.findall(r"<p>(.*?)</p>", page, re.S)
    ]


def test_html_says_what_the_markdown_says_rendered_as_html(tmp_path: Path) -> None:
    run = _write_report(tmp_path / "kd", "resnet8")
    markdown = run.report("md").read_text(encoding="utf-8")
    page = run.report("html").read_text(encoding="utf-8")
    assert _html_paragraphs(page) == _markdown_paragraphs(markdown)
    assert _markdown_paragraphs(markdown) == [
        "Method kd, student resnet8, teacher my_models:build, data set digits "
        "(360 test images), 2 epoch(s).",
        "Top-1 agreement teacher/student: 98.61 %.",
        "Last epoch: loss 0.4294, train top-1 99.08 %, 1,234 images/s.",
    ]
    assert (
        "<p>Method <strong>kd</strong>, student <code>resnet8</code>, teacher "
        "<code>my_models:build</code>, data set <code>digits</code> (360 test images), "
        "2 epoch(s).</p>"
    ) in page
    assert "<p>Top-1 agreement teacher/student: <strong>98.61 %</strong>.</p>" in page
    assert "**" not in page and "`" not in page


def test_html_escapes_the_users_names(tmp_path: Path) -> None:
    """A run folder or architecture name is the user's text, never markup."""
    run = _write_report(tmp_path / "exp<i>&1", "res<net>&8")
    page = run.report("html").read_text(encoding="utf-8")
    assert "<title>compressor run exp&lt;i&gt;&amp;1</title>" in page
    assert "student <code>res&lt;net&gt;&amp;8</code>" in page
    assert "<i>" not in page and "<net>" not in page


def test_size_against_the_teacher_reads_smaller_or_larger_never_a_fraction(
    tmp_path: Path,
) -> None:
    """A student bigger than its teacher (a wide one, or a tiny teacher) is "larger"."""
    smaller = _write_report(tmp_path / "small", "resnet8").report("md").read_text()
    assert "| size vs the teacher (params) | — | 3.6× smaller |" in smaller
    swapped = {**FIELDS, "student": FIELDS["teacher"], "teacher": FIELDS["student"]}
    larger = _write_report(tmp_path / "large", "resnet20", swapped).report("md").read_text()
    assert "| size vs the teacher (params) | — | 3.6× larger |" in larger
    assert "0.3×" not in larger


def test_the_loss_plot_says_its_parts_are_unweighted() -> None:
    """AMKD logs bss at lambda_bss 0 as a diagnostic (≈ 15 against a total of ≈ 1): the
    legend must not let it read as part of the loss trained on."""
    log = [
        {"epoch": 1, "loss": 1.2, "loss_ce": 1.0, "loss_bss": 15.0},
        {"epoch": 2, "loss": 0.8, "loss_ce": 0.7},
    ]
    curves = _loss_curves(log)
    assert list(curves) == ["loss (trained on)", "bss (unweighted)", "ce (unweighted)"]
    assert curves["loss (trained on)"] == [1.2, 0.8]
    assert curves["bss (unweighted)"][0] == 15.0 and math.isnan(curves["bss (unweighted)"][1])


def test_a_run_without_a_teacher_has_no_teacher_column(tmp_path: Path) -> None:
    """Plain training (`compress train`): one column of figures, not a column of dashes."""
    fields = {**FIELDS, "teacher": None, "top1_agreement": None}
    run = _write_report(tmp_path / "ce", "resnet8", fields)
    table = [line for line in run.report("md").read_text().splitlines() if line.startswith("|")]
    assert table == [
        "| | student |",
        "|---|---:|",
        "| test top-1 (%) | 99.17 |",
        "| parameters | 75,002 |",
        "| MFLOPs / image (2 × MACs) | 1.49 |",
    ]
    page = run.report("html").read_text()
    assert ">teacher</th>" not in page and '<th scope="col">student</th>' in page
    assert '<th scope="row">parameters</th>' in page


def test_the_flops_row_says_its_unit_and_how_it_counts(tmp_path: Path) -> None:
    """In MFLOPs as the terminal shows them, and named as 2 × MACs: papers often quote
    ResNet-20's 41 M MACs, which this table gives as 82 MFLOPs."""
    markdown = _write_report(tmp_path / "kd", "resnet8").report("md").read_text()
    assert "| MFLOPs / image (2 × MACs) | 5.03 | 1.49 |" in markdown


def test_every_plot_is_described_for_a_screen_reader(tmp_path: Path) -> None:
    page = _write_report(tmp_path / "kd", "resnet8").report("html").read_text()
    assert re.findall(r'<img alt="([^"]*)"', page) == [
        "student test top-1 per epoch",
        "training loss per epoch",
        "test top-1, teacher and student",
    ]
