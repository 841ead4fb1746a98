"""Do the distilled students' decision boundaries follow the teacher's? Issue 7 asks whether
AMKD beats KD on accuracy; this measures what AMKD claims to transfer, the boundary itself.

    .venv/bin/python benchmarks/boundary_similarity.py RUN [RUN ...] [--images 1000] [--write-docs]

For each of the first `--images` test images that teacher and student both classify correctly
(class b), a target class k != b is drawn from the teacher's softmax (one draw per image,
seeded, the same for every run), and the training attack (`attack_to_boundary`: BSS's step,
η 0.3, ε 1e-4, `--max-steps`) runs twice from the image: on the teacher, to x̃_t just past its
b/k boundary, and on the student, to x̃_s just past the student's. Per run:

- *follows*: on the teacher's boundary samples (those that landed in k), the share the student
  also puts in k. A student with the teacher's boundary follows ~all of them; adversarial
  examples of one network usually do not transfer to another, so this is the direct test.
- *stays b*: the share the student still puts in b (the rest went to a third class).
- *margin closed*: on the same samples, how far the teacher's perturbation took the student
  towards its own b/k boundary, 1 − m_s(x̃_t) / m_s(x) with m_s = z_b − z_k the student's
  logit margin (median over samples): 1 or more, the student's boundary is crossed as the
  teacher's is; 0, the teacher's direction does not move the student. Graded where *follows*
  is not: x̃_t lies just past the teacher's boundary, so a boundary only slightly farther
  away in the student already counts as not followed.
- *cos*: the cosine between the two perturbations v_t = x̃_t − x and v_s = x̃_s − x, and
  *magnitude*: min(|v_t|, |v_s|) / max(|v_t|, |v_s|), both 1 when the student's boundary lies
  where the teacher's does, in the direction the teacher's does; over images where both
  attacks landed in k. In the spirit of BSS's two boundary-similarity metrics (Heo et al.,
  AAAI 2019); not their exact definitions, whose text is not available here.
- *‖v_s‖ / ‖v_t‖*: the median ratio of the distances: above 1, the student's boundary is
  farther from the image than the teacher's along its own attack direction.

Runs are grouped by their directory name without the `-s<seed>` suffix (the quality
benchmark's layout, `<out>/runs/<variant>-s<seed>`) and their epochs, so the runs of two
budgets can share a table; a group's row is mean ± std over runs.
`--reference ARCH=CHECKPOINT` adds a row for a model trained independently of the teacher
(e.g. the ResNet-56 against the ResNet-20 teacher): how much of a boundary two good networks
share without any distillation.
"""

from __future__ import annotations

import argparse
import re
import shlex
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass
from math import nan
from pathlib import Path

import torch
from docs_section import replace_block, wrap
from torch import nn

from compressor.errors import UserError
from compressor.methods.boundary import attack_to_boundary, normalized_bounds, sample_targets
from compressor.methods.interpolation import logit_margin
from compressor.models.teacher import load_teacher
from compressor.recipe import AttackConfig, TeacherConfig
from compressor.reporting.run_report import read_metrics
from export.run_inputs import read_run, read_splits, read_teacher
from export.validate import EvalSet

BLOCK = "boundary-similarity"  # docs/BENCHMARKS.md, in the Quality section
BATCH = 250


@dataclass(frozen=True)
class Similarity:
    """One student against the teacher, over the images both classify correctly."""

    images: int  # base images: correct for teacher and student
    teacher_landed: float  # share of the teacher's attacks that ended in k
    student_landed: float  # share of the student's attacks that ended in k
    follows: float  # on the teacher's landed samples: share the student puts in k
    stays: float  # ... and share it keeps in b
    margin_closed: float  # ... median 1 - m_s(x_t) / m_s(x), m_s the student's z_b - z_k
    cosine: float  # mean cos(v_t, v_s) where both landed
    magnitude: float  # mean min/max of |v_t|, |v_s| where both landed
    distance_ratio: float  # median |v_s| / |v_t| where both landed


