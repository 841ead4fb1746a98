"""A whole run, top to bottom: check → load data and models → train epochs → evaluate → save.

`compress train` and `compress distill` both land here; they differ only in whether a teacher
is loaded and which method computes the loss. The run directory is claimed only after the
recipe, data, and teacher have proven good, so a bad input never leaves a half-made run.
"""

from __future__ import annotations

import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from compressor.data import Dataset, load_dataset, with_channels_hint
from compressor.data.summary import data_summary, missing_class_warnings
from compressor.engine.checkpoint import (
    load_checkpoint,
    mismatch,
    process_counts,
    restore_every_rank_rng_state,
    saved_epoch,
    saved_run_id,
)
from compressor.engine.context import RunContext, RunModels, RunObserver, SilentObserver
from compressor.engine.device import restored_torch_settings, select_device, setup_device
from compressor.engine.distributed import (
    Distributed,
    ddp_wrap,
    join_process_group,
    lost_process,
)
from compressor.engine.epochs import train_epochs
from compressor.engine.evaluate import Evaluation, agreement
from compressor.engine.resume import (
    check_checkpoint_is_the_runs,
    check_same_data,
    check_same_recipe,
    comparable_to,
    data_counts,
    data_digests,
    drop_metrics_after,
    interrupted_message,
    recipe_changes,
)
from compressor.engine.schedule import build_optimizer
from compressor.engine.scoring import ModelSummary, eval_loader, model_summary
from compressor.engine.teacher import (
    PinnedTeacher,
    PreparedTeacher,
    pin_teacher,
    prepare_teacher,
    teacher_source,
)
from compressor.errors import ChannelsDiffer, UserError
from compressor.interrupt import import_whole, interrupts_ignored
from compressor.io import (
    WriteFailed,
    file_sha256,
    loads_json,
    save_torch,
    write_json,
    write_text,
)
from compressor.methods import build_method, training_module
from compressor.methods.amkd import (
    check_feature_embedding,
    refuse_under_torchrun,
    uses_feature_embedding,
)
from compressor.methods.boundary import normalized_bounds
from compressor.methods.bss import attacking_epochs
from compressor.models import count_flops, count_parameters, create_model, student_kwargs
from compressor.models.probe import check_student_output
from compressor.preflight import check_recipe, setting_warnings, unused_settings
from compressor.provenance import manifest, now_iso, trained_recipe_sha256, with_free_settings_of
from compressor.recipe import AMKDMethod, BSSMethod, CEMethod, Recipe, load_recipe, recipe_to_yaml
from compressor.reporting.run_report import write_run_report
from compressor.rundir import (
    RunDir,
    check_inputs_outside_run,
    check_run_dir,
    check_same_teacher,
    check_still_in_place,
    claim_run_dir,
    discard_replaced_run,
    manifest_record,
    mark_stopped,
    read_completed_run,
    run_dir_for,
    set_aside_note,
)
from compressor.rundir.status import lock_run


@dataclass(frozen=True)
class RunResult:
    run: RunDir
    student: ModelSummary
    teacher: ModelSummary | None
    agreement: float | None  # top-1 agreement teacher vs student on the test set, percent
    main_process: bool = True  # False on torchrun's other ranks: only rank 0 reports


def _student_record(recipe: Recipe, dataset: Dataset, student: nn.Module) -> dict[str, Any]:
    """student.pt: weights plus everything needed to rebuild and feed the model."""
    return {
        "schema_version": 1,
        "arch": recipe.student.arch,
        "kwargs": recipe.student.kwargs,
        "num_classes": dataset.num_classes,
        "image_shape": list(dataset.image_shape),
        "classes": list(dataset.classes),
        "mean": list(dataset.mean),
        "std": list(dataset.std),
        "state_dict": {k: v.detach().cpu() for k, v in student.state_dict().items()},
    }


