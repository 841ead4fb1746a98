"""INT8 vs fp32 in ONNX Runtime for a run's student and teacher: accuracy drop and latency.

    .venv/bin/python benchmarks/int8.py RUN [--threads 1] [--repeats 5] [--write-docs]

First `compress export RUN --int8` runs for real (`export_run`): it writes the fp32 and INT8
ONNX files and scores each on the run's full test set (accuracy, top-1 agreement with PyTorch
fp32). Its latencies are single measurements taken one model after another; this script then
re-times the four files (student/teacher × fp32/INT8) interleaved, `--repeats` rounds of
`--runs` timed calls each, and reports the median of the rounds' p50s, so a burst of other
load hits every file alike. Speedups are fp32 median / INT8 median of the same model.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import sys
import textwrap
from pathlib import Path

import onnxruntime as ort

from compressor.errors import UserError
from export import ExportOptions, export_run
from export.latency import measure_latency
from export.onnxruntime_runner import OnnxRuntimeRunner
from export.run_inputs import read_run, read_splits

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "BENCHMARKS.md"
SECTION = "## INT8 post-training quantisation (ONNX Runtime, CPU)"
DOCS_WIDTH = 95
PRECISIONS = ("fp32", "int8")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a finished run directory (runs/<name>)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timing rounds")
    parser.add_argument("--runs", type=int, default=50, help="timed calls per round")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--calibration-images", type=int, default=None)
    parser.add_argument("--write-docs", action="store_true", help="update docs/BENCHMARKS.md")
    return parser.parse_args(argv)


def median_p50s(
    files: dict[tuple[str, str], Path], args: argparse.Namespace, run: Path
) -> dict[tuple[str, str, int], float]:
    """Median over rounds of each file's p50 (ms) per batch size, files interleaved."""
    _, test = read_splits(read_run(run))
    runners = {key: OnnxRuntimeRunner(path, threads=args.threads) for key, path in files.items()}
    rounds: dict[tuple[str, str, int], list[float]] = {}
    for _ in range(args.repeats):
        for (model, precision), runner in runners.items():
            for batch in args.batch_sizes:
                latency = measure_latency(
                    runner.infer, test.sample(batch), warmup=args.warmup, runs=args.runs
                )
                rounds.setdefault((model, precision, batch), []).append(latency.p50_ms)
    return {key: statistics.median(values) for key, values in rounds.items()}


def table(report: dict, p50: dict[tuple[str, str, int], float], batches: list[int]) -> list[str]:
    rows = {(r["model"], r["precision"]): r for r in report["results"] if r["file"]}
    rows = {k: v for k, v in rows.items() if v["backend"] == "onnxruntime"}
    header = "| model | precision | top-1 % | drop (points) | agree % vs PyTorch fp32 | "
    header += " | ".join(f"p50 ms @{b}" for b in batches) + " | "
    header += " | ".join(f"speedup @{b}" for b in batches) + " | size |"
    lines = [header, "|---|---|" + "--:|" * (3 + 2 * len(batches) + 1)]
    for model in ("student", "teacher"):
        if (model, "int8") not in rows:
            continue
        fp32 = rows[(model, "fp32")]
        for precision in PRECISIONS:
            row = rows[(model, precision)]
            drop = fp32["accuracy"] - row["accuracy"]
            cells = [
                model,
                precision,
                f"{row['accuracy']:.2f}",
                "—" if precision == "fp32" else f"{drop:+.2f}",
                f"{row['parity']['top1_agreement']:.2f}",
                *(f"{p50[(model, precision, b)]:.3g}" for b in batches),
                *(
                    "1.00×"
                    if precision == "fp32"
                    else f"{p50[(model, 'fp32', b)] / p50[(model, precision, b)]:.2f}×"
                    for b in batches
                ),
                f"{row['size_bytes'] / 1024:,.0f} KB",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def section(args: argparse.Namespace, argv: list[str], report: dict, p50: dict) -> str:
    int8 = report["int8"]
    threads = args.threads or "default (one per physical core)"
    command = " ".join([".venv/bin/python benchmarks/int8.py", *map(shlex.quote, argv)])
    lines = [
        SECTION,
        "",
        f"`{command}`",
        "",
        "`benchmarks/int8.py` runs `compress export RUN --int8` (static Q/DQ from ONNX Runtime's "
        f"quantisation tools: {int8['calibration_images']} class-balanced training images, "
        f"{int8['calibration_method']} ranges, {int8['activations']} activations, int8 weights "
        f"{'per channel' if int8['per_channel'] else 'per tensor'}), scores every file on the "
        f"{report['eval_samples']:,} {report['dataset']} test images, then re-times the fp32 and "
        f"INT8 files interleaved: median of {args.repeats} rounds' p50 of {args.runs} calls. "
        f"Run `{report['run']}`; {platform.machine()}, onnxruntime {ort.__version__}, "
        f"intra-op threads: {threads}.",
        "",
        *table(report, p50, args.batch_sizes),
    ]
    return "\n".join(_wrap(line) for line in lines) + "\n"


def _wrap(line: str) -> str:
    if line.startswith(("|", "`.venv")) or len(line) <= DOCS_WIDTH:
        return line
    return textwrap.fill(line, DOCS_WIDTH, break_long_words=False, break_on_hyphens=False)


def write_docs(text: str) -> None:
    """Replace this section of docs/BENCHMARKS.md, or append it; nothing else moves."""
    docs = DOCS.read_text(encoding="utf-8")
    start = docs.find(f"\n{SECTION}\n")
    if start < 0:
        docs = docs.rstrip("\n") + "\n\n" + text
    else:
        end = docs.find("\n## ", start + 1)
        docs = docs[: start + 1] + text + ("" if end < 0 else docs[end:])
    DOCS.write_text(docs, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    options = ExportOptions(
        int8=True,
        calibration_images=args.calibration_images,
        batch_sizes=args.batch_sizes,
        warmup_runs=args.warmup,
        timed_runs=args.runs,
    )
    try:
        result = export_run(args.run, options, log=print)
    except UserError as error:
        print("\n".join(f"error: {line}" for line in error.lines), file=sys.stderr)
        return 2
    report = json.loads(result.files["json"].read_text(encoding="utf-8"))
    files = {
        (r["model"], r["precision"]): args.run / r["file"]
        for r in report["results"]
        if r["backend"] == "onnxruntime"
    }
    text = section(args, argv, report, median_p50s(files, args, args.run))
    print("\n" + text)
    if args.write_docs:
        write_docs(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
