"""Quality benchmark: CE, KD, BSS, triplet-KD and AMKD under one budget, over several seeds.

Every run is a real run directory made by the engine (`run_training`), from a recipe built in
code from one base recipe, so the methods differ only in `method:` and the seed: same data,
augmentation, optimiser, schedule and epochs. Each recipe is also written as YAML under
`<out>/recipes/`, so any single run can be repeated with `compress distill`.

The benchmark is long on a CPU, so it is resumable: running the same command again skips runs
whose manifest says "completed" and resumes the others from `checkpoints/last.pt`.

    python benchmarks/quality.py --epochs 15 --ablations --write-docs --docs-block quality-e15
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, get_args

from arguments import TEACHER_FILES, add_data_root, check_inputs, count, default_teacher
from docs_section import DOCS, block_span, mean_std, replace_block

from compressor.engine.context import RunObserver
from compressor.engine.resume import recipe_changes, run_recipe_lost, started_recipe
from compressor.engine.run import run_training
from compressor.engine.teacher import pin_teacher
from compressor.errors import UserError
from compressor.recipe import (
    AMKDMethod,
    BoundaryNorm,
    Recipe,
    load_recipe,
    parse_recipe,
    recipe_to_yaml,
)
from compressor.rundir import RunDir, check_same_teacher, has_checkpoint, run_dir_for

REPO = Path(__file__).resolve().parents[1]
METHODS = ("ce", "kd", "bss", "triplet", "amkd")
TEACHER_TITLES = {"resnet20": "ResNet-20", "resnet56": "ResNet-56"}


@dataclass(frozen=True)
class Variant:
    """One configuration to run over every seed: a table label and its `method:` section."""

    label: str
    slug: str  # run-directory stem; must match the recipe's output.name pattern [\w.-]+
    method: dict[str, Any]


@dataclass(frozen=True)
class PlannedRun:
    """One variant at one seed: its recipe, built in code, and where its YAML is written."""

    label: str
    seed: int
    recipe: Recipe
    path: Path  # <out>/recipes/<slug>-s<seed>.yaml, written only when runs are trained

    @property
    def run(self) -> RunDir:
        return run_dir_for(self.recipe, self.path)


@dataclass(frozen=True)
class RunRecord:
    """What the tables need from one finished run, read from its report.json and metrics."""

    label: str
    seed: int
    final_top1: float
    best_top1: float
    teacher_top1: float | None
    train_seconds: float
    epochs: int
    device: str  # what the run trained on (its manifest), not the --device it was asked for


def main_variants(methods: Sequence[str]) -> list[Variant]:
    """The chosen methods with their documented defaults (docs/METHOD.md)."""
    return [Variant(name, name, {"name": name}) for name in methods]


def ablation_variants(
    margins: Sequence[float],
    gammas: Sequence[float],
    bank_epochs: int,
    only: Sequence[str] = (),
    fractions: Sequence[float] = (),
    beta_stops: Sequence[float] = (1.0,),
) -> list[Variant]:
    """AMKD with one option changed at a time from its defaults; the first row is the default.

    The default row has the same recipe as the main AMKD run, so it shares its run directory.
    The last row is bank mode (boundary samples reused for `bank_epochs` epochs): what its
    speed costs in accuracy.
    """
    defaults = AMKDMethod()
    lambda_bss = 1.0 if defaults.lambda_bss == 0 else 0.0
    # (label, run-directory stem, the one option changed)
    changes: list[tuple[str, str, dict[str, Any]]] = [
        (f"embedding {space}", f"amkd-emb-{space}", {"embedding": space})
        for space in ("logits", "softmax", "features")
        if space != defaults.embedding
    ]
    changes += [
        ("negative_source student", "amkd-neg-student", {"negative_source": "student"}),
        (f"lambda_bss {lambda_bss:g}", f"amkd-lbss-{lambda_bss:g}", {"lambda_bss": lambda_bss}),
        ("no T² on the KL terms", "amkd-no-t2", {"t_squared": False}),
    ]
    changes += [
        (
            f"search {search} ({defaults.attack.halvings} halvings)",
            f"amkd-search-{search}",
            {"attack": {"search": search}},
        )
        for search in ("refined", "interpolation")
    ]
    changes += [
        (f"margin {margin:g}", f"amkd-margin-{margin:g}", {"margin": margin})
        for margin in margins
        if margin != defaults.margin
    ]
    changes += [
        (f"gamma {gamma:g}", f"amkd-gamma-{gamma:g}", {"gamma": gamma})
        for gamma in gammas
        if gamma != defaults.gamma
    ]
    changes += [
        (
            f"attack fraction {fraction:g}",
            f"amkd-fraction-{fraction:g}",
            {"attack": {"fraction": fraction}},
        )
        for fraction in fractions
        if fraction != defaults.attack.fraction
    ]
    # `update` trains exactly as `batch` does (only the evaluated statistics differ): no row.
    changes += [
        (f"boundary_norm {mode}", f"amkd-bn-{mode}", {"boundary_norm": mode})
        for mode in get_args(BoundaryNorm)
        if mode not in (defaults.boundary_norm, "update")
    ]
    changes.append(("mining hardest", "amkd-mining-hardest", {"mining": "hardest"}))
    changes.append(("conflict projection (PCGrad)", "amkd-project", {"project_conflicts": True}))
    changes += [
        (
            f"β fades out at {'the end' if stop == 1.0 else f'{stop * 100:g} %'} of training, "
            f"not at {defaults.weights.beta_stop_fraction * 100:g} %",
            "amkd-beta-to-end" if stop == 1.0 else f"amkd-beta-stop-{stop:g}",
            {"weights": {"beta_stop_fraction": stop}},
        )
        for stop in beta_stops
        if stop != defaults.weights.beta_stop_fraction
    ]
    changes.append(
        (f"bank K={bank_epochs}", f"amkd-bank-{bank_epochs}", {"bank_epochs": bank_epochs})
    )
    default_label = (
        f"amkd ({defaults.embedding}, {defaults.negative_source}, λ_bss {defaults.lambda_bss:g}, "
        f"γ {defaults.gamma:g}, margin {defaults.margin:g})"
    )
    variants = [Variant(default_label, "amkd", {"name": "amkd"})]
    variants += [
        Variant(label, slug, {"name": "amkd", **change}) for label, slug, change in changes
    ]
    # One row per run directory: `--margins 0.5 0.5` names one run, not two.
    unique = {variant.slug: variant for variant in variants}.values()
    return [variant for variant in unique if not only or variant.slug in only]


def base_recipe(args: argparse.Namespace) -> dict[str, Any]:
    """The one recipe every run starts from: CIFAR-10, `--teacher` → ResNet-8, cosine schedule.

    Cosine rather than the multistep schedule of the shipped recipes, because it needs no
    milestones rescaled when `--epochs` changes.
    """
    return {
        "teacher": {
            "arch": args.teacher,
            "checkpoint": str(Path(args.teacher_checkpoint).resolve()),
            "min_accuracy": 90.0,
        },
        "student": {"arch": "resnet8"},
        "data": {
            "name": "cifar10",
            "root": str(Path(args.data_root).resolve()),
            "max_train_samples": args.max_train_samples,
            "max_test_samples": args.max_test_samples,
        },
        "train": {
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "eval_every": args.eval_every,
            "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4},
            "schedule": {"name": "cosine"},
            "device": args.device,
            "num_threads": args.num_threads,
        },
        "output": {"dir": str((Path(args.out) / "runs").resolve())},
    }


def plan_run(args: argparse.Namespace, variant: Variant, seed: int) -> PlannedRun:
    """Build and validate one run's recipe, in memory: nothing is written until every run
    already in --out is found to be this benchmark's (`check_planned`)."""
    data = base_recipe(args)
    name = f"{variant.slug}-s{seed}"
    data["method"] = variant.method
    data["train"]["seed"] = seed
    data["output"]["name"] = name
    recipe = parse_recipe(data, source=name)
    return PlannedRun(variant.label, seed, recipe, Path(args.out) / "recipes" / f"{name}.yaml")