def run_training(
    recipe: Recipe,
    recipe_path: Path | str,
    *,
    distill: bool,
    resume: bool = False,
    overwrite: bool = False,
    observer: RunObserver | None = None,
    continue_with: str | None = None,
) -> RunResult:
    """Train (or distil) the recipe into its run directory; `continue_with` is the command
    that goes on after a stop, where `compress train|distill RECIPE --resume` would not.
    Without an `observer`, the run is silent but for its warnings, raised as
    CompressorWarning."""
    observer = observer or RunObserver()
    recipe_path = Path(recipe_path)
    source = str(recipe_path)
    unused = unused_settings(recipe, distill=distill)  # before `train` drops teacher and method
    if not distill:
        recipe = recipe.model_copy(update={"method": CEMethod(), "teacher": None})
    warnings = [*unused, *setting_warnings(recipe)]
    run = run_dir_for(recipe, recipe_path)

    # 1. Inputs: device, data, models. Nothing is written before these are known good.
    #    The process group first (joined already where the recipe was read): a file the
    #    recipe names, or a GPU, can be missing on one node only, so each is checked
    #    `together` (distributed.join_process_group).
    distributed = join_process_group()
    if not distributed.is_main:
        observer = SilentObserver()  # one voice: rank 0 talks, the others work
    attempt = _Attempt()
    # `held` keeps the run's lock until the manifest says how the run ended (Ctrl-C included).
    with ExitStack() as held:
        try:
            import_whole("torch._dynamo")  # the optimizer's first use imports it

            def check_inputs() -> None:
                distributed.take_device(select_device(recipe.train.device))
                check_recipe(recipe, source, needs_teacher=distill)

            distributed.together(check_inputs)
            _check_one_recipe(distributed, recipe, source)
            for warning in warnings:
                observer.warning(warning)
            with restored_torch_settings():
                return _execute(
                    recipe, source, run, distributed, resume, overwrite, observer, held, attempt
                )
        except KeyboardInterrupt:
            if distributed.is_main:
                # Marked, or claimed (an --overwrite has set the old run aside by then).
                if mark_stopped(run, attempt.token) or attempt.claimed:
                    message = interrupted_message(
                        run, source, distill, distributed.enabled, continue_with=continue_with
                    )
                else:  # e.g. while reading the data: an --overwrite has replaced nothing yet
                    message = f"stopped before the run started; {run.root} is as it was"
                    if continue_with is not None:
                        message += f"; continue with: {continue_with}"
                observer.stopped(message)
            raise
        except WriteFailed as error:
            # The disk filled up, or the folder turned read-only, mid-run: once that is put
            # right, the run resumes from its last checkpoint, which is whole.
            if not distributed.is_main:
                raise
            if not (mark_stopped(run, attempt.token, status="failed") or attempt.claimed):
                raise
            stopped = interrupted_message(
                run, source, distill, distributed.enabled, "stopped", continue_with
            )
            raise UserError(f"{error}; the run {stopped}") from error
        except UserError as error:
            # Bad input found mid-run (a diverging loss): its message says what to change.
            # A refusal before this process wrote its manifest leaves the run alone.
            if distributed.is_main:
                mark_stopped(run, attempt.token, status="failed", reason=str(error))
                note = set_aside_note(run) if attempt.claimed else ""
                if note:
                    observer.stopped(f"{run.root} failed{note}")
            raise
        except BrokenPipeError:
            # The output's reader stopped (`| head`): the run was stopped from outside, as by
            # SIGPIPE, and resumes; there is nobody left to tell how (compressor.entry).
            if distributed.is_main:
                mark_stopped(run, attempt.token)
            raise
        except Exception as error:
            # A crash (user code): the manifest says the run ended, and how to resume it is
            # printed, before the traceback. Whole: torchrun's SIGTERM, when another process
            # died, came between the two and left the run failed with nothing said.
            with interrupts_ignored():
                started = distributed.is_main and mark_stopped(run, attempt.token, status="failed")
                if started or (distributed.is_main and attempt.claimed):
                    observer.stopped(
                        interrupted_message(
                            run, source, distill, distributed.enabled, "failed", continue_with
                        )
                    )
                lost = lost_process(error) if distributed.enabled else None
                if lost is not None:  # not a bug: another process died (killed, out of memory)
                    raise UserError(
                        f"process {distributed.rank} stopped: another process of the run ended "
                        f"without a word ({lost}): killed, out of memory, or its machine went "
                        "down; see its log"
                    ) from None
                raise
        finally:
            distributed.close()


