"""Do the distilled students' decision boundaries follow the teacher's? Issue 7 asks whether
AMKD beats KD on accuracy; this measures what AMKD claims to transfer, the boundary itself.

    .venv/bin/python benchmarks/boundary_similarity.py RUN [RUN ...] [--images 1000] [--write-docs]

All runs must have been distilled from one teacher. Of the first `--images` test images, those
the teacher and every measured model classify correctly (class b) are used, the same images
for every row. For each, a target class k != b is drawn from the teacher's softmax (seeded:
the same draws for every row), and the training attack (`attack_to_boundary`: BSS's step,
η 0.3, ε 1e-4, `--max-steps`) runs twice from the image: on the teacher and on the student.
BSS's step is η·(z_b − z_k + ε) long, in logit units, so one step can overshoot the boundary
by a distance that depends on the model's logit scale; each result is therefore bisected back
along the segment from the image (`interpolate_to_boundary`, HALVINGS halvings) to just past
that model's b/k crossing: x̃_t for the teacher, x̃_s for the student. Per row:

- *follows*: on the teacher's boundary samples (x̃_t where the teacher's argmax is k), the share
  the student also puts in k. A student with the teacher's boundary would put about half of
  them there (they lie just past the teacher's crossing); the teacher itself puts all.
- *stays b*: the share the student still puts in b (the rest went to a third class).
- *margin closed*: on the same samples, how far the teacher's perturbation took the student
  towards its own b/k crossing, 1 − m_s(x̃_t) / m_s(x) with m_s = z_b − z_k the student's
  logit margin (median over samples): about 1 if the student's crossing is where the
  teacher's is (above 1: z_k overtook z_b), 0 if the teacher's direction does not move the
  student. Graded where *follows* is not.
- *cos*: the cosine between the two perturbations v_t = x̃_t − x and v_s = x̃_s − x, and
  *magnitude*: min(|v_t|, |v_s|) / max(|v_t|, |v_s|), both 1 when the student's crossing lies
  where the teacher's does, in the direction the teacher's does; over images where both
  attacks landed in k. In the spirit of BSS's two boundary-similarity metrics (Heo et al.,
  AAAI 2019); not their exact definitions, whose text is not available here.
- *‖v_s‖ / ‖v_t‖*: the median ratio of the distances: above 1, the student's crossing is
  farther from the image than the teacher's, each along its own attack direction.

Runs are grouped by their directory name without the `-s<seed>` suffix (the quality
benchmark's layout, `<out>/runs/<variant>-s<seed>`) and their epochs, so the runs of two
budgets can share a table; a group's row is mean ± sample std over its runs.
`--reference ARCH=CHECKPOINT` adds a row for a model trained independently of the teacher
(e.g. the ResNet-56 against the ResNet-20 teacher): how much of a boundary two good networks
share without any distillation.

Below the table, one line on the teacher's own attack as training runs it, unbisected: where
on its step it crossed z_b = z_k (the share of the segment from the image), and the teacher's
softmax of k there and at the attack's result, over the attacks that crossed. The same for
every row (same teacher, images and targets).
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

import numpy as np
import pydantic
import torch
from docs_section import mean_std, replace_block, wrap
from torch import nn

from compressor.errors import UserError
from compressor.methods.boundary import attack_to_boundary, normalized_bounds, sample_targets
from compressor.methods.interpolation import interpolate_to_boundary, logit_margin
from compressor.models.fingerprint import weights_sha256
from compressor.models.teacher import load_teacher
from compressor.recipe import AttackConfig, TeacherConfig
from compressor.reporting.run_report import read_metrics
from export.run_inputs import read_run, read_splits, read_teacher
from export.validate import EvalSet, accuracy, predict

BLOCK = "boundary-similarity"  # docs/BENCHMARKS.md, in the Quality section
BATCH = 250
HALVINGS = 12  # the crossing to within 2^-12 of the attack's segment


@dataclass(frozen=True)
class Overshoot:
    """Where the teacher's own training attack ends, over its samples that crossed z_b = z_k."""

    crossing_fraction: float  # median share of the attack's segment at which it crossed
    attack_target_probability: float  # median teacher softmax of k at the attack's result
    bisected_target_probability: float  # ... and at the result bisected back to the crossing


