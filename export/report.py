"""export_report.json|md|html, all rendered from the JSON payload alone.

The Markdown is written to be pasted as a pull-request comment: one table a reviewer reads
at a glance (accuracy, parity verdict, p50 latency, size), speedups in a sentence, the full
percentiles folded away in a <details> block. The HTML adds plots and is self-contained.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from compressor.io import write_json, write_text
from compressor.reporting.plots import grouped_bar_plot
from compressor.reporting.run_report import size_change
from export.latency import is_noisy, spread_of, spread_text
from export.publish import REPORT_NAME
from export.results import NOISY_MARK


def write_reports(payload: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write the three files atomically; returns {"json" | "md" | "html": path}.

    The JSON goes last: it is what the gate reads, so its presence means the export finished.
    """
    paths = {suffix: out_dir / f"{REPORT_NAME}.{suffix}" for suffix in ("json", "md", "html")}
    write_text(paths["md"], markdown(payload))
    write_text(paths["html"], html_page(payload))
    write_json(paths["json"], payload)
    return paths


def _batches(payload: dict[str, Any]) -> list[str]:
    return [str(batch) for batch in payload["settings"]["batch_sizes"]]


def _size(size: int | None) -> str:
    """In binary units, named as such (315,167 bytes is 307.8 KiB, not 307.8 KB)."""
    if size is None:
        return "—"
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    return f"{size:,.1f} GiB"


def _verdict(result: dict[str, Any]) -> str:
    if result["parity"] is None:
        return "reference"
    return "✅ pass" if result["parity"]["passed"] else "❌ FAIL"