@dataclass
class _Attempt:
    """This process's start of a run. Its manifest carries the token, so only the run this
    process started is marked stopped; once it has claimed the run directory, an --overwrite
    has set the old run aside, even before the new manifest is written."""

    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    claimed: bool = False


@dataclass(frozen=True)
class _Started:
    """What the manifest of a run in progress says, rewritten as it ends."""

    at: str
    fields: dict[str, Any]  # where it came from, and which teacher (see _write_start)


def _execute(
    recipe: Recipe,
    source: str,
    run: RunDir,
    distributed: Distributed,
    resume: bool,
    overwrite: bool,
    observer: RunObserver,
    held: ExitStack,
    attempt: _Attempt,
) -> RunResult:
    batch_per_process = distributed.per_rank_batch(recipe.train.batch_size)
    if distributed.enabled and isinstance(recipe.method, AMKDMethod):
        refuse_under_torchrun(recipe.method)
    setup = setup_device(recipe.train)
    setup = replace(setup, device=distributed.take_device(setup.device))
    context = RunContext(recipe, source, run, distributed, batch_per_process, setup, observer)
    torch.manual_seed(recipe.train.seed)
    if recipe.train.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    # 1. Inputs: nothing is written before the run directory, the data and the models are
    #    known good. The directory first, before minutes of data loading and teacher scoring.
    #    Teacher and data files can be missing on some nodes only: read `together`.
    distributed.together(lambda: _check_run_dir(context, resume, overwrite))
    pinned = _pin_teacher(context, resume) if recipe.teacher else None
    # Under torchrun every process would have to agree; there the run is written again.
    finished = resume and not distributed.enabled
    finished = finished and saved_epoch(run.checkpoint) == recipe.train.epochs
    done = completed_run_result(run) if finished else None
    if done is not None:
        return _completed_already(context, done)
    processes = (
        f" × {distributed.world_size} processes (torchrun, batch {batch_per_process} each)"
        if distributed.enabled
        else ""
    )
    observer.message(f"device {setup.device}{processes}, reading data set {recipe.data.name}")
    dataset = distributed.together(lambda: load_dataset(recipe.data))
    observer.message(data_summary(dataset, recipe.data))
    for warning in missing_class_warnings(dataset, recipe.data):
        observer.warning(warning)
    _check_split_for_batches(dataset, distributed, recipe, observer)
    models = _build_models(context, dataset, pinned)
    distributed.seed_own_stream(recipe.train.seed)  # built alike; each draws its own from here

    # 2. The run directory: claimed, and a resumed run's state read, before any write.
    state = distributed.together(
        lambda: _claim(context, resume, overwrite, held, attempt, models.student)
    )
    if state is not None:  # each node lists its own copy of an image folder
        distributed.together(lambda: check_same_data(state, dataset, source))
    # A run keeps its id through every resume: its checkpoints carry it (rank 0's saves).
    run_id = state.get("run_id") if state else None
    run_id = run_id if isinstance(run_id, str) else uuid.uuid4().hex
    counts = process_counts(state, distributed.world_size, recipe.train.epochs)
    started = _write_start(context, attempt, models.teacher, run_id, counts, dataset)
    optimizer = build_optimizer(list(models.student.parameters()), recipe.train.optimizer)
    scaler = torch.amp.GradScaler(setup.device.type, enabled=setup.needs_grad_scaler)
    start_epoch = _restore(context, state, models.student, optimizer, scaler, counts)

    # 3. Train.
    carried = {
        "run_id": run_id,
        "process_counts": counts,
        "data_counts": data_counts(dataset),
        "data_digests": data_digests(dataset),
        "data_classes": list(dataset.classes),
    }
    last_eval = train_epochs(context, dataset, models, optimizer, scaler, start_epoch, carried)

    # 4. Final evaluation, artifacts, report.
    return _finish(context, dataset, models, last_eval, attempt, started)


