"""INT8 vs fp32 in ONNX Runtime for a run's student and teacher: accuracy drop and latency.

    .venv/bin/python benchmarks/int8.py RUN [--threads 1] [--repeats 5] [--write-docs]

First `compress export RUN --int8` runs for real (`export_run`), on a copy of the run in a
temporary folder, so that the run's own export stays as it is: it writes the fp32 and INT8
ONNX files and scores each on the run's full test set (accuracy, top-1 agreement with PyTorch
fp32). Its latencies are single measurements taken one model after another; this script then
re-times the four files (student/teacher × fp32/INT8) interleaved, `--repeats` rounds of
`--runs` timed calls each, and reports the median of the rounds' p50s, so a burst of other
load hits every file alike. Speedups are fp32 median / INT8 median of the same model.

`--symmetric` also quantises each model with symmetric int8 activations (S8S8, the form
TensorRT needs) and times it alongside, to show what the activation type costs in ONNX Runtime.
`--other-weights` also quantises it with the weight width `reduce_range: auto` did not choose
here (8 bits on an x86 CPU without VNNI, where auto takes 7; 7 bits elsewhere), to show what
the choice does to agreement and speed on this CPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import onnxruntime as ort
from arguments import count
from docs_section import replace_section, wrap

from compressor.errors import UserError
from compressor.rundir import RunDir, read_completed_run
from export import ExportOptions, export_run
from export.latency import measure_latency
from export.onnxruntime_runner import OnnxRuntimeRunner
from export.quantize import calibration_batch, quantize_int8, resolve_settings
from export.run_inputs import RunInputs, read_run, read_splits
from export.validate import EvalSet, accuracy, predict

SECTION = "## INT8 post-training quantisation (ONNX Runtime, CPU)"
PRECISIONS = ("fp32", "int8", "int8 7-bit w", "int8 8-bit w", "int8 s8s8")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a finished run directory (runs/<name>)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64])
    parser.add_argument(
        "--threads", type=count(1), default=None, help="ONNX Runtime intra-op threads"
    )
    parser.add_argument("--repeats", type=count(1), default=5, help="interleaved timing rounds")
    parser.add_argument("--runs", type=int, default=50, help="timed calls per round")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--calibration-images", type=int, default=None)
    parser.add_argument(
        "--symmetric", action="store_true", help="also time S8S8 (TensorRT's form) in ONNX Runtime"
    )
    parser.add_argument(
        "--other-weights",
        action="store_true",
        help="also time the weight width (reduce_range) auto did not choose on this CPU",
    )
    parser.add_argument("--write-docs", action="store_true", help="update docs/BENCHMARKS.md")
    return parser.parse_args(argv)


def variant_rows(
    report: dict,
    inputs: RunInputs,
    train: EvalSet,
    test: EvalSet,
    args: argparse.Namespace,
    precision: str,
    update: dict,
) -> list[dict]:
    """The fp32 files quantised again with `update` over the recipe's export.int8 settings,
    scored on the test set (result rows shaped like the export report's, as `precision`)."""
    run = inputs.run.root
    config = inputs.recipe.export.int8.model_copy(update=update)
    if args.calibration_images is not None:
        config = config.model_copy(update={"calibration_images": args.calibration_images})
    settings = resolve_settings(config, tensorrt=False)
    images = calibration_batch(train, config.calibration_images, config.seed)
    fp32 = {
        r["model"]: r
        for r in report["results"]
        if r["backend"] == "onnxruntime" and r["precision"] == "fp32"
    }
    rows = []
    for model, row in fp32.items():
        target = run / "export" / f"{model}.{precision.replace(' ', '-')}.onnx"
        quantize_int8(run / row["file"], target, images, settings, name=model)
        logits = predict(OnnxRuntimeRunner(target).infer, test, 256)
        reference = predict(OnnxRuntimeRunner(run / row["file"]).infer, test, 256)
        agreement = 100.0 * float((logits.argmax(1) == reference.argmax(1)).mean())
        rows.append(
            {
                "model": model,
                "backend": "onnxruntime",
                "precision": precision,
                "file": str(target.relative_to(run)),
                "size_bytes": target.stat().st_size,
                "accuracy": accuracy(logits, test.labels),
                "parity": {"top1_agreement": agreement},
            }
        )
    return rows


def other_weights(report: dict) -> tuple[str, dict]:
    """The row label and setting of the weight width the export's `auto` did not choose."""
    if report["int8"]["reduce_range"]:
        return "int8 8-bit w", {"reduce_range": False}
    return "int8 7-bit w", {"reduce_range": True}


def median_p50s(
    files: dict[tuple[str, str], Path], args: argparse.Namespace, test: EvalSet
) -> dict[tuple[str, str, int], float]:
    """Median over rounds of each file's p50 (ms) per batch size, files interleaved."""
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


Rows = dict[tuple[str, str], dict]  # (model, precision) → an ONNX Runtime result row
P50 = dict[tuple[str, str, int], float]  # (model, precision, batch) → median p50 (ms)


def table(rows: Rows, p50: P50, batches: list[int]) -> list[str]:
    header = "| model | precision | top-1 % | drop (points) | agree % vs fp32 | "
    header += " | ".join(f"p50 ms @{b}" for b in batches) + " | "
    header += " | ".join(f"speedup @{b}" for b in batches) + " | size |"
    lines = [header, "|---|---|" + "--:|" * (3 + 2 * len(batches) + 1)]
    for model, precision in rows:
        row, fp32 = rows[(model, precision)], rows[(model, "fp32")]
        cells = [
            model,
            precision,
            f"{row['accuracy']:.2f}",
            "—" if precision == "fp32" else f"{fp32['accuracy'] - row['accuracy']:+.2f}",
            f"{row['parity']['top1_agreement']:.2f}",
            *(f"{p50[(model, precision, b)]:.3g}" for b in batches),
            *(f"{p50[(model, 'fp32', b)] / p50[(model, precision, b)]:.2f}×" for b in batches),
            f"{row['size_bytes'] / 1024:,.0f} KiB",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def verdict(rows: Rows, p50: P50, batch: int) -> str:
    """Issue 9's targets: accuracy drop ≤ 0.5 points and a latency gain at the largest batch."""
    parts = []
    for model, precision in rows:
        if precision != "int8":
            continue
        drop = rows[(model, "fp32")]["accuracy"] - rows[(model, precision)]["accuracy"]
        speedup = p50[(model, "fp32", batch)] / p50[(model, precision, batch)]
        met = drop <= 0.5 and speedup > 1.0
        parts.append(
            f"{model}: drop {drop:+.2f} points, {speedup:.2f}× at batch {batch} — "
            f"{'met' if met else 'NOT met'}"
        )
    return "Targets (accuracy drop ≤ 0.5 points, a latency gain at batch " + (
        f"{batch}): " + "; ".join(parts) + "."
    )


def section(
    args: argparse.Namespace,
    argv: list[str],
    report: dict,
    record: RunInputs,
    rows: Rows,
    p50: P50,
) -> str:
    int8 = report["int8"]
    threads = args.threads or "default (one per physical core)"
    command = " ".join([".venv/bin/python benchmarks/int8.py", *map(shlex.quote, argv)])
    recipe = record.recipe
    origin = f"distilled from {recipe.teacher.arch}" if recipe.teacher is not None else "trained"
    lines = [
        SECTION,
        "",
        f"`{command}`",
        "",
        "`benchmarks/int8.py` runs `compress export RUN --int8` (static Q/DQ from ONNX Runtime's "
        f"quantisation tools: {int8['calibration_images']} class-balanced training images, "
        f"{int8['calibration_method']} ranges, {int8['activations']} activations, "
        f"{'7-bit (reduce_range)' if int8['reduce_range'] else 'int8'} weights "
        f"{'per channel' if int8['per_channel'] else 'per tensor'}), scores every file on the "
        f"{report['eval_samples']:,} {report['dataset']} test images, then re-times the files "
        f"interleaved: median of {args.repeats} rounds' p50 of {args.runs} calls. Run "
        f"`{report['run']}`: {record.record['arch']} {origin} with "
        f"`{recipe.method.name}` for {recipe.train.epochs} epochs; {platform.machine()}, "
        f"onnxruntime {ort.__version__}, intra-op threads: {threads}. The export runs on a "
        "copy of the run in a temporary folder: the run's own export stays as it is. "
        "`benchmarks/results/` is git-ignored: train a run first (`benchmarks/quality.py` "
        "makes them, under `<out>/runs/`) and give its directory; any completed run will do."
        + (
            " `int8 s8s8` is the same model with symmetric int8 activations, the form TensorRT "
            "needs (`export.int8.activations: int8`, chosen by `auto` with `--trt`)."
            if args.symmetric
            else ""
        )
        + (
            f" `{other_weights(report)[0]}` is the same model with the weight width "
            "`export.int8.reduce_range: auto` did not choose on this CPU (7 bits on an x86 CPU "
            "without VNNI, whose int8 kernels saturate; 8 elsewhere)."
            if args.other_weights
            else ""
        ),
        "",
        *table(rows, p50, args.batch_sizes),
        "",
        verdict(rows, p50, max(args.batch_sizes)),
    ]
    return "\n".join(wrap(line) for line in lines) + "\n"


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
    with tempfile.TemporaryDirectory(prefix="int8-bench-") as scratch:
        try:
            run = scratch_copy(args.run, Path(scratch))
            result = export_run(run, options, log=print)
        except UserError as error:
            print("\n".join(f"error: {line}" for line in error.lines), file=sys.stderr)
            return 2
        return measure(args, argv, run, result.files["json"])


def scratch_copy(run: Path, into: Path) -> Path:
    """The run, without its export and checkpoints, copied into `into`: the export this script
    makes (INT8 only, and S8S8 files beside it) would otherwise replace the run's own, and
    remove what that one made and this does not (an fp16 student)."""
    read_completed_run(RunDir(run))  # refused here, before anything is copied
    copy = into / run.resolve().name
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("export", "checkpoints"))
    return copy


def measure(args: argparse.Namespace, argv: list[str], run: Path, report_file: Path) -> int:
    """Re-time the exported files (and the S8S8 ones, --symmetric, and those of the other
    weight width, --other-weights); print, --write-docs."""
    report = json.loads(report_file.read_text(encoding="utf-8"))
    inputs = read_run(run)
    # Read once: the variant rows (calibrated on the training split) and the re-timing need them.
    train, test = read_splits(inputs, with_train=args.symmetric or args.other_weights)
    results = [r for r in report["results"] if r["backend"] == "onnxruntime"]
    if train is not None and args.other_weights:
        precision, update = other_weights(report)
        results += variant_rows(report, inputs, train, test, args, precision, update)
    if train is not None and args.symmetric:
        update = {"activations": "int8"}
        results += variant_rows(report, inputs, train, test, args, "int8 s8s8", update)
    order = {precision: index for index, precision in enumerate(PRECISIONS)}
    results.sort(key=lambda r: (r["model"] != "student", order[r["precision"]]))
    rows = {(r["model"], r["precision"]): r for r in results}
    files = {key: run / row["file"] for key, row in rows.items()}
    p50 = median_p50s(files, args, test)
    text = section(args, argv, report, inputs, rows, p50)
    print("\n" + text)
    if args.write_docs:
        replace_section(SECTION, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