@dataclass(frozen=True)
class Similarity:
    """One model against the teacher, over the images given."""

    images: int  # images measured (all correct for teacher and model)
    teacher_landed: float  # share of the teacher's attacks that ended in k
    student_landed: float  # share of the model's attacks that ended in k
    follows: float  # on the teacher's landed samples: share the model puts in k
    stays: float  # ... and share it keeps in b
    margin_closed: float  # ... median 1 - m_s(x_t) / m_s(x), m_s the model's z_b - z_k
    cosine: float  # mean cos(v_t, v_s) where both landed
    magnitude: float  # mean min/max of |v_t|, |v_s| where both landed
    distance_ratio: float  # median |v_s| / |v_t| where both landed
    teacher_attack: Overshoot  # the same for every model measured on the same images


def crossing(
    model: nn.Module,
    images: torch.Tensor,
    source: torch.Tensor,
    target: torch.Tensor,
    config: AttackConfig,
    bounds: tuple[torch.Tensor, torch.Tensor] | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The model's attack from b towards k, bisected back to just past its b/k crossing on
    the segment from the image (a row with no crossing there stays where the attack left
    it): the attack's results and logits, then the bisected samples and logits."""
    attacked, attacked_logits, _ = attack_to_boundary(model, images, source, target, config, bounds)
    samples, logits = interpolate_to_boundary(
        model, images, attacked, source, target, HALVINGS, attacked_logits
    )
    return attacked, attacked_logits, samples, logits


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
    on the rest of its batch). The targets depend only on the teacher, the images and `seed`;
    images either model gets wrong are left out, so pass the same images, all correct for
    every model compared, for rows that measure the same (b, k) pairs."""
    if teacher.training or student.training:
        raise ValueError("measure() needs both models in eval mode")
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
        attacked_t, attacked_logits_t, x_t, logits_t = crossing(teacher, x, y, k, config, bounds)
        _, _, x_s, logits_s = crossing(student, x, y, k, config, bounds)
        with torch.no_grad():
            student_logits_t = student(x_t).float()
        # > 0, the student being right on x (a tie, 0, would divide by zero)
        margin = logit_margin(student_logits[base], y, k).clamp_min(1e-6)
        parts["closed"].append(1.0 - logit_margin(student_logits_t, y, k) / margin)
        parts["landed_t"].append(logits_t.argmax(1) == k)
        parts["landed_s"].append(logits_s.argmax(1) == k)
        parts["follows"].append(student_logits_t.argmax(1) == k)
        parts["stays"].append(student_logits_t.argmax(1) == y)
        parts["v_t"].append((x_t - x).flatten(1))
        parts["v_s"].append((x_s - x).flatten(1))
        parts["crossed_t"].append(logit_margin(attacked_logits_t, y, k) <= 0)
        parts["fraction_t"].append(_segment_fraction(x_t, x, attacked_t))
        parts["p_attack_t"].append(attacked_logits_t.softmax(1).gather(1, k[:, None])[:, 0])
        parts["p_bisected_t"].append(logits_t.softmax(1).gather(1, k[:, None])[:, 0])
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
        teacher_attack=_overshoot(joined),
    )


def _segment_fraction(sample: torch.Tensor, start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
    """l with sample = (1 - l) start + l end, per row (the sample lies on that segment)."""
    direction = (end - start).flatten(1)
    length = direction.square().sum(1).clamp_min(1e-12)
    return ((sample - start).flatten(1) * direction).sum(1) / length


def _overshoot(joined: dict[str, torch.Tensor]) -> Overshoot:
    """The medians of the teacher's attack results that crossed; nan where none did."""
    crossed = joined["crossed_t"]
    if not crossed.any():
        return Overshoot(nan, nan, nan)
    return Overshoot(
        *(
            float(joined[name][crossed].median())
            for name in ("fraction_t", "p_attack_t", "p_bisected_t")
        )
    )