def completed_run_result(run: RunDir) -> RunResult | None:
    """The figures of a run that completed and is whole (`read_completed_run` accepts it, as
    export does, and its reports are all there), read from its report.json; None otherwise:
    resuming finishes the run, or writes its lost files again from the last checkpoint."""
    try:
        read_completed_run(run)
        if not all(run.report(suffix).is_file() for suffix in ("md", "html")):
            return None
        fields = loads_json(run.report("json").read_text(encoding="utf-8"))["results"]
        teacher = ModelSummary(**fields["teacher"]) if fields["teacher"] else None
        return RunResult(run, ModelSummary(**fields["student"]), teacher, fields["top1_agreement"])
    except (UserError, OSError, ValueError, KeyError, TypeError):
        return None


def _check_one_recipe(distributed: Distributed, recipe: Recipe, source: str) -> None:
    """Each machine of a torchrun job reads its own copy of the recipe. Copies that differ in
    what is trained (the epochs, a learning rate, the seed) crashed the run in a collective
    that did not match, or trained each process its own way without a word. Where files are
    may differ: each machine names its own paths."""
    recipes = distributed.gather_objects(recipe)
    first = recipes[0]
    for rank, other in enumerate(recipes):
        trained = comparable_to(other, first)
        if trained != first:
            raise UserError(
                f"{source}: process {rank}'s copy of the recipe differs from process 0's "
                f"({recipe_changes(first, trained)}); give every machine the same recipe"
            )


def write_free_settings(run: RunDir, recipe: Recipe) -> bool:
    """Write `recipe`'s settings free to change after training (export, gate, where files
    are) into a completed run's recipe.yaml, where they differ; whether it did. The caller
    has checked that the rest does what the run's does; it stays as the run wrote it (a
    `flip: false` the run left to the default), so the hash its manifest records holds."""
    written = load_recipe(run.recipe, started=True)
    updated = with_free_settings_of(written, recipe)
    if updated == written:
        return False
    write_text(run.recipe, recipe_to_yaml(updated))
    return True


def _completed_already(context: RunContext, done: RunResult) -> RunResult:
    """--resume of a run that completed and is whole (a CI job restoring its cached run, as
    docs/ci/github-actions.yml does): nothing to train or write again. Re-scoring the teacher
    and the student on the test set took most of a minute for figures report.json has. The
    settings that may change after training (export, gate, where files are) go into its
    recipe.yaml, as a resume writes them, under the run's lock."""
    run = context.run
    lock = lock_run(run)
    try:
        write_free_settings(run, context.recipe)
        # Where it was resumed from, as a resume records it: messages about the run give
        # commands that paste from there (the project may have moved since).
        record = manifest_record(run) or {}
        where = _where_from(context)
        if any(record.get(key) != value for key, value in where.items()):
            write_json(run.manifest, {**record, **where})
        discarded = discard_replaced_run(run)  # kept before, while an export of it ran
    finally:
        lock.release()
    context.observer.message(
        f"{run.root} has completed and its files are whole: nothing to train or write again "
        f"(start it over with --overwrite)"
    )
    if discarded is not None:
        context.observer.message(discarded)
    return done


def _check_split_for_batches(
    dataset: Dataset, distributed: Distributed, recipe: Recipe, observer: RunObserver
) -> None:
    """A training split too small to give each process 2 images a step is refused: batch
    norm cannot normalise a batch of one (a 1×1 feature map), and the run crashed in its first
    step. One smaller than the batch is said: each epoch is then a single step."""
    images = len(dataset.train)
    if images > distributed.world_size:
        if images < recipe.train.batch_size:
            observer.warning(
                f"train.batch_size {recipe.train.batch_size} is more than the "
                f"training split's {images} images: each epoch is one step on all of them"
            )
        return
    subset = " or raise data.max_train_samples" if recipe.data.max_train_samples else ""
    needs = (
        f"more than one per process ({distributed.world_size})"
        if distributed.enabled
        else "at least 2"
    )
    raise UserError(
        f"data: the training split has {images} image{'' if images == 1 else 's'}; training "
        f"needs {needs}, as batch norm cannot normalise a batch of one: add images{subset}"
    )


