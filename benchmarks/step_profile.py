"""Where one training step's time goes, for KD, AMKD (reference and refined search) and
AMKD's bank mode, on CIFAR-10.

Why this exists: `throughput.py` says how much slower AMKD is than KD; this says why, so a
missed speed target comes with the part that bounds it. It runs the engine's own
`train_one_epoch` and attributes wall time to stages with forward hooks on the teacher and
the student and a wrapper around the boundary-sample attack (the CPU runs synchronously, so
host timers are exact there; on CUDA the figures would need synchronisation and are not
offered):

- teacher, clean batch: the teacher's forward on the batch (KD's soft targets; selection)
- student, clean batch / boundary samples: the student's forward passes
- attack: base selection, target sampling and the input-gradient search on the teacher
  (its teacher forward passes are counted here, not above)
- rest of the loss: the loss terms and the bank's look-up
- backward, SGD step, data, bookkeeping: the remainder of the step

    .venv/bin/python benchmarks/step_profile.py --num-threads 1 \\
        --student-checkpoint benchmarks/results/quality-e4/runs/kd-s0/student.pt
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from arguments import (
    TEACHER_FILES,
    add_data_root,
    check_inputs,
    count,
    default_teacher,
    load_student_checkpoint,
)
from replay import Replay
from torch import nn

import compressor.methods.bank as bank_module
from compressor.data import Dataset, load_dataset
from compressor.engine.device import restored_torch_settings, setup_device
from compressor.engine.distributed import Distributed
from compressor.engine.schedule import build_optimizer
from compressor.engine.teacher import ready_teacher
from compressor.engine.training import train_one_epoch
from compressor.errors import UserError
from compressor.methods import build_method
from compressor.methods.boundary import normalized_bounds
from compressor.models import create_model, load_teacher
from compressor.recipe import (
    AMKDMethod,
    DataConfig,
    KDMethod,
    MethodConfig,
    OptimizerConfig,
    ScheduleConfig,
    TeacherConfig,
    TrainConfig,
)

TOTAL = "total (sum of the medians)"
STAGES = (
    "teacher, clean batch",
    "student, clean batch",
    "attack",
    "student, boundary samples",
    "rest of the loss",
    "backward, SGD step, data, bookkeeping",
)
# Epoch means the engine reports: samples attacked per batch, attack steps per attacked sample.
ATTACK_STATS = ("attacked", "mean_steps")


class StageClock:
    """Seconds per stage, accumulated by hooks and wrappers over the profiled steps."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.in_attack = False
        self.student_calls = 0  # this step's: the first is the clean batch, later ones x~

    def time_forwards(
        self, model: nn.Module, stage: Callable[[], str | None]
    ) -> Callable[[], None]:
        """Add each forward pass of `model` to the stage `stage()` names (None: not counted);
        returns what removes the hooks again."""
        started: list[float] = []

        def before(module: nn.Module, inputs: Any) -> None:
            started.append(time.perf_counter())

        def after(module: nn.Module, inputs: Any, output: Any) -> None:
            elapsed = time.perf_counter() - started.pop()
            name = stage()
            if name is not None:
                self.seconds[name] += elapsed

        handles = [model.register_forward_pre_hook(before), model.register_forward_hook(after)]

        def remove() -> None:
            for handle in handles:
                handle.remove()

        return remove

    def timed(self, function: Callable[..., Any], name: str) -> Callable[..., Any]:
        """`function`, its wall time added to stage `name`."""

        def call(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - started

        return call

    def attack(self, function: Callable[..., Any]) -> Callable[..., Any]:
        """The attack, timed; teacher passes inside it are not the clean-batch stage."""
        timed = self.timed(function, STAGES[2])

        def call(*args: Any, **kwargs: Any) -> Any:
            self.in_attack = True
            try:
                return timed(*args, **kwargs)
            finally:
                self.in_attack = False

        return call


def profile(
    args: argparse.Namespace,
    config: MethodConfig,
    dataset: Dataset,
    teacher: nn.Module,
) -> dict[str, float]:
    """Milliseconds per step and stage over `args.steps` steps, after `args.warmup` steps,
    plus the attack statistics; bank mode (bank_epochs > 1) first runs an untimed refresh
    epoch over the same batches."""
    train = TrainConfig(
        epochs=1000,  # BSS/AMKD attack while e < 0.75 * epochs: keep beta(e) > 0 throughout
        batch_size=args.batch_size,
        optimizer=OptimizerConfig(name="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4),
        schedule=ScheduleConfig(name="constant"),
        device="cpu",
        num_threads=args.num_threads,
    )
    setup = setup_device(train)
    torch.manual_seed(0)
    student = create_model("resnet8", dataset.num_classes, 3)
    if args.student_checkpoint is not None:
        load_student_checkpoint(student, args.student_checkpoint, "resnet8", dataset.num_classes)
    student = student.to(memory_format=torch.channels_last)
    bounds = normalized_bounds(dataset.mean, dataset.std)
    method = build_method(config, student, teacher, bounds=bounds, dataset_size=len(dataset.train))
    optimizer = build_optimizer(list(student.parameters()), train.optimizer)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    loader = Replay(
        dataset.train,
        batch_size=args.batch_size,
        device=setup.device,
        mean=dataset.mean,
        std=dataset.std,
        train=True,
        crop_padding=dataset.crop_padding,
        flip=dataset.flip,
        channels_last=True,
    )

    def run(epoch: int, steps: int) -> tuple[float, dict[str, float]]:
        loader.max_steps = steps
        started = time.perf_counter()
        result = train_one_epoch(
            student, method, loader, optimizer, scaler, setup, train, epoch, Distributed()
        )
        return time.perf_counter() - started, result.stats

    if getattr(config, "bank_epochs", 1) > 1:
        run(0, args.steps)  # the refresh epoch: bank the samples of the profiled batches
    run(1, args.warmup)
    clock = StageClock()
    step = method.step

    def timed_step(*step_args: Any, **kwargs: Any) -> Any:
        clock.student_calls = 0
        return clock.timed(step, "method")(*step_args, **kwargs)

    def student_stage() -> str:
        clock.student_calls += 1
        return STAGES[1] if clock.student_calls == 1 else STAGES[3]

    removers = [
        clock.time_forwards(teacher, lambda: None if clock.in_attack else STAGES[0]),
        clock.time_forwards(student, student_stage),
    ]
    search = bank_module.find_boundary_samples
    bank_module.find_boundary_samples = clock.attack(search)
    method.step = timed_step  # type: ignore[method-assign]
    try:
        total, stats = run(2, args.steps)
    finally:
        bank_module.find_boundary_samples = search
        for remove in removers:
            remove()
    seconds = clock.seconds
    inside = sum(seconds[stage] for stage in STAGES[:4])
    seconds[STAGES[4]] = seconds.pop("method") - inside
    seconds[STAGES[5]] = total - inside - seconds[STAGES[4]]
    per_step = {stage: 1000 * seconds[stage] / args.steps for stage in STAGES}
    return {**per_step, **{key: stats[key] for key in ATTACK_STATS if key in stats}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_root(parser)
    parser.add_argument(
        "--teacher", choices=sorted(TEACHER_FILES), default="resnet56", help="its architecture"
    )
    parser.add_argument(
        "--teacher-checkpoint",
        type=Path,
        default=None,
        help="default: the --teacher's file in ../shared/teachers (or $COMPRESSOR_TEACHERS)",
    )
    parser.add_argument("--student-checkpoint", type=Path, default=None, help="ResNet-8 weights")
    parser.add_argument("--batch-size", type=count(2), default=256)
    parser.add_argument("--steps", type=count(1), default=10, help="profiled steps per method")
    parser.add_argument("--warmup", type=count(0), default=3)
    parser.add_argument("--repeats", type=count(1), default=3, help="profiles; the median is kept")
    parser.add_argument("--num-threads", type=count(1), default=None, help="default: torch's")
    args = parser.parse_args(argv)
    if args.teacher_checkpoint is None:
        args.teacher_checkpoint = default_teacher(args.teacher)
    check_inputs(parser, args.data_root, args.teacher_checkpoint, args.student_checkpoint)
    # --num-threads is process-wide: put it back for a caller that goes on (the tests do).
    with restored_torch_settings():
        try:
            print_profiles(args)
        except UserError as error:  # a teacher or data file that does not load
            print("\n".join(f"error: {line}" for line in error.lines), file=sys.stderr)
            sys.exit(2)


def print_profiles(args: argparse.Namespace) -> None:
    """Profile each method's step and print the medians as a Markdown table."""
    setup = setup_device(TrainConfig(device="cpu", num_threads=args.num_threads))
    dataset = load_dataset(DataConfig(name="cifar10", root=args.data_root))
    teacher_config = TeacherConfig(arch=args.teacher, checkpoint=args.teacher_checkpoint)
    teacher = ready_teacher(load_teacher(teacher_config, dataset.num_classes, 3), setup)
    methods: dict[str, MethodConfig] = {
        "KD": KDMethod(),
        "AMKD": AMKDMethod(),
        # The attack bisected back to the crossing: what its `halvings` teacher passes cost.
        "AMKD refined": AMKDMethod(attack={"search": "refined"}),
        # One window spans the refresh, the warm-up and the profiled epoch.
        "AMKD bank, reuse epoch": AMKDMethod(bank_epochs=3),
    }
    columns = {}
    for label, config in methods.items():
        print(f"profiling {label} ...", file=sys.stderr, flush=True)
        runs = [profile(args, config, dataset, teacher) for _ in range(args.repeats)]
        # An attack statistic is absent from a run whose profiled steps attacked nothing.
        keys = dict.fromkeys(key for run in runs for key in run)
        columns[label] = {
            key: statistics.median(run[key] for run in runs if key in run) for key in keys
        }
    print("| stage (ms / step) | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    # The total is the sum of the stages' medians, so the column adds up; the median of the
    # profiles' totals could differ from it by a few ms.
    for stage in (*STAGES, TOTAL):
        cells = [
            sum(column[s] for s in STAGES) if stage == TOTAL else column[stage]
            for column in columns.values()
        ]
        print(f"| {stage} | " + " | ".join(f"{cell:.0f}" for cell in cells) + " |")
    for label, column in columns.items():
        if "attacked" in column:
            steps = column.get("mean_steps")
            per_sample = (
                "none attacked" if steps is None else f"{steps:.2f} attack steps per sample"
            )
            attacked = f"{column['attacked']:.1f} boundary samples per batch"
            print(f"\n{label}: {attacked}, {per_sample} (medians)")


if __name__ == "__main__":
    main()