def _share(flags: torch.Tensor) -> float:
    """Percent of True in `flags`; nan for none."""
    return 100.0 * float(flags.float().mean()) if flags.numel() else nan


@dataclass(frozen=True)
class Model:
    """One row's model: a run's student, or the reference."""

    variant: str
    epochs: int | None  # the run's training budget; None for a reference model
    test_top1: float
    network: nn.Module


@dataclass(frozen=True)
class RunResult:
    variant: str
    epochs: int | None
    test_top1: float
    similarity: Similarity


def read_student(run: Path) -> tuple[Model, nn.Module, EvalSet, tuple[int, int]]:
    """A completed distillation run's student, its teacher, its test split and the data's
    class and channel counts."""
    inputs = read_run(run)
    if inputs.recipe.teacher is None:  # read_teacher's own hint is export's (--no-teacher)
        raise UserError(
            f"{run}: trained without a teacher (`compress train`); give runs whose recipe has "
            "one (`compress distill`, or quality.py's, CE included)"
        )
    teacher = read_teacher(inputs)
    _, test = read_splits(inputs, with_train=False)
    scored = [line["test_accuracy"] for line in read_metrics(inputs.run) if "test_accuracy" in line]
    if not scored:
        raise UserError(f"{inputs.run.metrics}: no epoch was scored on the test set")
    student = Model(_variant(run.name), inputs.recipe.train.epochs, scored[-1], inputs.student)
    return student, teacher, test, (inputs.record["num_classes"], inputs.image_shape[0])


def read_reference(reference: str, classes: int, channels: int, test: EvalSet) -> Model:
    """--reference ARCH=CHECKPOINT, loaded as a teacher is, scored on the test split."""
    arch, checkpoint = reference.split("=", 1)
    try:
        config = TeacherConfig(arch=arch, checkpoint=Path(checkpoint))
        network = load_teacher(config, classes, channels)
    except (pydantic.ValidationError, UserError) as error:
        first = error.lines[0] if isinstance(error, UserError) else error.errors()[0]["msg"]
        raise UserError(f"--reference {reference}: {first}") from None
    return Model(f"{arch} (reference)", None, _top1(network, test), network)


def _top1(model: nn.Module, test: EvalSet) -> float:
    """Test top-1 (%) of a model over the whole split, in fp32 as the engine scores."""

    def infer(images: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(images)).numpy()

    return accuracy(predict(infer, test, BATCH), test.labels)


