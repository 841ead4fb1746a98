"""The run report: teacher vs student accuracy, size, cost, agreement and training curves."""

from __future__ import annotations

import html
from typing import Any

from compressor.io import loads_json, write_json, write_text
from compressor.provenance import SCHEMA_VERSION, recipe_hash
from compressor.recipe import Recipe
from compressor.reporting.plots import bar_plot, line_plot
from compressor.rundir import RunDir


def read_metrics(run: RunDir) -> list[dict[str, Any]]:
    if not run.metrics.exists():
        return []
    lines = run.metrics.read_text(encoding="utf-8").splitlines()
    return [loads_json(line) for line in lines if line.strip()]


def _table(fields: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The models' columns and the (quantity, value per model) rows; plain training has no
    teacher, so no teacher column."""
    student, teacher = fields["student"], fields["teacher"]
    models = [teacher, student] if teacher else [student]

    def row(quantity: str, key: str, spec: str, unit: int = 1) -> list[str]:
        return [
            quantity,
            *(format(model[key] / unit if unit > 1 else model[key], spec) for model in models),
        ]

    rows = [
        row("test top-1 (%)", "accuracy", ".2f"),
        row("parameters", "parameters", ","),
        # Counted as 2 × multiply-accumulates (models/stats.py); many papers quote the MACs.
        row("MFLOPs / image (2 × MACs)", "flops", ",.2f", unit=10**6),
    ]
    if teacher:
        rows.append(["size vs the teacher (params)", "—", _relative_size(teacher, student)])
    return (["teacher", "student"] if teacher else ["student"]), rows


def _relative_size(teacher: dict[str, Any], student: dict[str, Any]) -> str:
    return size_change(teacher["parameters"] / max(student["parameters"], 1))


def size_change(ratio: float) -> str:
    """ "3.6× smaller" for a size ratio (before / after) of 3.6; one under 1 (a student wider
    than its teacher; an INT8 file of a tiny model, larger for its scales) reads "1.4× larger",
    never "0.7× smaller"."""
    if ratio >= 1:
        return f"{ratio:.1f}× smaller"
    return f"{1 / max(ratio, 1e-9):.1f}× larger"


# A piece of a sentence and how it stands out: "" (plain), "strong" or "code". The report's
# sentences are written once as these pieces, so report.md and report.html say the same.
Span = tuple[str, str]


def _summary(report: dict[str, Any]) -> list[Span]:
    """What was distilled into what, on which data, for how long."""
    fields = report["results"]
    spans: list[Span] = [
        ("Method ", ""),
        (report["method"], "strong"),
        (", student ", ""),
        (report["student_arch"], "code"),
    ]
    if report["teacher_arch"]:
        spans += [(", teacher ", ""), (report["teacher_arch"], "code")]
    spans += [
        (", data set ", ""),
        (fields["dataset"], "code"),
        (f" ({fields['test_samples']:,} test images), {report['epochs']} epoch(s).", ""),
    ]
    return spans


def _notes(report: dict[str, Any]) -> list[list[Span]]:
    """The paragraphs after the table: agreement (with a teacher) and the last epoch."""
    fields = report["results"]
    notes: list[list[Span]] = []
    if fields["top1_agreement"] is not None:
        notes.append(
            [
                ("Top-1 agreement teacher/student: ", ""),
                (f"{fields['top1_agreement']:.2f} %", "strong"),
                (".", ""),
            ]
        )
    if report["epochs_log"]:
        last = report["epochs_log"][-1]
        notes.append(
            [
                (
                    f"Last epoch: loss {last['loss']:.4f}, train top-1 "
                    f"{last['train_accuracy']:.2f} %, {last['images_per_second']:,.0f} images/s.",
                    "",
                )
            ]
        )
    return notes


def _markdown_text(spans: list[Span]) -> str:
    marks = {"": "", "strong": "**", "code": "`"}
    return "".join(f"{marks[style]}{text}{marks[style]}" for text, style in spans)


def _html_text(spans: list[Span]) -> str:
    """Every piece escaped: run, data set and architecture names are the user's text."""
    return "".join(
        f"<{style}>{html.escape(text)}</{style}>" if style else html.escape(text)
        for text, style in spans
    )


def _markdown(report: dict[str, Any]) -> str:
    lines = [
        f"## compressor run `{report['run']}`",
        "",
        _markdown_text(_summary(report)),
        "",
    ]
    columns, rows = _table(report["results"])
    lines += ["| | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    for note in _notes(report):
        lines += ["", _markdown_text(note)]
    return "\n".join(lines) + "\n"


def _loss_curves(epochs_log: list[dict[str, Any]]) -> dict[str, list[float]]:
    """The loss trained on, and its parts as the methods log them: before their weights (a
    part with weight 0, such as AMKD's bss at lambda_bss 0, is logged as a diagnostic), which
    the legend says, so that no part reads as a share of the total."""
    names = sorted({key for entry in epochs_log for key in entry if key.startswith("loss_")})
    curves = {"loss (trained on)": [entry["loss"] for entry in epochs_log]}
    for name in names:
        label = f"{name.removeprefix('loss_')} (unweighted)"
        curves[label] = [entry.get(name, float("nan")) for entry in epochs_log]
    return curves


def _html(report: dict[str, Any]) -> str:
    """report.md's facts as a page that needs nothing else to open, plus the curves."""
    fields = report["results"]
    epochs_log = report["epochs_log"]
    images: list[tuple[str, str]] = []  # (what it shows, for the alt text; base64 PNG)
    if epochs_log:
        x = [entry["epoch"] for entry in epochs_log]
        scored = [entry for entry in epochs_log if "test_accuracy" in entry]  # train.eval_every
        title = "student test top-1 per epoch"
        curve = {"student": [entry["test_accuracy"] for entry in scored]}
        images.append((title, line_plot(title, [entry["epoch"] for entry in scored], curve, "%")))
        title = "training loss per epoch"
        images.append((title, line_plot(title, x, _loss_curves(epochs_log), "loss")))
    if fields["teacher"]:
        title = "test top-1, teacher and student"
        accuracies = [fields["teacher"]["accuracy"], fields["student"]["accuracy"]]
        images.append((title, bar_plot(title, ["teacher", "student"], accuracies, "%")))
    columns, table = _table(fields)
    # Header cells for the columns and for each row's label: a screen reader then names the
    # figure a cell holds ("student, parameters") rather than reading bare numbers.
    head = '<tr><th scope="col">measure</th>' + "".join(
        f'<th scope="col">{html.escape(column)}</th>' for column in columns
    )
    body = "".join(
        f'<tr><th scope="row">{html.escape(label)}</th>'
        + "".join(f"<td>{html.escape(cell)}</td>" for cell in cells)
        + "</tr>"
        for label, *cells in table
    )
    rows = f"<thead>{head}</tr></thead><tbody>{body}</tbody>"
    figures = "".join(
        f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{image}">'
        for alt, image in images
    )
    notes = "".join(f"<p>{_html_text(note)}</p>\n" for note in _notes(report))
    title = f"compressor run {html.escape(report['run'])}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;color:#222}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}
th[scope=row],th:first-child{{text-align:left}}img{{max-width:100%;margin:8px 0}}
h1,code{{overflow-wrap:anywhere}}</style></head><body>
<h1>compressor run <code>{html.escape(report["run"])}</code></h1>
<p>{_html_text(_summary(report))}</p>
<table>{rows}</table>
{notes}{figures}
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
    # The JSON last, as the export writes its reports: it is the one programs read, so a
    # process stopped between the files leaves the previous JSON, not a new one beside an
    # old Markdown and HTML.
    write_text(run.report("md"), _markdown(report))
    write_text(run.report("html"), _html(report))
    write_json(run.report("json"), report)
    return report