def write_recipe(planned: PlannedRun) -> Path:
    """Write one run's recipe; return its path. The run is trained from the file re-read with
    `load_recipe`, so the YAML on disk is exactly what `compress distill` would run."""
    planned.path.parent.mkdir(parents=True, exist_ok=True)
    planned.path.write_text(recipe_to_yaml(planned.recipe), encoding="utf-8")
    return planned.path


def check_planned(planned: Sequence[PlannedRun]) -> None:
    """Refuse, before anything trains or is written, an --out holding a run of another
    budget or teacher: found at the first such run, it would leave the --out mixed, the runs
    before it trained to the new budget. Checked as `--resume` checks a run: the recipe it
    began with (where files lie is free to differ: runs copied in from another --out count)
    and the teacher's weights. A run with no checkpoint yet is started over, so not checked.
    """
    begun = [p for p in planned if is_completed(p.run) or has_checkpoint(p.run)]
    if not begun:
        return
    teacher_sha256 = pin_teacher(begun[0].recipe).weights_sha256  # as a run records it
    for run in begun:
        started_with = started_recipe(run.run, run.recipe)
        if started_with is None:
            raise UserError(
                f"{run.run.root}: {run_recipe_lost(run.run)}, so it cannot be told whether this "
                "benchmark made it; remove that run to train it again, or use another --out"
            )
        if is_completed(run.run):  # tabulated with its own device (collect), not retrained
            started_with = _ran_here(started_with, run.recipe)
        if started_with != run.recipe:
            done = "completed" if is_completed(run.run) else "started"
            raise UserError(
                f"{run.run.root} was {done} with a different recipe "
                f"({recipe_changes(started_with, run.recipe)}); use another --out for a "
                "different budget"
            )
        check_same_teacher(
            run.run,
            run.recipe,
            teacher_sha256,
            fix="give the --teacher-checkpoint it was trained with, or use another --out",
        )


