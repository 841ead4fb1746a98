"""Training throughput and peak memory of CE, KD, BSS, triplet and AMKD on real CIFAR-10.

Why this exists: the methods differ mainly in how much teacher work they do per step (one
forward for KD, an input-gradient attack for BSS and AMKD), and DESIGN.md promises that the
data pipeline never becomes the bottleneck. Both claims need numbers from the real engine,
not from a toy loop, so every timed step is the engine's own `train_one_epoch` on a
`BatchLoader` over real CIFAR-10, with the method from `build_method` and the optimiser from
`compressor.engine.schedule`: data → method.step → backward → optimiser step.

Each measurement runs in a fresh subprocess, so its peak resident set size (`ru_maxrss`) is
that method's alone and not the high-water mark of whatever ran before it. Figures are
medians of `--repeats` timed runs of `--steps` steps each, after `--warmup` untimed steps.

How much the attack costs depends on the student: it attacks only base images both models
classify correctly (at most attack.fraction of the batch), so an untrained student understates
it. `--student-checkpoint` starts every method from a trained student (a `student.pt` the engine
wrote, or a plain state dict). `amkd-bank` times AMKD's bank mode on its reuse epochs: an
untimed refresh pass over the very batches that are then timed banks their boundary samples,
and the timed steps replay those batches in reuse epochs (no attack; the banked samples are
taken). `--num-threads` pins torch's CPU threads, for a fair comparison on a shared machine.

`--torchdistill` adds an outside reference: torchdistill's Hinton KD (its CIFAR ResNet-56
teacher → ResNet-20 student, its `KDLoss`, torchvision's CIFAR10 dataset and transforms,
batch 128, 2 loader workers) in its own virtual environment, against ours on the same
teacher/student/batch in the same run (`--torchdistill-only`: that comparison alone).
`--write-docs` puts the methods' figures and the comparison in their own marked blocks of
docs/BENCHMARKS.md ("throughput", "throughput-torchdistill"), so neither run overwrites the
other's figures or the prose around them.

    .venv/bin/python benchmarks/throughput.py --data-root ../shared/data \\
        --teacher-checkpoint ../shared/teachers/resnet56-4bfd9763.th --write-docs
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from collections.abc import Callable
from pathlib import Path

from arguments import (
    TEACHER_FILES,
    add_data_root,
    check_inputs,
    count,
    default_teacher,
    load_student_checkpoint,
)
from docs_section import replace_block, wrap
from pydantic import ValidationError

from compressor.errors import UserError
from compressor.recipe import TrainConfig, format_validation_error

REPO = Path(__file__).resolve().parent.parent
TORCHDISTILL_VENV = REPO / "benchmarks" / ".venv-torchdistill"
BANK = "amkd-bank"  # AMKD in bank mode, timed on reuse epochs
METHODS = ("ce", "kd", "bss", "triplet", "amkd", BANK)
LABELS = {
    "ce": "CE",
    "kd": "KD",
    "bss": "BSS",
    "triplet": "triplet",
    "amkd": "AMKD",
    BANK: "AMKD bank, reuse epochs",
}
AMORTISED_WINDOW = 5  # bank_epochs for the amortised ratio the report states
DATA_ONLY = "data"  # worker mode that times the BatchLoader alone
NOMINAL_EPOCHS = 1000  # the schedule's length; see `worker`
RESULT_PREFIX = "RESULT "  # marks the one stdout line a worker hands back to the parent

# torchdistill's side, run by the torchdistill venv's interpreter. Written to a temporary
# file at run time because that interpreter cannot import compressor (different torch).
TORCHDISTILL_WORKER = """
import json, resource, statistics, sys, time
import torch
from torch.utils.data import DataLoader
from torchvision import transforms
from torchvision.datasets import CIFAR10
from torchdistill.losses.mid_level import KDLoss
from torchdistill.models.classification.resnet import resnet20, resnet56

root, batch, steps, warmup, repeats, threads = sys.argv[1], *map(int, sys.argv[2:7])
if threads:  # ours runs with --num-threads too
    torch.set_num_threads(threads)
torch.manual_seed(0)
# The shared CIFAR-10 files fail torchvision's MD5 check; the arrays themselves are fine.
CIFAR10._check_integrity = lambda self: True
transform = transforms.Compose([
    transforms.RandomCrop(32, padding=4),
    transforms.RandomHorizontalFlip(),
    transforms.ToTensor(),
    transforms.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
])
dataset = CIFAR10(root, train=True, download=False, transform=transform)
loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=2, drop_last=True,
                    persistent_workers=True)
