"""The run report: teacher vs student accuracy, size, cost, agreement and training curves."""

from __future__ import annotations

import html
import json
from typing import Any

from compressor.io import write_json, write_text
from compressor.provenance import SCHEMA_VERSION, recipe_hash
from compressor.recipe import Recipe
from compressor.reporting.plots import bar_plot, line_plot
from compressor.rundir import RunDir


def read_metrics(run: RunDir) -> list[dict[str, Any]]:
    if not run.metrics.exists():
        return []
    lines = run.metrics.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _table_rows(fields: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(quantity, teacher, student) rows; the teacher column is empty for plain training."""
    student, teacher = fields["student"], fields["teacher"] or {}

    def fmt(model: dict[str, Any], key: str, spec: str) -> str:
        return format(model[key], spec) if key in model else "—"

    rows = [
        ("test top-1 (%)", fmt(teacher, "accuracy", ".2f"), fmt(student, "accuracy", ".2f")),
        ("parameters", fmt(teacher, "parameters", ","), fmt(student, "parameters", ",")),
        ("FLOPs / image", fmt(teacher, "flops", ","), fmt(student, "flops", ",")),
    ]
    if teacher:
        rows.append(
            (
                "compression (params)",
                "1.0×",
                f"{teacher['parameters'] / max(student['parameters'], 1):.1f}× smaller",
            )
        )
    return rows


def _markdown(report: dict[str, Any]) -> str:
    fields = report["results"]
    lines = [
        f"## compressor run `{report['run']}`",
        "",
        f"Method **{report['method']}**, student `{report['student_arch']}`"
        + (f", teacher `{report['teacher_arch']}`" if report["teacher_arch"] else "")
        + f", data set `{fields['dataset']}` ({fields['test_samples']:,} test images), "
        f"{report['epochs']} epoch(s).",
        "",
        "| | teacher | student |",
        "|---|---:|---:|",
    ]
    lines += [
        f"| {name} | {teacher} | {student} |" for name, teacher, student in _table_rows(fields)
    ]
    if fields["top1_agreement"] is not None:
        lines += ["", f"Top-1 agreement teacher/student: **{fields['top1_agreement']:.2f} %**."]
    if report["epochs_log"]:
        last = report["epochs_log"][-1]
        lines += [
            "",
            f"Last epoch: loss {last['loss']:.4f}, train top-1 {last['train_accuracy']:.2f} %, "
            f"{last['images_per_second']:,.0f} images/s.",
        ]
    return "\n".join(lines) + "\n"


def _html(report: dict[str, Any], markdown: str) -> str:
    fields = report["results"]
    epochs_log = report["epochs_log"]
    images = []
    if epochs_log:
        x = [entry["epoch"] for entry in epochs_log]
        scored = [entry for entry in epochs_log if "test_accuracy" in entry]  # train.eval_every
        images.append(
            line_plot(
                "test top-1",
                [entry["epoch"] for entry in scored],
                {"student": [entry["test_accuracy"] for entry in scored]},
                "%",
            )
        )
        part_names = sorted({k for entry in epochs_log for k in entry if k.startswith("loss")})
        images.append(
            line_plot(
                "training loss",
                x,
                {
                    name: [entry.get(name, float("nan")) for entry in epochs_log]
                    for name in part_names
                },
                "loss",
            )
        )
    if fields["teacher"]:
        images.append(
            bar_plot(
                "test top-1",
                ["teacher", "student"],
                [fields["teacher"]["accuracy"], fields["student"]["accuracy"]],
                "%",
            )
        )
    rows = "".join(
        f"<tr><td>{html.escape(n)}</td><td>{html.escape(t)}</td><td>{html.escape(s)}</td></tr>"
        for n, t, s in _table_rows(fields)
    )
    figures = "".join(f'<img alt="plot" src="data:image/png;base64,{image}">' for image in images)
    summary = html.escape(markdown.splitlines()[2])
    title = f"compressor run {html.escape(report['run'])}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;color:#222}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}
td:first-child{{text-align:left}}img{{max-width:100%;margin:8px 0}}</style></head><body>
<h1>compressor run <code>{html.escape(report["run"])}</code></h1>
<p>{summary}</p>
<table><tr><th></th><th>teacher</th><th>student</th></tr>{rows}</table>
{figures}
</body></html>
"""


def write_run_report(run: RunDir, recipe: Recipe, fields: dict[str, Any]) -> dict[str, Any]:
    """Write report.json, report.md and report.html; return the JSON payload."""
    report = {
        "schema_version": SCHEMA_VERSION,
        "run": run.root.name,
        "recipe_sha256": recipe_hash(recipe),
        "method": recipe.method.name,
        "student_arch": recipe.student.arch,
        "teacher_arch": (recipe.teacher.arch or recipe.teacher.entrypoint or "checkpoint")
        if recipe.teacher
        else None,
        "epochs": recipe.train.epochs,
        "results": fields,
        "epochs_log": read_metrics(run),
    }
    markdown = _markdown(report)
    write_json(run.report("json"), report)
    write_text(run.report("md"), markdown)
    write_text(run.report("html"), _html(report, markdown))
    return report