def measure_all(
    runs: list[Path], args: argparse.Namespace, config: AttackConfig
) -> tuple[list[RunResult], int]:
    """Every run's student (and the reference, last) against their one teacher, on the first
    `args.images` test images that all of them classify correctly; and how many test images
    that was (fewer where the test set is smaller)."""
    first, teacher, test, (classes, channels) = read_student(runs[0])
    fingerprint, models = weights_sha256(teacher), [first]
    for run in runs[1:]:
        student, other_teacher, other_test, _ = read_student(run)
        if weights_sha256(other_teacher) != fingerprint:
            raise UserError(
                f"{run}: distilled from another teacher than {runs[0]}; compare the runs of "
                "one teacher"
            )
        if len(other_test) != len(test):  # its test top-1 would not compare with the others'
            raise UserError(
                f"{run}: scored on {len(other_test):,} test images, {runs[0]} on {len(test):,} "
                "(data.max_test_samples); compare runs scored on one test set"
            )
        models.append(student)
    if args.reference is not None:
        models.append(read_reference(args.reference, classes, channels, test))
    count = min(args.images, len(test))
    images = torch.from_numpy(test.batch(0, count))
    labels = torch.from_numpy(test.labels[:count]).long()
    with torch.no_grad():
        correct = teacher(images).argmax(1) == labels
        for model in models:
            correct &= model.network(images).argmax(1) == labels
    bounds = normalized_bounds(test.mean, test.std)
    results = []
    for model in models:
        similarity = measure(
            teacher, model.network, images[correct], labels[correct], config, bounds, args.seed
        )
        results.append(RunResult(model.variant, model.epochs, model.test_top1, similarity))
        print(f"measured {model.variant}", file=sys.stderr, flush=True)
    return results, count


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
    "images",
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
            mean_std([run.test_top1 for run in runs], 2),
            mean_std([s.follows for s in sims], 1),
            mean_std([s.stays for s in sims], 1),
            mean_std([s.margin_closed for s in sims], 2),
            mean_std([s.cosine for s in sims], 3),
            mean_std([s.magnitude for s in sims], 3),
            mean_std([s.distance_ratio for s in sims], 2),
            f"{statistics.mean(s.images for s in sims):.0f}",
            f"{statistics.mean(s.teacher_landed for s in sims):.0f} / "
            f"{statistics.mean(s.student_landed for s in sims):.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def overshoot_sentence(overshoot: Overshoot) -> str:
    """What the unbisected training attack does on the teacher: how far past its crossing."""
    return (
        "The training attack itself, unbisected, on the teacher (what `attack.search: "
        "gradient` trains on), over its samples that crossed z_b = z_k: the crossing lies at a "
        f"median {overshoot.crossing_fraction:.2f} of the way from the image to the attack's "
        "result, where the teacher's softmax of k has a median of "
        f"{overshoot.bisected_target_probability:.2f}; at the result it is "
        f"{overshoot.attack_target_probability:.3f} (what `attack.search: refined` bisects "
        "back)."
    )


def report(results: list[RunResult], images: int, args: argparse.Namespace, argv: list[str]) -> str:
    """The block for docs/BENCHMARKS.md: the command, what was measured (on the first
    `images` test images), the table."""
    command = shlex.join(["python", "benchmarks/boundary_similarity.py", *argv])
    lines = [
        f"`{command}`",
        "",
        wrap(
            f"Of the first {images:,} test images, those the teacher and every row's model "
            f"get right (*images*); target classes drawn from the teacher (seed {args.seed}); "
            f"the training attack (η 0.3, ε 1e-4, at most {args.max_steps} steps) on the "
            "teacher and on the model from each image, each bisected back to just past that "
            f"model's b/k crossing ({HALVINGS} halvings). *follows*: the share of the "
            "teacher's boundary samples (those in k) the model also puts in k; *stays b*: the "
            "share it still puts in b; *margin closed*: how far the teacher's perturbation "
            "took the model towards its own b/k crossing (median; about 1: all the way). "
            "*cos* and *magnitude* (min/max of the two distances) compare the two "
            "perturbations where both landed in k; 1 means the model's crossing lies where "
            "the teacher's does. ± is the sample std over a row's runs. The script's "
            "docstring has the definitions.",
        ),
        "",
        *table(results),
        "",
        wrap(overshoot_sentence(results[0].similarity.teacher_attack)),
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
        help="a model trained without the teacher, measured against the runs' teacher",
    )
    parser.add_argument("--write-docs", action="store_true", help="update docs/BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.images < 1 or not 1 <= args.max_steps <= 100:
        parser.error("--images must be at least 1 and --max-steps within 1..100")
    folders = [run.resolve() for run in args.runs]
    twice = sorted(
        {
            str(run)
            for run, folder in zip(args.runs, folders, strict=True)
            if folders.count(folder) > 1
        }
    )
    if twice:  # counted twice, a row of one run would look like several, its ± a spread
        parser.error(f"a run given twice: {', '.join(twice)}")
    if args.reference is not None and "=" not in args.reference:
        parser.error("--reference takes ARCH=CHECKPOINT, e.g. resnet56=teachers/resnet56.th")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    config = AttackConfig(max_steps=args.max_steps)
    try:
        results, images = measure_all(args.runs, args, config)
        text = report(results, images, args, argv)
        print(text)
        if args.write_docs:
            replace_block(BLOCK, text, script="boundary_similarity.py")
    except UserError as error:
        print(f"error: {error.lines[0]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