teacher, student = resnet56(num_classes=10).eval(), resnet20(num_classes=10).train()
for p in teacher.parameters():
    p.requires_grad_(False)
criterion = KDLoss("fc", "output", "fc", "output", temperature=4.0, alpha=0.5)
optimizer = torch.optim.SGD(student.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)

def batches():
    while True:
        yield from loader

stream = batches()

def run(count):
    for _ in range(count):
        images, targets = next(stream)
        with torch.no_grad():
            teacher_logits = teacher(images)
        student_logits = student(images)
        loss = criterion({"fc": {"output": student_logits}},
                         {"fc": {"output": teacher_logits}}, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

run(warmup)
rates = []
for _ in range(repeats):
    started = time.perf_counter()
    run(steps)
    rates.append(steps * batch / (time.perf_counter() - started))
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("RESULT " + json.dumps({"rates": rates, "peak_rss_mb": rss, "device": "cpu"}))
"""


@dataclasses.dataclass(frozen=True)
class Measurement:
    """What one worker subprocess reports: images/s of each timed repeat and its peak RSS;
    for BSS and AMKD also the boundary samples per batch (attacked or taken from the bank)."""

    rates: list[float]
    peak_rss_mb: float
    device: str
    attacked: float | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.rates)


def _peak_rss_mb() -> float:
    """This process's peak resident set size; Linux reports kilobytes, macOS bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _timed_rates(run: Callable[[int], int], steps: int, warmup: int, repeats: int) -> list[float]:
    """Images/s of `repeats` runs of `steps` steps after one untimed warm-up of `warmup` steps.

    `run(n)` executes n steps and returns the number of images it processed.
    """
    run(warmup)
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        images = run(steps)
        rates.append(images / (time.perf_counter() - started))
    return rates


def worker(args: argparse.Namespace) -> Measurement:
    """Measure one method (or the data pipeline alone) in this process; imports are local
    so the parent process never loads torch and stays out of the way of the timing."""
    import torch
    from replay import Replay

    from compressor.data import BatchLoader, ImageSet, load_dataset
    from compressor.engine.device import setup_device
    from compressor.engine.distributed import Distributed
    from compressor.engine.schedule import build_optimizer
    from compressor.engine.teacher import ready_teacher
    from compressor.engine.training import train_one_epoch
    from compressor.methods import build_method
    from compressor.methods.boundary import normalized_bounds
    from compressor.models import create_model, load_teacher, student_kwargs
    from compressor.recipe import (
        METHOD_MODELS,
        AMKDMethod,
        DataConfig,
        OptimizerConfig,
        ScheduleConfig,
        TeacherConfig,
        TrainConfig,
    )

    # The recipe's optimiser, a constant schedule so every timed step is alike. Each run is
    # an epoch of its own, and BSS/AMKD stop attacking after 75 % of `epochs`: a long nominal
    # schedule keeps beta(e) > 0 (about its initial value) for every run.
    config = TrainConfig(
        epochs=NOMINAL_EPOCHS,
        batch_size=args.batch_size,
        optimizer=OptimizerConfig(name="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4),
        schedule=ScheduleConfig(name="constant"),
        device=args.device,
        num_threads=args.num_threads,
    )
    setup = setup_device(config)
    torch.manual_seed(config.seed)
    dataset = load_dataset(DataConfig(name="cifar10", root=args.data_root))

    # Moved to the device once; both loaders then share it instead of copying it again.
    split = ImageSet(dataset.train.images.to(setup.device), dataset.train.labels.to(setup.device))

    bank = args.worker == BANK

    def loader(steps: int) -> BatchLoader:
        return (Replay if bank else BatchLoader)(
            split,
            batch_size=args.batch_size,
            device=setup.device,
            mean=dataset.mean,
            std=dataset.std,
            train=True,
            crop_padding=dataset.crop_padding,
            flip=dataset.flip,
            seed=config.seed,
            channels_last=setup.channels_last,
            max_steps=steps,
        )

    loaders = {args.warmup: loader(args.warmup), args.steps: loader(args.steps)}
    epoch = 0  # a new epoch per run: a fresh shuffle like real training (bank mode: `Replay`)

    if args.worker == DATA_ONLY:

        def iterate(steps: int) -> int:
            nonlocal epoch
            batches = loaders[steps]
            batches.set_epoch(epoch)
            epoch += 1
            images = 0
            for batch, _ in batches:
                images += batch.shape[0]
            if setup.device.type == "cuda":
                torch.cuda.synchronize(setup.device)
            return images

        return Measurement(
            _timed_rates(iterate, args.steps, args.warmup, args.repeats),
            _peak_rss_mb(),
            str(setup.device),
        )

    # Bank mode: one window spans the refresh pass, the warm-up and every timed run.
    method_config = (
        AMKDMethod(bank_epochs=args.repeats + 2) if bank else METHOD_MODELS[args.worker]()
    )
    student = create_model(
        args.student,
        dataset.num_classes,
        dataset.image_shape[0],
        **student_kwargs(args.student, {}),
    )
    if args.student_checkpoint is not None:
        load_student_checkpoint(student, args.student_checkpoint, args.student, dataset.num_classes)
    student = student.to(setup.device)
    if setup.channels_last:
        student = student.to(memory_format=torch.channels_last)
    teacher = None
    if args.worker != "ce":
        teacher_config = TeacherConfig(arch=args.teacher, checkpoint=args.teacher_checkpoint)
        teacher = ready_teacher(
            load_teacher(teacher_config, dataset.num_classes, dataset.image_shape[0]), setup
        )
    bounds = normalized_bounds(dataset.mean, dataset.std)
    method = build_method(method_config, student, teacher, bounds=bounds, dataset_size=len(split))
    optimizer = build_optimizer(list(student.parameters()), config.optimizer)
    scaler = torch.amp.GradScaler(setup.device.type, enabled=setup.needs_grad_scaler)

    attacked: list[float] = []  # boundary samples per batch, one mean per run

    def train(steps: int) -> int:
        nonlocal epoch
        batches = loaders[steps]
        result = train_one_epoch(
            student, method, batches, optimizer, scaler, setup, config, epoch, Distributed()
        )
        epoch += 1
        if "attacked" in result.stats:
            attacked.append(result.stats["attacked"])
        return len(batches) * args.batch_size  # training batches are full (drop_last)

    if bank:
        train(args.steps)  # the untimed refresh epoch: attacks the timed batches, banks them
    rates = _timed_rates(train, args.steps, args.warmup, args.repeats)
    per_batch = statistics.mean(attacked[-args.repeats :]) if attacked else None
    return Measurement(rates, _peak_rss_mb(), str(setup.device), per_batch)


def _worker_command(
    args: argparse.Namespace, mode: str, student: str, batch: int, *, comparison: bool = False
) -> list[str]:
    """A worker's command line. `comparison`: the side of the torchdistill comparison, which
    times a ResNet-20 student from scratch on the CPU, as torchdistill's side runs: not the
    --student-checkpoint (a ResNet-8's) and not --device."""
    return [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        mode,
        "--teacher",
        args.teacher,
        "--teacher-checkpoint",
        str(args.teacher_checkpoint),
        "--student",
        student,
        "--batch-size",
        str(batch),
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--repeats",
        str(args.repeats),
        "--data-root",
        str(args.data_root),
        "--device",
        "cpu" if comparison else args.device,
        *(["--num-threads", str(args.num_threads)] if args.num_threads else []),
        *(
            ["--student-checkpoint", str(args.student_checkpoint)]
            if args.student_checkpoint and not comparison
            else []
        ),
    ]


def _run_worker(command: list[str], label: str) -> Measurement:
    """Run one worker subprocess and read back its RESULT line."""
    print(f"measuring {label} ...", file=sys.stderr, flush=True)
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if done.returncode == 2:  # bad input, said by the worker in one line
        sys.stderr.write(done.stderr)
        sys.exit(2)
    if done.returncode != 0:
        sys.exit(f"{label} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if not lines:
        sys.exit(f"{label} printed no result:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    payload = json.loads(lines[-1].removeprefix(RESULT_PREFIX))
    measurement = Measurement(**payload)
    rates = ", ".join(f"{rate:.0f}" for rate in measurement.rates)
    print(
        f"  {label}: {rates} images/s, peak RSS {measurement.peak_rss_mb:.0f} MB", file=sys.stderr
    )
    return measurement


def _torchdistill_python() -> Path:
    """The torchdistill venv's interpreter, creating the venv on first use.

    A separate venv because torchdistill pins its own torch/torchvision and must not
    change the project's environment.
    """
    python = TORCHDISTILL_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {TORCHDISTILL_VENV} (pip install torchdistill) ...", file=sys.stderr)
        venv.create(TORCHDISTILL_VENV, with_pip=True)
    check = subprocess.run([python, "-c", "import torchdistill"], capture_output=True)
    if check.returncode != 0:
        subprocess.run([python, "-m", "pip", "install", "-q", "torchdistill"], check=True)
    return python


def _torchdistill(args: argparse.Namespace) -> tuple[str, Measurement]:
    """torchdistill's KD throughput and its version, from a script run in its own venv."""
    python = _torchdistill_python()
    version = subprocess.run(
        [python, "-c", "import importlib.metadata as m; print(m.version('torchdistill'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as script:
        script.write(TORCHDISTILL_WORKER)
    try:
        command = [
            str(python),
            script.name,
            str(args.data_root),
            str(args.torchdistill_batch_size),
            str(args.steps),
            str(args.warmup),
            str(args.repeats),
            str(args.num_threads or 0),
        ]
        return version, _run_worker(command, f"torchdistill {version} KD")
    finally:
        Path(script.name).unlink()


def _command_line(argv: list[str]) -> str:
    return " ".join(
        [".venv/bin/python", "benchmarks/throughput.py", *(shlex.quote(a) for a in argv)]
    )


def _report(
    args: argparse.Namespace,
    argv: list[str],
    methods: dict[str, Measurement],
    data: Measurement,
) -> str:
    """The Markdown of the methods' timings: what was run, the table, the derived ratios.
    `--write-docs` puts it in the "throughput" block of docs/BENCHMARKS.md, whose prose
    around it (what the script does, what a repeat gave) is the docs' own."""
    import torch  # the parent needs only the version string, after all timing is done

    threads = args.num_threads or torch.get_num_threads()
    student = (
        f"from the trained student `{args.student_checkpoint}`"
        if args.student_checkpoint
        else "from an untrained student (BSS/AMKD attack only the few samples both models "
        "classify correctly; later in training they attack more and run slower)"
    )
    lines = [
        f"Measured on {platform.machine()}, {threads} torch thread(s), device "
        f"{methods['kd'].device}, torch {torch.__version__}, Python {platform.python_version()}, "
        f"every method {student}:",
        "",
        "```",
        _command_line(argv),
        "```",
        "",
        f"{args.teacher} → {args.student}, batch {args.batch_size}:",
        "",
        *_method_table(methods),
        "",
        f"Data pipeline alone (BatchLoader with crop+flip, batch {args.batch_size}): "
        f"{data.median:.0f} images/s, {data.median / methods['ce'].median:.1f}× the student's "
        "CE training rate.",
        *_bank_lines(methods),
    ]
    return "\n".join(wrap(line) for line in lines)


def _torchdistill_report(
    args: argparse.Namespace, argv: list[str], version: str, ours: Measurement, theirs: Measurement
) -> str:
    """The Markdown of the torchdistill comparison, for its own "throughput-torchdistill"
    block: a run of the methods alone leaves it as it is, and the reverse."""
    lines = [
        "```",
        _command_line(argv),
        "```",
        "",
        f"torchdistill {version}, Hinton KD (T = 4, α = 0.5), ResNet-56 → ResNet-20, "
        f"batch {args.torchdistill_batch_size}: a plain loop over its `resnet56`/`resnet20` "
        "(random weights: speed does not depend on them), its `KDLoss`, SGD, and a "
        "DataLoader over torchvision's `CIFAR10` (MD5 check bypassed by patching "
        "`_check_integrity`; RandomCrop 4 + flip + normalise, 2 workers): teacher forward "
        "under `no_grad`, student forward, loss, backward, step — the step its "
        "`DistillationBox` takes, without its forward hooks and logging. Ours: `kd` on the "
        "same teacher/student/batch in this run.",
        "",
        "| | images/s (median) | peak RSS MB |",
        "|---|---:|---:|",
        f"| compressor KD | {ours.median:.0f} | {ours.peak_rss_mb:.0f} |",
        f"| torchdistill KD | {theirs.median:.0f} | {theirs.peak_rss_mb:.0f} |",
        "",
        f"ours / torchdistill: **{ours.median / theirs.median:.2f}×**.",
    ]
    return "\n".join(wrap(line) for line in lines)


def _method_table(methods: dict[str, Measurement]) -> list[str]:
    """One row per method; time per step relative to KD, as the targets state it."""
    kd = methods["kd"].median
    lines = [
        "| method | images/s (median) | time / step vs KD | boundary samples / batch "
        "| peak RSS MB |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, measured in methods.items():
        samples = "—" if measured.attacked is None else f"{measured.attacked:.1f}"
        lines.append(
            f"| {LABELS[name]} | {measured.median:.0f} | {kd / measured.median:.2f}× "
            f"| {samples} | {measured.peak_rss_mb:.0f} |"
        )
    return lines


def _bank_lines(methods: dict[str, Measurement]) -> list[str]:
    """What bank mode costs over a whole window: one refresh (an AMKD epoch), then reuse."""
    if "amkd" not in methods or BANK not in methods:
        return []
    kd = methods["kd"].median
    refresh, reuse = kd / methods["amkd"].median, kd / methods[BANK].median
    window = AMORTISED_WINDOW
    amortised = (refresh + (window - 1) * reuse) / window
    extra = methods[BANK].peak_rss_mb - methods["amkd"].peak_rss_mb
    return [
        "",
        f"Time per step vs KD: AMKD **{refresh:.2f}×**, AMKD bank on reuse epochs "
        f"**{reuse:.2f}×**; over a window of `bank_epochs: {window}` (one refresh epoch, which "
        f"costs an AMKD epoch, then {window - 1} reuse epochs) **{amortised:.2f}×**. The bank "
        f"(zero-filled for all 50,000 training images at the first refresh step) adds "
        f"{extra:.0f} MB of peak RSS over AMKD.",
    ]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", default="resnet56", help="zoo name of the teacher")
    parser.add_argument(
        "--teacher-checkpoint",
        type=Path,
        default=None,
        help="default: the --teacher's file (resnet20, resnet56) in ../shared/teachers (or "
        "$COMPRESSOR_TEACHERS)",
    )
    parser.add_argument("--student", default="resnet8", help="zoo name of the student")
    parser.add_argument("--batch-size", type=count(2), default=256)
    parser.add_argument("--steps", type=count(1), default=20, help="timed steps per repeat")
    parser.add_argument("--warmup", type=count(0), default=5, help="untimed steps first")
    parser.add_argument(
        "--repeats", type=count(1), default=3, help="timed runs; the median is kept"
    )
    add_data_root(parser)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument(
        "--num-threads", type=count(1), default=None, help="torch CPU threads; default: torch's"
    )
    parser.add_argument(
        "--student-checkpoint",
        type=Path,
        default=None,
        help="start every method from these student weights (student.pt or a state dict)",
    )
    parser.add_argument(
        "--methods", nargs="+", choices=METHODS, default=list(METHODS), help="methods to time"
    )
    parser.add_argument("--write-docs", action="store_true", help="update docs/BENCHMARKS.md")
    parser.add_argument(
        "--torchdistill",
        action="store_true",
        help="also time torchdistill's KD (ResNet-56 → ResNet-20) against ours",
    )
    parser.add_argument(
        "--torchdistill-only",
        action="store_true",
        help="time the torchdistill comparison alone (the methods' block is left as it is)",
    )
    parser.add_argument("--torchdistill-batch-size", type=count(2), default=128)
    parser.add_argument("--worker", choices=(*METHODS, DATA_ONLY), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if "kd" not in args.methods or "ce" not in args.methods:
        parser.error("--methods must include ce and kd: the table's ratios are relative to them")
    if args.teacher_checkpoint is None:
        if args.teacher not in TEACHER_FILES:
            parser.error(f"--teacher {args.teacher}: give its weights with --teacher-checkpoint")
        args.teacher_checkpoint = default_teacher(args.teacher)
    try:  # the recipe's own check, before any worker: `cuda:01` crashes torch itself
        TrainConfig(device=args.device)
    except ValidationError as error:
        parser.error(format_validation_error("--device", error)[0])
    check_inputs(parser, args.data_root, args.teacher_checkpoint, args.student_checkpoint)
    return args


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.worker is not None:
        try:
            measured = worker(args)
        except UserError as error:  # an unknown --student, weights of another one
            print("\n".join(f"error: {line}" for line in error.lines), file=sys.stderr)
            sys.exit(2)
        print(RESULT_PREFIX + json.dumps(dataclasses.asdict(measured)))
        return
    try:
        _measure_and_report(args, argv)
    except KeyboardInterrupt:
        print("interrupted: nothing was written; run it again to measure", file=sys.stderr)
        sys.exit(130)


def _measure_and_report(args: argparse.Namespace, argv: list[str]) -> None:
    if not args.torchdistill_only:
        methods = {
            name: _run_worker(_worker_command(args, name, args.student, args.batch_size), name)
            for name in args.methods
        }
        data = _run_worker(_worker_command(args, DATA_ONLY, args.student, args.batch_size), "data")
        report = _report(args, argv, methods, data)
        print(report)
        if args.write_docs:
            replace_block("throughput", report, script="throughput.py")
    if args.torchdistill or args.torchdistill_only:
        batch = args.torchdistill_batch_size
        ours = _run_worker(
            _worker_command(args, "kd", "resnet20", batch, comparison=True),
            f"compressor KD resnet20 b{batch}",
        )
        version, theirs = _torchdistill(args)
        comparison = _torchdistill_report(args, argv, version, ours, theirs)
        print(comparison)
        if args.write_docs:
            replace_block("throughput-torchdistill", comparison, script="throughput.py")


if __name__ == "__main__":
    main()