def _ran_here(started: Recipe, recipe: Recipe) -> Recipe:
    """`started` with `recipe`'s device and thread count: how a completed run ran, not what
    it trained (its budget), so tabulating it with other --device or --num-threads flags, on
    another machine say, is no other benchmark. A run still to resume keeps them: `--resume`
    compares the whole recipe."""
    how = {field: getattr(recipe.train, field) for field in ("device", "num_threads")}
    return started.model_copy(update={"train": started.train.model_copy(update=how)})


def train_all(recipes: list[Path], jobs: int) -> None:
    """Train every recipe's run, `jobs` at a time, each in its own process when jobs > 1.

    Several runs share one GPU well: a ResNet-8 step is a chain of small kernels that leaves
    the GPU idle between launches, so runs side by side finish sooner than one after another
    (the 40-epoch ResNet-56 benchmark ran its 15 runs at once on one H100). Spawned, not
    forked, because a forked child cannot use CUDA once the parent has. A recipe listed twice
    (the default ablation row is the AMKD run) is trained once: two workers on one run
    directory would write over each other. A failed run stops the queued ones from starting;
    those already training finish first. Ctrl-C (or SIGTERM) is passed on to the runs in
    training, each stopped as Ctrl-C stops one and marked interrupted, and none starts after.
    """
    if jobs == 1:
        for recipe in recipes:
            ensure_run(recipe)
        return
    context = multiprocessing.get_context("spawn")
    queued = list(dict.fromkeys(recipes))
    training: dict[str, BaseProcess] = {}
    failed: list[str] = []
    try:
        while queued or training:
            while queued and len(training) < jobs and not failed:
                recipe = queued.pop(0)
                process = context.Process(target=_train_in_worker, args=(recipe, os.getpid()))
                training[recipe.stem] = process  # before it starts: a Ctrl-C may come then
                process.start()
            if not training:
                break
            wait([process.sentinel for process in training.values()])
            for name, process in list(training.items()):
                if process.exitcode is not None:
                    del training[name]
                    if process.exitcode:
                        failed.append(f"{name} (exit {process.exitcode})")
    except KeyboardInterrupt:
        started = [process for process in training.values() if process.pid is not None]
        for process in started:
            process.terminate()  # SIGTERM: the worker stops its run as Ctrl-C does
        for process in started:
            process.join()
        raise
    if failed:
        raise UserError(
            f"training failed: {', '.join(failed)}, its error above; completed runs are kept: "
            "put it right and run the same command again"
        )