def measure(
    teacher: nn.Module,
    student: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    config: AttackConfig,
    bounds: tuple[torch.Tensor, torch.Tensor] | None,
    seed: int = 0,
) -> Similarity:
    """Attack teacher and student from the same images towards the same targets and compare
    where each crossed. Both models must be in eval mode (one image's logits must not depend
    on the rest of its batch). The targets depend only on the teacher, the images and `seed`,
    so every student is measured on the same (b, k) pairs, restricted to those it gets right."""
    generator = torch.Generator().manual_seed(seed)
    parts: dict[str, list[torch.Tensor]] = defaultdict(list)
    for start in range(0, len(labels), BATCH):
        x, y = images[start : start + BATCH].float(), labels[start : start + BATCH]
        with torch.no_grad():
            teacher_logits, student_logits = teacher(x).float(), student(x).float()
        target = sample_targets(teacher_logits, y, generator)
        base = (teacher_logits.argmax(1) == y) & (student_logits.argmax(1) == y)
        x, y, k = x[base], y[base], target[base]
        if not len(y):
            continue
        x_t, logits_t, _ = attack_to_boundary(teacher, x, y, k, config, bounds)
        x_s, logits_s, _ = attack_to_boundary(student, x, y, k, config, bounds)
        with torch.no_grad():
            student_logits_t = student(x_t).float()
        student_on_t = student_logits_t.argmax(1)
        # > 0, the student being right on x (a tie, 0, would divide by zero)
        margin = logit_margin(student_logits[base], y, k).clamp_min(1e-6)
        parts["closed"].append(1.0 - logit_margin(student_logits_t, y, k) / margin)
        parts["landed_t"].append(logits_t.argmax(1) == k)
        parts["landed_s"].append(logits_s.argmax(1) == k)
        parts["follows"].append(student_on_t == k)
        parts["stays"].append(student_on_t == y)
        parts["v_t"].append((x_t - x).flatten(1))
        parts["v_s"].append((x_s - x).flatten(1))
    if not parts:
        raise UserError("no test image is classified correctly by both teacher and student")
    joined = {name: torch.cat(values) for name, values in parts.items()}
    landed_t, landed_s = joined["landed_t"], joined["landed_s"]
    both = landed_t & landed_s
    v_t, v_s = joined["v_t"][both], joined["v_s"][both]
    norm_t, norm_s = v_t.norm(dim=1), v_s.norm(dim=1)
    cosine = nn.functional.cosine_similarity(v_t, v_s, dim=1)
    magnitude = torch.minimum(norm_t, norm_s) / torch.maximum(norm_t, norm_s).clamp_min(1e-12)
    ratio = norm_s / norm_t.clamp_min(1e-12)
    return Similarity(
        images=int(landed_t.numel()),
        teacher_landed=_share(landed_t),
        student_landed=_share(landed_s),
        follows=_share(joined["follows"][landed_t]),
        stays=_share(joined["stays"][landed_t]),
        margin_closed=float(joined["closed"][landed_t].median()) if landed_t.any() else nan,
        cosine=float(cosine.mean()) if both.any() else nan,
        magnitude=float(magnitude.mean()) if both.any() else nan,
        distance_ratio=float(ratio.median()) if both.any() else nan,
    )


def _share(flags: torch.Tensor) -> float:
    """Percent of True in `flags`; nan for none."""
    return 100.0 * float(flags.float().mean()) if flags.numel() else nan


@dataclass(frozen=True)
class RunResult:
    variant: str
    epochs: int | None  # the run's training budget; None for a reference model
    test_top1: float
    similarity: Similarity


def measure_run(
    run: Path, images: int, config: AttackConfig, seed: int, reference: str | None = None
) -> list[RunResult]:
    """Read a completed run (student, teacher, test split) and measure it; with `reference`
    (ARCH=CHECKPOINT), measure that model against the run's teacher too."""
    inputs = read_run(run)
    if inputs.recipe.teacher is None:  # read_teacher's own hint is export's (--no-teacher)
        raise UserError(
            f"{run}: trained without a teacher (`compress train`); give runs whose recipe has "
            "one (`compress distill`, or quality.py's, CE included)"
        )
    teacher = read_teacher(inputs)
    _, test = read_splits(inputs, with_train=False)
    batch, labels = _first(test, images)
    bounds = normalized_bounds(test.mean, test.std)
    similarity = measure(teacher, inputs.student, batch, labels, config, bounds, seed)
    scored = [line["test_accuracy"] for line in read_metrics(inputs.run) if "test_accuracy" in line]
    epochs = inputs.recipe.train.epochs
    results = [RunResult(_variant(run.name), epochs, float(scored[-1]), similarity)]
    if reference is not None:
        arch, checkpoint = reference.split("=", 1)
        model = load_teacher(
            TeacherConfig(arch=arch, checkpoint=Path(checkpoint)),
            inputs.record["num_classes"],
            inputs.image_shape[0],
        )
        similarity = measure(teacher, model, batch, labels, config, bounds, seed)
        results.append(RunResult(f"{arch} (reference)", None, _top1(model, test), similarity))
    return results


def _top1(model: nn.Module, test: EvalSet) -> float:
    """Test top-1 (%) of a model over the whole split."""
    correct = 0
    with torch.no_grad():
        for start in range(0, len(test), BATCH):
            logits = model(torch.from_numpy(test.batch(start, start + BATCH)))
            labels = torch.from_numpy(test.labels[start : start + BATCH]).long()
            correct += int((logits.argmax(1) == labels).sum())
    return 100.0 * correct / len(test)