def _check_run_dir(context: RunContext, resume: bool, overwrite: bool) -> None:
    """Rank 0 checks the run directory (it alone claims it in step 2) and, on --resume, that
    the recipe is the one the run started with; every rank stops if it refuses."""
    if context.main:
        check_run_dir(context.run, resume=resume, overwrite=overwrite)
        recipe = context.recipe
        inputs = {
            "teacher.checkpoint": recipe.teacher.checkpoint if recipe.teacher else None,
            "data.root": recipe.data.root,
        }
        check_inputs_outside_run(context.run, inputs, context.source, overwrite=overwrite)
        if resume:
            check_same_recipe(context.run, context.recipe, context.source)
            check_checkpoint_is_the_runs(context.run, saved_run_id(context.run.checkpoint))


def _build_models(context: RunContext, dataset: Dataset, pinned: PinnedTeacher | None) -> RunModels:
    """The pinned teacher (scored, its weights hash printed), the student and the method;
    built before the run directory is claimed: what they refuse (a student that cannot train
    on these images, a feature triplet between layers of different widths) is bad input,
    and must leave no run behind."""
    recipe, setup = context.recipe, context.setup
    try:
        student = create_model(
            recipe.student.arch,
            dataset.num_classes,
            dataset.image_shape[0],
            **student_kwargs(recipe.student.arch, recipe.student.kwargs),
        )
    except ChannelsDiffer as error:  # a torchvision student on grayscale images
        raise with_channels_hint(error, recipe.data) from None
    teacher = _ready_teacher(context, pinned, dataset) if pinned else None
    student = student.to(setup.device)
    if setup.channels_last:
        student = student.to(memory_format=torch.channels_last)
    probe, _ = next(iter(eval_loader(dataset.test, dataset, recipe, setup)))
    check_student_output(student, recipe.student.arch, probe[:2], dataset.num_classes)
    if teacher is not None and uses_feature_embedding(recipe.method):
        check_feature_embedding(student, teacher.model, probe[:2])
    if teacher is not None and context.main:  # once nothing above refused the inputs
        warning = not_smaller_warning(
            context.recipe.student.arch, student, teacher.summary, dataset.image_shape
        )
        if warning is not None:
            context.observer.warning(warning)
    trained = training_module(recipe.method, student)
    if context.distributed.enabled:  # the student only: the frozen teacher has nothing to sync
        trained = ddp_wrap(trained, setup.device)
    if recipe.train.compile:
        trained = cast(nn.Module, torch.compile(trained))
    method = build_method(
        recipe.method,
        trained,
        teacher.model if teacher else None,
        bounds=normalized_bounds(dataset.mean, dataset.std),
        dataset_size=len(dataset.train),
    )
    return RunModels(student, trained, method, teacher)


def not_smaller_warning(
    arch: str, student: nn.Module, teacher: ModelSummary, image_shape: tuple[int, int, int]
) -> str | None:
    """A student that costs the teacher's compute or more will not run faster once exported,
    and the gate's speedup rule fails at the end of a long run; one with as many parameters
    makes no smaller file (a torchvision mobilenet_v3_small has 5.7x a CIFAR ResNet-20's,
    with fewer FLOPs at 32x32). Say so before it starts. The zoo's models keep CIFAR's
    strides, so on 64x64 images its mobilenetv2 costs more than a torchvision ResNet-18."""
    flops, parameters = count_flops(student, image_shape), count_parameters(student)
    problems = []
    if flops >= teacher.flops:
        problems.append(
            f"costs {flops / 1e6:,.1f} MFLOPs per {'×'.join(map(str, image_shape[1:]))} "
            f"image, no fewer than the teacher's {teacher.flops / 1e6:,.1f}: it will not run "
            "faster"
        )
    if parameters >= teacher.parameters:
        problems.append(
            f"has {parameters:,} parameters, no fewer than the teacher's "
            f"{teacher.parameters:,}: its file will not be smaller"
        )
    if not problems:
        return None
    larger = flops >= teacher.flops and max(image_shape[1:]) > 32
    hint = (
        " (the zoo's models are laid out for 32×32 images: on larger ones take a torchvision "
        "model such as mobilenet_v2)"
        if larger
        else ""
    )
    return f"the student {arch} {'; it '.join(problems)}; choose a smaller student{hint}"