def _train_in_worker(recipe: Path, parent: int) -> None:
    """One run in a spawned process. Ctrl-C reaches the whole process group: the parent alone
    acts on it, passing SIGTERM on, so each run is stopped once, not twice in a row (a second
    KeyboardInterrupt would cut its interrupted message short). Bad input is one line and
    exit 2 here too; the exit code tells the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stop_as_ctrl_c)
    _stop_when_orphaned(parent)
    try:
        ensure_run(recipe)
    except UserError as error:
        print("\n".join(f"error: {line}" for line in error.lines), file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


def _stop_when_orphaned(parent: int) -> None:
    """A parent killed outright (SIGKILL, an out-of-memory kill) cannot pass SIGTERM on: its
    workers trained on, holding their runs' locks, and the same command run again to resume
    was refused run by run. Each worker watches for its parent to go and stops its own run
    then, as SIGTERM stops it, so the rerun resumes it."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


# The stop signal that came, if one did: a scheduler's SIGTERM exits 143, Ctrl-C 130.
_stopped_by: list[int] = []


def _stop_as_ctrl_c(signum: int, frame: object) -> None:
    """SIGTERM (a scheduler's, or the parent's) stops a run as Ctrl-C does: marked
    interrupted, resumable."""
    _stopped_by.append(signum)
    raise KeyboardInterrupt


def read_manifest(run: RunDir) -> dict[str, Any] | None:
    if not run.manifest.exists():
        return None
    return json.loads(run.manifest.read_text(encoding="utf-8"))


def is_completed(run: RunDir) -> bool:
    """Does the run's manifest say it completed? (That it is this benchmark's run, of the
    same recipe and teacher, is `check_planned`'s to say.)"""
    manifest = read_manifest(run)
    return manifest is not None and manifest["status"] == "completed"


def ensure_run(recipe_path: Path) -> RunDir:
    """Train one run unless it is complete: resume it from its checkpoint (the last, or the
    one before it, as --resume does), or start it fresh."""
    recipe = load_recipe(recipe_path)
    run = run_dir_for(recipe, recipe_path)
    if is_completed(run):
        print(f"skip   {run.root.name} (completed)", flush=True)
        return run
    resume = has_checkpoint(run)
    print(f"{'resume' if resume else 'train '} {run.root.name}", flush=True)
    # No checkpoint means no finished epoch: a stale manifest from a kill in epoch 1 is
    # written over rather than refused.
    observer = NamedWarnings(run.root.name)
    run_training(
        recipe, recipe_path, distill=True, resume=resume, overwrite=not resume, observer=observer
    )
    return run


class NamedWarnings(RunObserver):
    """The runs train without a word, but for their warnings, each on stderr as the CLI
    prints them and named by its run: with --jobs, several runs train at once."""

    def __init__(self, run: str) -> None:
        self.run = run

    def warning(self, text: str) -> None:
        print(f"warning: {self.run}: {text}", file=sys.stderr, flush=True)