def _first(test: EvalSet, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `count` test images, normalised as the student was trained."""
    count = min(count, len(test))
    return torch.from_numpy(test.batch(0, count)), torch.from_numpy(test.labels[:count]).long()


def _variant(name: str) -> str:
    """`amkd-s2` -> `amkd`: runs of one variant over several seeds form one row."""
    return re.sub(r"-s\d+$", "", name)


COLUMNS = (
    "variant",
    "epochs",
    "runs",
    "test top-1 (%)",
    "follows (%)",
    "stays b (%)",
    "margin closed",
    "cos(v_t, v_s)",
    "magnitude",
    "‖v_s‖ / ‖v_t‖",
    "base images",
    "landed t / s (%)",
)


def table(results: list[RunResult]) -> list[str]:
    """One row per variant and budget, mean ± std over its runs, in the order the runs were
    given."""
    groups: dict[tuple[str, int | None], list[RunResult]] = defaultdict(list)
    for result in results:
        groups[result.variant, result.epochs].append(result)
    lines = ["| " + " | ".join(COLUMNS) + " |", "|---|" + "---:|" * (len(COLUMNS) - 1)]
    for (variant, epochs), runs in groups.items():
        sims = [run.similarity for run in runs]
        cells = [
            variant,
            "—" if epochs is None else str(epochs),
            str(len(runs)),
            _spread([run.test_top1 for run in runs], 2),
            _spread([s.follows for s in sims], 1),
            _spread([s.stays for s in sims], 1),
            _spread([s.margin_closed for s in sims], 2),
            _spread([s.cosine for s in sims], 3),
            _spread([s.magnitude for s in sims], 3),
            _spread([s.distance_ratio for s in sims], 2),
            f"{statistics.mean(s.images for s in sims):.0f}",
            f"{statistics.mean(s.teacher_landed for s in sims):.0f} / "
            f"{statistics.mean(s.student_landed for s in sims):.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _spread(values: list[float], digits: int) -> str:
    """mean ± sample std, or the value alone for one run."""
    mean = statistics.mean(values)
    if len(values) < 2:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def report(results: list[RunResult], args: argparse.Namespace, argv: list[str]) -> str:
    """The block for docs/BENCHMARKS.md: the command, what was measured, the table."""
    command = shlex.join(["python", "benchmarks/boundary_similarity.py", *argv])
    lines = [
        f"`{command}`",
        "",
        wrap(
            f"The first {args.images} test images, those teacher and student both get right; "
            f"target classes drawn from the teacher (seed {args.seed}); the training attack "
            f"(η 0.3, ε 1e-4, at most {args.max_steps} steps) on the teacher and on the "
            "student from each image. *follows*: the share of the teacher's boundary samples "
            "(those that landed in k) the student also puts in k; *stays b*: the share it "
            "still puts in b; *margin closed*: how far the teacher's perturbation took the "
            "student towards its own b/k boundary (1: all the way). *cos* and *magnitude* "
            "(min/max of the two distances) compare the two perturbations where both landed "
            "in k; 1 means the student's boundary lies where the teacher's does. The "
            "script's docstring has the definitions.",
        ),
        "",
        *table(results),
    ]
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+", help="completed distillation runs")
    parser.add_argument("--images", type=int, default=1000, help="first N test images")
    parser.add_argument("--max-steps", type=int, default=10, help="attack updates (training: 10)")
    parser.add_argument("--seed", type=int, default=0, help="for the target-class draws")
    parser.add_argument(
        "--reference",
        metavar="ARCH=CHECKPOINT",
        help="a model trained without the teacher, measured against the first run's teacher",
    )
    parser.add_argument("--write-docs", action="store_true", help="update docs/BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.images < 1 or not 1 <= args.max_steps <= 100:
        parser.error("--images must be at least 1 and --max-steps within 1..100")
    if args.reference is not None and "=" not in args.reference:
        parser.error("--reference takes ARCH=CHECKPOINT, e.g. resnet56=teachers/resnet56.th")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    torch.manual_seed(0)
    config = AttackConfig(max_steps=args.max_steps)
    try:
        results, references = [], []
        for number, run in enumerate(args.runs):
            reference = args.reference if number == 0 else None
            student, *independent = measure_run(run, args.images, config, args.seed, reference)
            results.append(student)
            references.extend(independent)  # the last row: a yardstick, not a method
            print(f"measured {run}", file=sys.stderr, flush=True)
        results.extend(references)
        text = report(results, args, argv)
        print(text)
        if args.write_docs:
            replace_block(BLOCK, text, script="boundary_similarity.py")
    except UserError as error:
        print(f"error: {error.lines[0]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