def _pin_teacher(context: RunContext, resume: bool) -> PinnedTeacher:
    """The teacher, and which one: its weights hash is recorded in the manifest, so that a
    resume or an export that finds another file at teacher.checkpoint refuses instead of
    mixing two teachers. A resume compares it here, before the data is read. Loading can
    fail on some nodes only (a file missing there), so every process waits for the others'."""
    pinned = context.distributed.together(lambda: pin_teacher(context.recipe))
    if resume:
        fix = (
            "put that teacher back there, or start over with "
            f"`compress distill {context.source} --overwrite`"
        )

        def compare() -> None:
            if context.main:
                check_same_teacher(context.run, context.recipe, pinned.weights_sha256, fix=fix)

        context.distributed.together(compare)
    return pinned


def _ready_teacher(context: RunContext, pinned: PinnedTeacher, dataset: Dataset) -> PreparedTeacher:
    """The pinned teacher scored on the test split, its source and weights hash printed."""
    prepared = prepare_teacher(context.recipe, pinned, dataset, context.setup)
    for warning in prepared.warnings:
        context.observer.warning(warning)
    context.observer.message(
        f"teacher {teacher_source(context.recipe)} (weights sha256 "
        f"{prepared.weights_sha256[:12]}): test accuracy {prepared.evaluation.accuracy:.2f} %"
    )
    return prepared


def _claim(
    context: RunContext,
    resume: bool,
    overwrite: bool,
    held: ExitStack,
    attempt: _Attempt,
    student: nn.Module,
) -> dict[str, Any] | None:
    """Rank 0 claims the run directory (held until the run ends); on --resume every rank
    reads the checkpoint. Under torchrun either can fail on some processes only (a node
    without the shared checkpoint cannot resume), hence `together` around it."""
    if context.main:
        claim = claim_run_dir(context.run, resume=resume, overwrite=overwrite)
        held.callback(claim.release)
        attempt.claimed = True
    # The recipe was compared with the run's before the data was read (step 1).
    if not resume:
        return None
    state = load_checkpoint(
        context.run.checkpoint,
        warn=context.observer.warning,
        fits=lambda loaded: mismatch(loaded, student),
        set_aside=context.main,
    )
    if context.main:  # again on what was loaded: previous-last.pt, if last.pt was damaged
        check_checkpoint_is_the_runs(context.run, state.get("run_id"))
    return state


def _write_start(
    context: RunContext,
    attempt: _Attempt,
    teacher: PreparedTeacher | None,
    run_id: str,
    counts: list[dict[str, int]],
    dataset: Dataset,
) -> _Started:
    """recipe.yaml and a "running" manifest: where the run came from, so messages about it
    can give a command that pastes as is, which teacher it is distilled from, and which
    files an image folder's splits were read from (export scores on the same test images)."""
    run = context.run
    fields: dict[str, Any] = {
        **_where_from(context),
        "processes": counts[-1]["processes"],  # torchrun's; results depend on it
        **({"process_counts": counts} if len(counts) > 1 else {}),  # resumed under another
        "run_id": run_id,
    }
    if teacher is not None:
        fields["teacher_weights_sha256"] = teacher.weights_sha256
    digests = data_digests(dataset)
    if digests:
        fields["data_digests"] = digests
    started = _Started(now_iso(), fields)
    if context.main:
        write_text(run.recipe, recipe_to_yaml(context.recipe))
        # From the start, so that a resume can tell a recipe.yaml edited by hand meanwhile.
        fields["trained_recipe_sha256"] = trained_recipe_sha256(run.recipe)
        write_json(run.manifest, _manifest(context, "running", attempt, started))
    return started


def _where_from(context: RunContext) -> dict[str, str]:
    """Where the run is trained or resumed from: its recipe file, the working folder and the
    run directory, absolute."""
    return {
        "recipe_file": str(Path(context.source).resolve()),
        "workdir": str(Path.cwd()),
        "run_root": str(context.run.root.resolve()),
    }


def _manifest(
    context: RunContext, status: str, attempt: _Attempt, started: _Started, **more: Any
) -> dict[str, Any]:
    return manifest(
        context.recipe,
        str(context.setup.device),
        status,
        started=started.at,
        attempt=attempt.token,
        **started.fields,
        **more,
    )