def _summary_rows(payload: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the main table, as display strings (shared by Markdown and HTML)."""
    batches = _batches(payload)
    header = ["model", "backend", "precision", "device", "top-1 %", "max abs diff"]
    header += ["mean abs diff", "agree %"]
    header += ["parity"] + [f"p50 ms @{b}" for b in batches]
    header += [f"img/s @{batches[-1]} (mean)", "size"]
    rows = []
    for result in payload["results"]:
        parity = result["parity"]
        latency = result["latency"]
        rows.append(
            [
                result["model"],
                result["backend"],
                result["precision"],
                result["device"],
                f"{result['accuracy']:.2f}",
                f"{parity['max_abs_diff']:.1e}" if parity else "—",
                f"{parity['mean_abs_diff']:.1e}" if parity else "—",
                f"{parity['top1_agreement']:.2f}" if parity else "—",
                _verdict(result),
                *(f"{latency[b]['p50_ms']:.3g}" if b in latency else "—" for b in batches),
                f"{latency[batches[-1]]['throughput_ips']:,.0f}" if batches[-1] in latency else "—",
                _size(result["size_bytes"]),
            ]
        )
    return header, rows


def _percentile_rows(payload: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    header = ["model", "backend", "precision", "batch", "p50", "p90", "p95", "p99", "mean"]
    header += ["IQR / p50", "img/s (mean)", "runs"]
    rows = []
    for result in payload["results"]:
        for batch, lat in result["latency"].items():
            rows.append(
                [
                    result["model"],
                    result["backend"],
                    result["precision"],
                    batch,
                    *(f"{lat[key]:.3g}" for key in ("p50_ms", "p90_ms", "p95_ms", "p99_ms")),
                    f"{lat['mean_ms']:.3g}",
                    "—" if (spread := spread_of(lat)) is None else spread_text(spread),
                    f"{lat['throughput_ips']:,.0f}",
                    str(lat["runs"]),
                ]
            )
    return header, rows


def signed_points(points: float) -> str:
    """+0.12 / -0.12, and +0.00 rather than the -0.00 a tiny negative rounds to."""
    return f"{round(points, 2) + 0.0:+.2f}"


def times(ratio: float) -> str:
    """A speedup: 2.87×, and two significant digits below 0.1, where 0.00× would hide a
    student that is hundreds of times slower."""
    return f"{ratio:.2f}×" if ratio >= 0.1 else f"{ratio:.2g}×"


def _precision_rows(payload: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """fp16/INT8 against fp32, same model and backend: the cost and the gain of each."""
    batches = _batches(payload)
    header = ["model", "backend", "precision", "top-1 %", "fp32 top-1 %", "Δ top-1 (points)"]
    header += ["agree % (vs PyTorch fp32)"] + [f"speedup @{b}" for b in batches] + ["file size"]
    rows = []
    for row in payload.get("precision_comparison", []):
        agreement = row["top1_agreement"]
        rows.append(
            [
                row["model"],
                row["backend"],
                row["precision"],
                f"{row['accuracy']:.2f}",
                f"{row['fp32_accuracy']:.2f}",
                signed_points(-row["accuracy_drop"]),  # as the console says it: -0.30 is lower
                "—" if agreement is None else f"{agreement:.2f}",
                *(
                    times(row["speedup"][b]) + (NOISY_MARK if b in row["noisy_speedups"] else "")
                    if b in row["speedup"]
                    else "—"
                    for b in batches
                ),
                size_change(row["size_ratio"]) if row["size_ratio"] else "—",
            ]
        )
    return header, rows


def _int8_sentence(payload: dict[str, Any]) -> str | None:
    int8 = payload.get("int8")
    if not int8:
        return None
    return (
        f"INT8: static Q/DQ (ONNX Runtime quantization), {int8['calibration_images']} "
        f"calibration images from the training split (seed {int8['calibration_seed']}), "
        f"{int8['calibration_method']} ranges, "
        f"{int8['activations']} activations, "
        f"{'7-bit (reduce_range)' if int8.get('reduce_range') else 'int8'} weights "
        f"{'per channel' if int8['per_channel'] else 'per tensor'}."
    )


def _speedup_sentence(payload: dict[str, Any]) -> str | None:
    """Each speedup marked as the terminal marks it when a timing behind it was noisy: the
    warning that says so is far below, and a reviewer reads the sentence."""
    noisy = _noisy_batches(payload)
    parts = [
        f"{backend} "
        + ", ".join(
            f"**{times(value)}** at batch {batch}"
            + (NOISY_MARK if batch in noisy.get(backend, ()) else "")
            for batch, value in by_batch.items()
        )
        for backend, by_batch in payload["speedup"].items()
    ]
    return "Student speedup over the teacher (p50, fp32): " + "; ".join(parts) if parts else None


def _reduced_precision_speedup_sentences(payload: dict[str, Any]) -> list[str]:
    """The student's fp16/INT8 file over the teacher, as `compress gate --precision` judges
    it (the teacher's file of that precision, else its fp32): a figure the gate printed and
    the report did not."""
    sentences = []
    for row in payload.get("precision_comparison", []):
        if not row.get("teacher_speedup"):
            continue
        noisy = set(row["noisy_teacher_speedups"])
        figures = ", ".join(
            f"**{times(value)}** at batch {batch}" + (NOISY_MARK if batch in noisy else "")
            for batch, value in row["teacher_speedup"].items()
        )
        sentences.append(
            f"Student {row['precision']} speedup over the teacher {row['teacher_precision']} "
            f"(p50): {row['backend']} {figures}"
        )
    return sentences


def _noisy_batches(payload: dict[str, Any]) -> dict[str, set[str]]:
    """Per backend, the batches (as the report's keys) whose fp32 teacher or student timing
    was noisy: `noisy_speedups` read from the written report."""
    noisy: dict[str, set[str]] = {}
    for result in payload["results"]:
        if result["precision"] == "fp32" and result["model"] in ("teacher", "student"):
            batches = {b for b, timing in result["latency"].items() if is_noisy(spread_of(timing))}
            noisy.setdefault(result["backend"], set()).update(batches)
    return noisy


_BACKEND_NAMES = {"pytorch": "PyTorch", "onnxruntime": "ONNX Runtime", "tensorrt": "TensorRT"}


def _intro(payload: dict[str, Any], code: Callable[[str], str]) -> str:
    """What the figures were measured on and with: a latency means nothing without the
    processor, the thread count and the versions behind it. `code` marks the user's names
    (the data set's) as the format needs."""
    settings, host, versions = payload["settings"], payload["host"], payload["versions"]
    where = host["cpu"]
    if host.get("cpu_count"):
        where += f" ({host['cpu_count']} logical cores)"
    where += f", {host['gpu']}" if host.get("gpu") else ""
    on_cpu = [
        _BACKEND_NAMES.get(backend, backend)
        for backend in dict.fromkeys(
            r["backend"] for r in payload["results"] if r["device"] == "cpu"
        )
    ]
    if on_cpu:
        alike = " alike" if len(on_cpu) > 1 else ""
        where += f", {host['threads']} CPU thread(s) for {' and '.join(on_cpu)}{alike}"
    ran = {r["backend"] for r in payload["results"]}
    used = ["torch", "onnx"] + [name for name in ("onnxruntime", "tensorrt") if name in ran]
    if "onnxruntime" in ran and not versions.get("onnxruntime"):
        used[used.index("onnxruntime")] = "onnxruntime-gpu"
    software = ", ".join(f"{name} {versions[name]}" for name in used if versions.get(name))
    return (
        f"{payload['eval_samples']:,} {code(payload['dataset'])} test images, recipe "
        f"{code(payload['recipe_sha256'][:12])}, ONNX opset {settings['opset']}. Latency: p50 of "
        f"{settings['timed_runs']} runs after {settings['warmup_runs']} warm-up, numpy in → "
        f"numpy out, on {where}. {software}; exported {payload['created'][:16].replace('T', ' ')}"
        " UTC."
    )


def _verdict_line(payload: dict[str, Any]) -> str:
    """The export's outcome first, as the CLI's exit code gives it: the rest of the report
    is the evidence."""
    verdict = payload["verdict"]
    if verdict == "passed":
        return "✅ **Export passed**: every student file matches PyTorch (" + _bars(payload) + ")."
    if verdict == "failed":
        failed = ", ".join(
            f"{r['model']} {r['backend']} {r['precision']}"
            for r in payload["results"]
            if r["model"] == "student" and r["parity"] and not r["parity"]["passed"]
        )
        return f"❌ **Export FAILED**: parity with PyTorch for {failed} ({_bars(payload)})."
    if verdict == "incomplete":
        return "❌ **Export incomplete**: some of the work asked for could not run (below)."
    return "⚠️ **Export not validated**: no backend ran the exported files (`--no-onnx`)."


def _bars(payload: dict[str, Any]) -> str:
    """The parity bars the rows were judged by, per precision (fp32 elementwise and by
    agreement; fp16 and INT8 by agreement alone), so a large INT8 difference beside a pass
    reads as what it is."""
    bars = []
    for result in payload["results"]:
        parity = result["parity"]
        if parity is None:
            continue
        bar = f"top-1 agreement ≥ {parity['min_agreement']:.2f} %"
        if parity["tolerance_max_abs"] is not None:
            bar = f"max |diff| ≤ {parity['tolerance_max_abs']:g} and " + bar
        bars.append(f"{result['precision']}: {bar}")
    return "; ".join(dict.fromkeys(bars)) + ", against PyTorch fp32"


def _given_file_sentence(payload: dict[str, Any], code: Callable[[str], str]) -> str | None:
    """The file the student rows measured, where it is not this run's export of student.pt
    (`--student-onnx`): a reviewer reading the table would otherwise take it for one."""
    given = payload.get("student_onnx")
    if not given:
        return None
    precision = f" ({given['precision']})" if given.get("precision") else ""
    return (
        f"The student rows measure {code(given['file'])}{precision}, given with "
        f"{code('--student-onnx')}, not an export of the run's student.pt."
    )


def _no_teacher_sentence(payload: dict[str, Any]) -> str | None:
    if any(r["model"] == "teacher" for r in payload["results"]):
        return None
    return (
        "The teacher was not exported (`--no-teacher`, or a run without a teacher), so there "
        "is no speedup over it."
    )


def _code(text: str) -> str:
    """`text` as a Markdown code span, whatever backticks it holds (a run folder's name):
    fenced by one more backtick than its longest run of them. A line break (a folder's name
    may hold one) is shown as `\\n`: it would end the heading or table row the span sits in,
    and leave the span open."""
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    ticks = "`" * (max(map(len, re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


# What renders inline within a line (a line's start is ours: "> ❌ "): emphasis, code, links,
# HTML tags and entities, table pipes, strikethrough, and the escape itself.
_MARKDOWN_MARKS = re.compile(r"([\\`*_\[\]<>|~&])")


def _plain(text: str) -> str:
    """A message of the terminal's (it names the user's paths and files) as Markdown that
    renders as the terminal printed it: its marks escaped, or a path holding `<img ...>` or
    `*x*` would render as HTML or emphasis in the pull-request comment it is posted to."""
    return _MARKDOWN_MARKS.sub(r"\\\1", " ".join(text.splitlines()))


def _is_text(header: list[str], index: int, text_columns: int) -> bool:
    """Left-aligned: the leading name columns, and the parity verdict ("✅ pass") wherever
    it stands among the figures."""
    return index < text_columns or header[index] == "parity"


def _markdown_table(header: list[str], rows: list[list[str]], text_columns: int) -> list[str]:
    align = ["---" if _is_text(header, i, text_columns) else "--:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _one_image(payload: dict[str, Any]) -> str:
    """How much one test image moves a top-1: on a small test set a Δ of 0.53 points is one
    image, and the table should say so."""
    return f"{100 / payload['eval_samples']:.2g}" if payload["eval_samples"] else "—"


def _tail_note(payload: dict[str, Any]) -> str | None:
    runs = payload["settings"]["timed_runs"]
    if runs >= 100:
        return None
    return (
        f"With {runs} timed runs, p95 and p99 rest on the slowest few of them: raise --runs "
        "(export.timed_runs) to read tail latency."
    )


def markdown(payload: dict[str, Any]) -> str:
    header, rows = _summary_rows(payload)
    lines = [f"## compressor export: {_code(payload['run'])}", "", _verdict_line(payload), ""]
    lines += [_intro(payload, _code), ""]
    given = _given_file_sentence(payload, _code)
    if given:
        lines += [given, ""]
    lines += _markdown_table(header, rows, text_columns=4)
    for sentence in (_speedup_sentence(payload), _no_teacher_sentence(payload)):
        if sentence:
            lines += ["", sentence]
    header, rows = _precision_rows(payload)
    if rows:
        lines += ["", _precision_heading(payload) + ":", ""]
        lines += _markdown_table(header, rows, text_columns=3)
    for sentence in [*_reduced_precision_speedup_sentences(payload), _int8_sentence(payload)]:
        if sentence:
            lines += ["", sentence]
    for failure in [*payload["problems"], *payload["failures"]]:
        lines += ["", f"> ❌ {_plain(failure)}"]
    for warning in payload["warnings"]:
        lines += ["", f"> ⚠️ {_plain(warning)}"]
    header, rows = _percentile_rows(payload)
    lines += ["", "<details><summary>Latency percentiles (ms)</summary>", ""]
    lines += _markdown_table(header, rows, text_columns=3)
    tail = _tail_note(payload)
    if tail:
        lines += ["", tail]
    lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


def _precision_heading(payload: dict[str, Any]) -> str:
    return (
        "Reduced precision against fp32 (same model, same backend; one test image is "
        f"{_one_image(payload)} points of top-1)"
    )


def _html_table(header: list[str], rows: list[list[str]], text_columns: int) -> str:
    """Text columns left-aligned, figures right-aligned, as in the Markdown."""

    def cell(tag: str, index: int, text: str) -> str:
        align = ' class="text"' if _is_text(header, index, text_columns) else ""
        scope = ' scope="col"' if tag == "th" else ""
        return f"<{tag}{scope}{align}>{html.escape(text)}</{tag}>"

    head = "".join(cell("th", index, text) for index, text in enumerate(header))
    body = "".join(
        "<tr>" + "".join(cell("td", index, text) for index, text in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _file_kind(file: str) -> str:
    """A size bar's group: the precision and the file's format, so student.pt and
    student.onnx (both fp32) are two bars, not one hiding the other."""
    suffix = Path(file).suffix
    return {".pt": "PyTorch .pt", ".onnx": "ONNX", ".engine": "TensorRT engine"}.get(suffix, suffix)


def _plots(payload: dict[str, Any]) -> list[tuple[str, str]]:
    """Accuracy per backend and p50 latency per batch size, student vs teacher side by side:
    (title, for the alt text; base64 PNG)."""
    results = payload["results"]
    groups = list(dict.fromkeys(f"{r['backend']}\n{r['precision']}" for r in results))
    models = list(dict.fromkeys(r["model"] for r in results))

    def series(value: Any) -> dict[str, list[float]]:
        table = {(r["model"], f"{r['backend']}\n{r['precision']}"): value(r) for r in results}
        return {m: [table.get((m, g), math.nan) for g in groups] for m in models}

    title = "top-1 accuracy per backend"
    accuracy = series(lambda r: r["accuracy"])
    images = [(title, grouped_bar_plot(title, groups, accuracy, "%", fmt=".2f"))]
    if any(r["precision"] != "fp32" for r in results):
        sizes = {
            (r["model"], f"{r['precision']}\n{_file_kind(r['file'])}"): r["size_bytes"]
            for r in results
            if r["file"]
        }
        kinds = list(dict.fromkeys(kind for _, kind in sizes))
        kib = {m: [(sizes.get((m, kind)) or math.nan) / 1024 for kind in kinds] for m in models}
        title = "size on disk per precision and file format"
        images.append((title, grouped_bar_plot(title, kinds, kib, "KiB", fmt=".0f")))
    for batch in _batches(payload):
        p50 = series(lambda r, b=batch: r["latency"].get(b, {}).get("p50_ms", math.nan))
        values = [v for column in p50.values() for v in column if not math.isnan(v)]
        # Eager PyTorch vs TensorRT can differ 100-fold: then only a log axis shows both.
        log = bool(values) and max(values) > 20 * min(values)
        title = f"p50 latency, batch {batch}"
        unit = "ms (log scale)" if log else "ms"
        images.append((title, grouped_bar_plot(title, groups, p50, unit, log=log)))
    return images


def _html_line(text: str) -> str:
    """A Markdown-marked sentence of ours (no user text in its marks) as HTML."""
    return html.escape(text).replace("**", "").replace("`", "")


def html_page(payload: dict[str, Any]) -> str:
    title = f"compressor export {html.escape(payload['run'])}"
    summary = _html_table(*_summary_rows(payload), text_columns=4)
    percentiles = _html_table(*_percentile_rows(payload), text_columns=3)
    sentences = [_speedup_sentence(payload), _no_teacher_sentence(payload)]
    precision_header, precision_rows = _precision_rows(payload)
    precision_html = (
        f"<h2>{html.escape(_precision_heading(payload))}</h2>"
        + _html_table(precision_header, precision_rows, text_columns=3)
        + "".join(
            f"<p>{_html_line(line)}</p>" for line in _reduced_precision_speedup_sentences(payload)
        )
        + "".join(f"<p>{html.escape(line)}</p>" for line in [_int8_sentence(payload)] if line)
        if precision_rows
        else ""
    )
    given = _given_file_sentence(payload, lambda text: f"<code>{html.escape(text)}</code>")
    given_html = f"<p>{given}</p>" if given else ""
    # Marked in words as well as in colour: a failure (exit 1) and a warning can read alike.
    failures = [*payload["problems"], *payload["failures"]]
    notes = "".join(
        f'<p class="problem"><strong>❌ failed:</strong> {html.escape(line)}</p>'
        for line in failures
    )
    notes += "".join(
        f'<p class="warning"><strong>⚠️ warning:</strong> {html.escape(line)}</p>'
        for line in payload["warnings"]
    )
    sentences_html = "".join(f"<p>{_html_line(line)}</p>" for line in sentences if line)
    figures = "".join(
        f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{image}">'
        for alt, image in _plots(payload)
    )
    tail = _tail_note(payload)
    tail_html = f"<p>{html.escape(tail)}</p>" if tail else ""
    verdict_class = "passed" if payload["verdict"] == "passed" else "problem"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;
text-align:right}}.text{{text-align:left}}img{{max-width:100%;margin:8px 0}}
.problem{{color:#b00}}.warning{{color:#a60}}.passed{{color:#070}}
h1,code{{overflow-wrap:anywhere}}</style></head><body>
<h1>{title}</h1>
<p class="{verdict_class}"><strong>{_html_line(_verdict_line(payload))}</strong></p>
<p>{html.escape(_intro(payload, lambda text: text))}</p>
{given_html}
{summary}
{sentences_html}
{precision_html}
{notes}
{figures}
<h2>Latency percentiles (ms)</h2>
{percentiles}
{tail_html}
</body></html>
"""
