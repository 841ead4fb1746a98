"""The epochs of a run: train, score, log a line to metrics.jsonl and checkpoint, each one."""

from __future__ import annotations

from functools import partial
from typing import Any

import torch

from compressor.data import BatchLoader, Dataset
from compressor.engine.checkpoint import every_rank_rng_state, save_checkpoint
from compressor.engine.context import RunContext, RunModels
from compressor.engine.evaluate import Evaluation, check_finite_logits, evaluate
from compressor.engine.scoring import eval_loader
from compressor.engine.training import EpochResult, train_one_epoch
from compressor.io import append_line, strict_json
from compressor.rundir import check_still_in_place


def train_epochs(
    context: RunContext,
    dataset: Dataset,
    models: RunModels,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    start_epoch: int,
    carried: dict[str, Any],
) -> Evaluation:
    """The epochs from `start_epoch`, each logged to metrics.jsonl and checkpointed with the
    `carried` entries (the run id that a resume checks, its process counts); the test
    evaluation of the last one (scored now if a run resumed after its last epoch)."""
    recipe, setup, distributed = context.recipe, context.setup, context.distributed
    student = models.student
    train_loader = BatchLoader(
        dataset.train,
        batch_size=context.batch_per_process,
        device=setup.device,
        mean=dataset.mean,
        std=dataset.std,
        train=True,
        crop_padding=dataset.crop_padding,
        flip=dataset.flip,
        seed=recipe.train.seed,
        rank=distributed.rank,
        world_size=distributed.world_size,
        channels_last=setup.channels_last,
        max_steps=recipe.train.max_steps_per_epoch,
    )
    test_loader = eval_loader(dataset.test, dataset, recipe, setup)
    epochs = recipe.train.epochs
    student_eval: Evaluation | None = None
    for epoch in range(start_epoch, epochs):
        on_step = context.observer.epoch_started(epoch, epochs, len(train_loader))
        try:
            result = train_one_epoch(
                models.trained,
                models.method,
                train_loader,
                optimizer,
                scaler,
                setup,
                recipe.train,
                epoch,
                distributed,
                on_step,
            )
            # Every rank evaluates the whole (small) test set with the same statistics, no
            # more collectives; rank 0 reports. The last epoch is always scored: the result.
            distributed.average_buffers(student)
            student_eval = None
            if (epoch + 1) % recipe.train.eval_every == 0 or epoch + 1 == epochs:
                student.eval()
                student_eval = evaluate(student, test_loader, setup)
                check_finite_logits(
                    student_eval,
                    "student",
                    f"after epoch {epoch + 1}",
                    "the epoch is not checkpointed. Lower train.optimizer.lr (in eval mode a "
                    "batch norm's running statistics can overflow while training's batch "
                    "statistics do not) and start again with --overwrite",
                )
            rng = every_rank_rng_state(context.distributed, setup.device)  # a collective
            state = {
                "epoch": epoch + 1,
                "student": student.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict(),
                **carried,
                **rng,
            }
            line = metrics_line(epoch, result, student_eval)
            # Rank 0 alone writes; a write that fails there (a full disk) stops every process,
            # not rank 0 alone with the others waiting in the next epoch's first collective.
            distributed.together(partial(_record, context, line, state))
        except BaseException:
            context.observer.epoch_stopped()
            raise
        # Shown once saved: a Ctrl-C just after the epoch's line then resumes after it, where
        # one during the save resumed an epoch earlier than the screen said.
        context.observer.epoch_finished(
            epoch, epochs, result, student_eval.accuracy if student_eval else None
        )
    if student_eval is None:
        student.eval()
        student_eval = evaluate(student, test_loader, setup)
    return student_eval


def _record(context: RunContext, line: dict[str, Any], state: dict[str, Any]) -> None:
    """The epoch's line of metrics.jsonl and its checkpoint, on rank 0. Not saved: bank
    mode's boundary samples (a resume starts with a refresh epoch; see
    compressor/methods/bank.py for why)."""
    if context.main:
        check_still_in_place(context.run)
        append_line(context.run.metrics, strict_json(line))
        save_checkpoint(context.run.checkpoint, state)


def metrics_line(epoch: int, result: EpochResult, test: Evaluation | None) -> dict[str, Any]:
    """One epoch's line of metrics.jsonl; the test figures only for an epoch that was scored."""
    return {
        "epoch": epoch + 1,
        "loss": result.loss,
        **{f"loss_{name}": value for name, value in result.parts.items()},
        "lr": result.lr,
        "train_accuracy": result.train_accuracy,
        **({"test_accuracy": test.accuracy, "test_loss": test.loss} if test else {}),
        "images_per_second": result.images_per_second,
        "epoch_seconds": result.seconds,
        **{f"stat_{name}": value for name, value in result.stats.items()},
    }