def _restore(
    context: RunContext,
    state: dict[str, Any] | None,
    student: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    counts: list[dict[str, int]],
) -> int:
    """Put a resumed run's state back; the epoch to start from (0 for a new run)."""
    run = context.run
    if state is None:
        if context.main and run.metrics.exists():
            write_text(run.metrics, "")  # left by a run whose manifest and checkpoints were lost
        return 0
    student.load_state_dict(state["student"])
    optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    restore_every_rank_rng_state(
        state, context.distributed, context.setup.device, context.recipe.train.seed
    )
    start_epoch = state["epoch"]
    if context.main:
        drop_metrics_after(run.metrics, start_epoch, context.observer.warning)
    if start_epoch >= context.recipe.train.epochs:
        context.observer.message(
            f"{run.root} has trained its last epoch ({start_epoch}); writing its student.pt, "
            "report and manifest again from the last checkpoint"
        )
    else:
        context.observer.message(f"resuming {run.root} after epoch {start_epoch}")
        method = context.recipe.method
        if (
            isinstance(method, BSSMethod | AMKDMethod)
            and method.bank_epochs > 1
            and start_epoch
            < attacking_epochs(method.weights.beta_stop_fraction, context.recipe.train.epochs)
        ):
            context.observer.warning(
                f"bank mode: the bank of boundary samples is not checkpointed, so epoch "
                f"{start_epoch + 1} attacks again and the samples of earlier windows are gone: "
                "the run continues only approximately"
            )
    if len(counts) > 1 and counts[-1]["from_epoch"] == start_epoch + 1:
        before, now = counts[-2]["processes"], counts[-1]["processes"]
        context.observer.warning(
            f"{run.root} trained with {_processes(before)} and resumes with "
            f"{_processes(now)}: the global batch is the same, but not the random streams or "
            "the batch-norm batches, so it continues only approximately (recorded in "
            "manifest.json, process_counts)"
        )
    return start_epoch


def _processes(count: int) -> str:
    return f"{count} process{'' if count == 1 else 'es'}"


def _finish(
    context: RunContext,
    dataset: Dataset,
    models: RunModels,
    student_eval: Evaluation,
    attempt: _Attempt,
    started: _Started,
) -> RunResult:
    """student.pt, the report and a "completed" manifest (rank 0), then the result. Rank 0
    writes `together` with the others: a write that fails there (a full disk) fails every
    process, not rank 0 alone while the others report success."""
    teacher = models.teacher
    top1_agreement = None
    if teacher is not None:
        top1_agreement = agreement(teacher.evaluation.predictions, student_eval.predictions)
    result = RunResult(
        context.run,
        model_summary(models.student, student_eval, dataset),
        teacher.summary if teacher else None,
        top1_agreement,
        context.main,
    )

    def write() -> None:
        if context.main:
            _write_results(context, dataset, models.student, result, attempt, started)

    context.distributed.together(write)
    context.distributed.settle()
    return result


def _write_results(
    context: RunContext,
    dataset: Dataset,
    student: nn.Module,
    result: RunResult,
    attempt: _Attempt,
    started: _Started,
) -> None:
    run = context.run
    check_still_in_place(run)
    save_torch(run.student, _student_record(context.recipe, dataset, student))
    write_run_report(run, context.recipe, result_fields(result, dataset))
    # Export and the gate check the files they read are the ones this run wrote.
    completed = _manifest(
        context,
        "completed",
        attempt,
        started,
        finished=now_iso(),
        student_sha256=file_sha256(run.student),
    )
    write_json(run.manifest, completed)
    discarded = discard_replaced_run(run)
    if discarded is not None:
        context.observer.message(discarded)


def result_fields(result: RunResult, dataset: Dataset) -> dict[str, Any]:
    """The headline numbers of a run, as the report records them."""

    def model(summary: ModelSummary | None) -> dict[str, Any] | None:
        if summary is None:
            return None
        return {
            "accuracy": summary.accuracy,
            "parameters": summary.parameters,
            "flops": summary.flops,
        }

    return {
        "dataset": dataset.name,
        "test_samples": dataset.test.labels.numel(),
        "student": model(result.student),
        "teacher": model(result.teacher),
        "top1_agreement": result.agreement,
    }