def collect(run: RunDir, label: str, seed: int) -> RunRecord:
    """Read one completed run: final and best test top-1, teacher top-1, training seconds.

    Training seconds are the sum of `epoch_seconds` over metrics.jsonl, not the manifest's
    started/finished, because a resumed run's manifest only covers its last session.
    """
    report = json.loads(run.report("json").read_text(encoding="utf-8"))
    epochs = [
        json.loads(line)
        for line in run.metrics.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    teacher = report["results"]["teacher"]
    manifest = read_manifest(run)
    assert manifest is not None  # collect() reads completed runs only
    return RunRecord(
        label=label,
        seed=seed,
        final_top1=report["results"]["student"]["accuracy"],
        best_top1=max(epoch["test_accuracy"] for epoch in epochs if "test_accuracy" in epoch),
        teacher_top1=teacher["accuracy"] if teacher else None,
        train_seconds=sum(epoch["epoch_seconds"] for epoch in epochs),
        epochs=len(epochs),
        device=manifest["device"],
    )


def check_docs_block(name: str) -> None:
    """Refuse a --docs-block that BENCHMARKS.md does not mark, naming the way out."""
    try:
        block_span(DOCS.read_text(encoding="utf-8"), name)
    except UserError as error:
        raise UserError(f"{error.lines[0]}, or name an existing block with --docs-block") from None


def build_table(records: Sequence[RunRecord], labels: Sequence[str], first_column: str) -> str:
    """A markdown table, one row per label in the given order; a pure function of the records.

    ± is the sample standard deviation over seeds; a single seed shows the value alone.
    """
    lines = [
        f"| {first_column} | final top-1 (%) | best top-1 (%) | seeds | teacher top-1 (%) "
        "| train s / run | s / epoch |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label in labels:
        rows = [record for record in records if record.label == label]
        if not rows:
            continue
        teachers = {record.teacher_top1 for record in rows if record.teacher_top1 is not None}
        teacher = ", ".join(f"{value:.2f}" for value in sorted(teachers)) or "—"
        seconds = statistics.mean(record.train_seconds for record in rows)
        per_epoch = statistics.mean(record.train_seconds / record.epochs for record in rows)
        lines.append(
            f"| {label} | {mean_std([r.final_top1 for r in rows])} "
            f"| {mean_std([r.best_top1 for r in rows])} | {len(rows)} | {teacher} "
            f"| {seconds:.1f} | {per_epoch:.1f} |"
        )
    return "\n".join(lines)


def seed_table(records: Sequence[RunRecord], labels: Sequence[str]) -> str:
    """Final top-1 of every run, one column per seed.

    Runs with the same seed share the student's initialisation and every epoch's data order
    and augmentation (both are functions of the seed alone), so a column compares methods on
    equal terms: the paired view that the mean ± std rows hide.
    """
    seeds = sorted({record.seed for record in records})
    finals = {(record.label, record.seed): record.final_top1 for record in records}
    lines = [
        "| final top-1 (%) by seed | " + " | ".join(f"seed {seed}" for seed in seeds) + " |",
        "|---|" + "---:|" * len(seeds),
    ]
    for label in dict.fromkeys(labels):
        if any((label, seed) in finals for seed in seeds):
            cells = [f"{finals[label, s]:.2f}" if (label, s) in finals else "—" for s in seeds]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def target_text(records: Sequence[RunRecord]) -> str | None:
    """Issue 7's target, checked: AMKD's mean final top-1 against KD's and BSS's.

    "Above by more than one standard deviation" is read strictly: the gap must exceed the
    larger of the two rows' sample standard deviations. The gap is also given in standard
    errors of the difference of the means (sqrt(s1²/n1 + s2²/n2)), which shrink with seeds
    while the standard deviations do not. A baseline with one seed gets its gap but no
    verdict (no spread to judge it by); None while AMKD has fewer than two seeds.
    """
    finals: dict[str, list[float]] = {}
    for record in records:
        finals.setdefault(record.label, []).append(record.final_top1)
    amkd = finals.get("amkd", [])
    if len(amkd) < 2:
        return None
    parts = []
    for name in ("kd", "bss"):
        other = finals.get(name, [])
        if not other:
            continue
        gap = statistics.mean(amkd) - statistics.mean(other)
        if len(other) < 2:
            parts.append(
                f"AMKD − {name.upper()} = {gap:+.2f} points ({name.upper()} has one seed: "
                "no verdict)"
            )
            continue
        spread = max(statistics.stdev(amkd), statistics.stdev(other))
        error = (
            statistics.variance(amkd) / len(amkd) + statistics.variance(other) / len(other)
        ) ** 0.5
        verdict = "met" if gap > spread else "not met"
        # Both rows without spread (smoke runs on a few test images): no standard error.
        errors = f"{gap / error:+.1f} standard errors" if error > 0 else "no spread in either row"
        parts.append(
            f"AMKD − {name.upper()} = {gap:+.2f} points, larger std {spread:.2f} ({verdict}), "
            f"{errors}{_paired_text(records, name)}"
        )
    if not parts:
        return None
    return (
        "Target (AMKD above KD and BSS by more than one standard deviation): "
        + "; ".join(parts)
        + "."
    )


def _paired_text(records: Sequence[RunRecord], baseline: str) -> str:
    """AMKD against a baseline seed by seed (see seed_table): on how many seeds it is ahead."""
    finals = {(record.label, record.seed): record.final_top1 for record in records}
    shared = sorted(
        seed for label, seed in finals if label == "amkd" and (baseline, seed) in finals
    )
    if not shared:
        return ""
    ahead = sum(finals["amkd", seed] > finals[baseline, seed] for seed in shared)
    return f", ahead on {ahead} of {len(shared)} shared seeds"


def budget_text(args: argparse.Namespace, devices: Sequence[str]) -> str:
    """One sentence that states the budget behind the tables, and whether it is a smoke run.

    `devices` are those the tabulated runs trained on: `--device auto` says nothing about it.
    """
    samples = (
        f"a class-balanced {args.max_train_samples:,}-image subset of the training set (the "
        "same images for every method and seed)"
        if args.max_train_samples
        else "the full 50,000-image training set"
    )
    tested = (
        f"a class-balanced {args.max_test_samples:,}-image subset of the test set"
        if args.max_test_samples
        else "the full 10,000-image test set"
    )
    trained_on = ", ".join(sorted(set(devices))) or args.device
    text = (
        f"Teacher {TEACHER_TITLES[args.teacher]} → student ResNet-8, device {trained_on}. "
        f"Budget: {args.epochs} epoch(s) on {samples}, batch {args.batch_size}, SGD lr 0.1 "
        f"(momentum 0.9, weight decay 1e-4), cosine schedule, seeds "
        f"{' '.join(map(str, args.seeds))}; test top-1 on {tested}"
        + (f", every {args.eval_every} epochs and after the last." if args.eval_every > 1 else ".")
    )
    if args.max_test_samples:
        text = (
            "**Smoke run — proves the pipeline, NOT a result.** The accuracies below say "
            "nothing about which method is better. " + text
        )
    return text


# A class-balanced subset smaller than this cannot hold every class.
CIFAR10_CLASSES = 10
CIFAR10_TRAIN, CIFAR10_TEST = 50_000, 10_000  # the splits' sizes


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_root(parser)
    parser.add_argument("--teacher", choices=sorted(TEACHER_FILES), default="resnet20")
    parser.add_argument(
        "--teacher-checkpoint",
        type=Path,
        default=None,
        help="default: the --teacher's file in ../shared/teachers (or $COMPRESSOR_TEACHERS)",
    )
    parser.add_argument("--epochs", type=count(1), default=15)
    parser.add_argument("--batch-size", type=count(2), default=256)
    parser.add_argument(
        "--eval-every",
        type=count(1),
        default=1,
        help="score the test set every N epochs and after the last (train.eval_every); the "
        "best column is the best of those",
    )
    parser.add_argument(
        "--max-train-samples",
        type=count(CIFAR10_CLASSES, CIFAR10_TRAIN),
        default=None,
        help="train on a class-balanced subset, the same for every method and seed (the "
        "data-scarce protocol; the full test set still scores it); at least one image per class",
    )
    parser.add_argument(
        "--max-test-samples",
        type=count(CIFAR10_CLASSES, CIFAR10_TEST),
        default=None,
        help="class-balanced subset (smoke runs); at least one image per class",
    )
    parser.add_argument("--seeds", type=count(0), nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--methods",
        nargs="*",
        choices=METHODS,
        default=list(METHODS),
        help="default: all five; none (`--methods` alone): ablations only",
    )
    parser.add_argument(
        "--ablations",
        nargs="*",
        metavar="SLUG",
        default=None,
        help="also run the AMKD ablations: all, or only those named by run-directory stem "
        "(amkd-emb-softmax, amkd-bank-5, ...)",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="train nothing: tabulate the runs that are complete (e.g. while another process "
        "is still training the rest)",
    )
    parser.add_argument(
        "--margins", type=float, nargs="+", default=[0.5], help="ablation triplet margins"
    )
    parser.add_argument(
        "--gammas", type=float, nargs="+", default=[1.0], help="ablation triplet weights"
    )
    parser.add_argument(
        "--fractions",
        type=float,
        nargs="+",
        default=[0.5],
        help="ablation attack.fraction: the share of each batch attacked",
    )
    parser.add_argument(
        "--beta-stops",
        type=float,
        nargs="+",
        default=[1.0],
        help="ablation weights.beta_stop_fraction: the share of training after which β is 0",
    )
    parser.add_argument(
        "--bank-epochs", type=int, default=5, help="ablation bank mode: method.bank_epochs"
    )
    parser.add_argument("--device", default="auto", help="train.device: auto, cpu, cuda, ...")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="runs trained at once, each in its own process (on a GPU: up to one per run; "
        "on a CPU: cores / --num-threads)",
    )
    parser.add_argument(
        "--num-threads",
        type=count(1),
        default=None,
        help="train.num_threads (CPU); default: torch's",
    )
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "quality")
    parser.add_argument(
        "--write-docs", action="store_true", help="write the tables into docs/BENCHMARKS.md"
    )
    parser.add_argument(
        "--docs-block",
        default="quality",
        help="which marked block of docs/BENCHMARKS.md --write-docs replaces (default: quality)",
    )
    args = parser.parse_args(argv)
    if args.teacher_checkpoint is None:
        args.teacher_checkpoint = default_teacher(args.teacher)
    if args.jobs < 1:
        parser.error("--jobs must be >= 1")
    if args.bank_epochs < 2:
        parser.error("--bank-epochs must be >= 2: bank_epochs 1 is the default AMKD row")
    for flag in ("seeds", "methods", "margins", "gammas", "fractions", "beta_stops"):
        values = getattr(args, flag)
        twice = sorted({str(value) for value in values if values.count(value) > 1})
        if twice:  # a seed given twice would count its runs twice in every mean and std
            parser.error(f"--{flag.replace('_', '-')}: {', '.join(twice)} given twice")
    if args.ablations:
        known = [
            variant.slug
            for variant in ablation_variants(
                args.margins, args.gammas, args.bank_epochs, (), args.fractions, args.beta_stops
            )
        ]
        unknown = [slug for slug in args.ablations if slug not in known]
        if unknown:
            parser.error(
                f"--ablations: no ablation named {', '.join(unknown)}; with these flags they are "
                f"{' '.join(known)} (the margin, gamma, fraction, beta-stop and bank ones follow "
                "--margins, --gammas, --fractions, --beta-stops and --bank-epochs)"
            )
    # Before anything is written: a run's recipe names them, and its refusal would say to
    # edit a recipe this script writes again on every run.
    check_inputs(parser, args.data_root, args.teacher_checkpoint)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    groups = [("method", main_variants(args.methods))]
    if args.ablations is not None:
        variants = ablation_variants(
            args.margins,
            args.gammas,
            args.bank_epochs,
            args.ablations,
            args.fractions,
            args.beta_stops,
        )
        groups.append(("AMKD ablation", variants))
    try:
        if args.write_docs:  # a missing block is found before hours of training, not after
            check_docs_block(args.docs_block)
        # Seeds outermost: an interrupted benchmark has every method at the seeds it finished,
        # not all seeds of the first methods only.
        planned = [
            plan_run(args, variant, seed)
            for seed in args.seeds
            for _, variants in groups
            for variant in variants
        ]
        check_planned(planned)
        if not args.report_only:
            train_all([write_recipe(run) for run in planned], args.jobs)
        records = [collect(p.run, p.label, p.seed) for p in planned if is_completed(p.run)]
        if args.write_docs and not records:
            raise UserError(
                f"{Path(args.out) / 'runs'}: no completed run of this benchmark, so nothing was "
                "written to docs/BENCHMARKS.md; check --out and the budget flags"
            )
    except UserError as error:
        print("\n".join(f"error: {line}" for line in error.lines), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # The run that stopped is marked interrupted and resumes from its last checkpoint.
        print("interrupted: run the same command again to continue", file=sys.stderr)
        return 128 + (_stopped_by[0] if _stopped_by else signal.SIGINT)
    tables = [
        build_table(records, [v.label for v in variants], first_column)
        for first_column, variants in groups
    ]
    if records:
        # One row per run directory: the ablations' default row is the main AMKD run.
        first_label: dict[str, str] = {}
        for _, variants in groups:
            for variant in variants:
                first_label.setdefault(variant.slug, variant.label)
        tables.append(seed_table(records, list(first_label.values())))
    command = " ".join(["python benchmarks/quality.py", *(argv or sys.argv[1:])])
    target = target_text(records)
    budget = budget_text(args, [record.device for record in records])
    section = "\n\n".join([f"`{command}`", budget, *tables, *([target] if target else [])])
    print("\n" + section)
    if args.write_docs:
        replace_block(args.docs_block, section)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _stop_as_ctrl_c)  # a scheduler's stop: resumable, and said
    raise SystemExit(main())
