"""export_report.json|md|html, all rendered from the JSON payload alone.

The Markdown is written to be pasted as a pull-request comment: one table a reviewer reads
at a glance (accuracy, parity verdict, p50 latency, size), speedups in a sentence, the full
percentiles folded away in a <details> block. The HTML adds plots and is self-contained.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

from compressor.io import write_json, write_text
from compressor.reporting.plots import grouped_bar_plot
from export.latency import NOISY_CV, cv_text
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
    header += ["CV", "img/s (mean)", "runs"]
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
                    cv_text(lat["cv"]),
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
    header += ["agree % (vs PyTorch fp32)"] + [f"speedup @{b}" for b in batches] + ["smaller"]
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
                f"{row['size_ratio']:.1f}×" if row["size_ratio"] else "—",
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
        f"{int8['activations']} activations, int8 weights "
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


def _noisy_batches(payload: dict[str, Any]) -> dict[str, set[str]]:
    """Per backend, the batches (as the report's keys) whose fp32 teacher or student timing
    was noisy: `noisy_speedups` read from the written report."""
    noisy: dict[str, set[str]] = {}
    for result in payload["results"]:
        if result["precision"] == "fp32" and result["model"] in ("teacher", "student"):
            batches = {
                b for b, timing in result["latency"].items() if (timing.get("cv") or 0) > NOISY_CV
            }
            noisy.setdefault(result["backend"], set()).update(batches)
    return noisy


def _intro(payload: dict[str, Any]) -> str:
    settings = payload["settings"]
    host = payload["host"]
    where = host["cpu"] + (f", {host['gpu']}" if host.get("gpu") else "")
    where += f", {host['threads']} CPU thread(s) for PyTorch and ONNX Runtime alike"
    return (
        f"{payload['eval_samples']:,} `{payload['dataset']}` test images, recipe "
        f"`{payload['recipe_sha256'][:12]}`, ONNX opset {settings['opset']}. Latency: p50 of "
        f"{settings['timed_runs']} runs after {settings['warmup_runs']} warm-up, numpy in → "
        f"numpy out, on {where}."
    )


def _markdown_table(header: list[str], rows: list[list[str]], text_columns: int) -> list[str]:
    align = ["---"] * text_columns + ["--:"] * (len(header) - text_columns)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def markdown(payload: dict[str, Any]) -> str:
    header, rows = _summary_rows(payload)
    lines = [f"## compressor export: `{payload['run']}`", "", _intro(payload), ""]
    lines += _markdown_table(header, rows, text_columns=4)
    speedup = _speedup_sentence(payload)
    if speedup:
        lines += ["", speedup]
    header, rows = _precision_rows(payload)
    if rows:
        lines += ["", "Reduced precision against fp32 (same model, same backend):", ""]
        lines += _markdown_table(header, rows, text_columns=3)
    int8 = _int8_sentence(payload)
    if int8:
        lines += ["", int8]
    for problem in payload["problems"]:
        lines += ["", f"> ❌ {problem}"]
    for warning in payload["warnings"]:
        lines += ["", f"> ⚠️ {warning}"]
    header, rows = _percentile_rows(payload)
    lines += ["", "<details><summary>Latency percentiles (ms)</summary>", ""]
    lines += _markdown_table(header, rows, text_columns=3)
    lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _plots(payload: dict[str, Any]) -> list[str]:
    """Accuracy per backend and p50 latency per batch size: student vs teacher side by side."""
    results = payload["results"]
    groups = list(dict.fromkeys(f"{r['backend']}\n{r['precision']}" for r in results))
    models = list(dict.fromkeys(r["model"] for r in results))

    def series(value: Any) -> dict[str, list[float]]:
        table = {(r["model"], f"{r['backend']}\n{r['precision']}"): value(r) for r in results}
        return {m: [table.get((m, g), math.nan) for g in groups] for m in models}

    images = [
        grouped_bar_plot(
            "top-1 accuracy per backend",
            groups,
            series(lambda r: r["accuracy"]),
            "%",
            fmt=".2f",
        )
    ]
    if any(r["precision"] != "fp32" for r in results):
        sizes = {(r["model"], r["precision"]): r["size_bytes"] for r in results if r["file"]}
        precisions = list(dict.fromkeys(precision for _, precision in sizes))
        images.append(
            grouped_bar_plot(
                "size on disk per precision",
                precisions,
                {m: [(sizes.get((m, p)) or math.nan) / 1024 for p in precisions] for m in models},
                "KiB",
                fmt=".0f",
            )
        )
    for batch in _batches(payload):
        p50 = series(lambda r, b=batch: r["latency"].get(b, {}).get("p50_ms", math.nan))
        values = [v for column in p50.values() for v in column if not math.isnan(v)]
        # Eager PyTorch vs TensorRT can differ 100-fold: then only a log axis shows both.
        log = bool(values) and max(values) > 20 * min(values)
        images.append(
            grouped_bar_plot(
                f"p50 latency, batch {batch}",
                groups,
                p50,
                "ms (log scale)" if log else "ms",
                log=log,
            )
        )
    return images


def html_page(payload: dict[str, Any]) -> str:
    title = f"compressor export {html.escape(payload['run'])}"
    summary = _html_table(*_summary_rows(payload))
    percentiles = _html_table(*_percentile_rows(payload))
    speedup = _speedup_sentence(payload)
    precision_header, precision_rows = _precision_rows(payload)
    precision_html = (
        "<h2>Reduced precision against fp32</h2>"
        + _html_table(precision_header, precision_rows)
        + "".join(f"<p>{html.escape(line)}</p>" for line in [_int8_sentence(payload)] if line)
        if precision_rows
        else ""
    )
    notes = "".join(
        f'<p class="problem">{html.escape(line)}</p>' for line in payload["problems"]
    ) + "".join(f'<p class="warning">{html.escape(line)}</p>' for line in payload["warnings"])
    speedup_html = f"<p>{html.escape(speedup).replace('**', '')}</p>" if speedup is not None else ""
    figures = "".join(
        f'<img alt="plot" src="data:image/png;base64,{image}">' for image in _plots(payload)
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;
text-align:right}}td:nth-child(-n+4){{text-align:left}}img{{max-width:100%;margin:8px 0}}
.problem{{color:#b00}}.warning{{color:#a60}}</style></head><body>
<h1>{title}</h1>
<p>{html.escape(_intro(payload)).replace("`", "")}</p>
{summary}
{speedup_html}
{precision_html}
{notes}
{figures}
<h2>Latency percentiles (ms)</h2>
{percentiles}
</body></html>
"""
