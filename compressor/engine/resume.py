"""Going on with a run: the command to type after it stops, the checks that a resume goes on
the run it started (the same recipe, the same images), and the repair of metrics an
interrupted epoch left."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from compressor.data import Dataset, class_changes, with_same_effect_written_as
from compressor.errors import UserError
from compressor.io import loads_json, write_text
from compressor.provenance import trained_recipe_sha256, with_free_settings_of
from compressor.recipe import Recipe, load_recipe, recipe_differences
from compressor.rundir import RunDir, has_checkpoint, set_aside_note, training_command
from compressor.rundir.layout import manifest_record


def interrupted_message(
    run: RunDir,
    source: str,
    distill: bool,
    torchrun: bool,
    ended: str = "interrupted",
    continue_with: str | None = None,
) -> str:
    """What to type after Ctrl-C (or a crash, `ended` "failed"): resume from a checkpoint, or
    start again if none was written (the CLI's framework exits 130 without a word). Quoted for
    the shell: a recipe path with a space must paste back as one argument. `continue_with`:
    the command that goes on where the run's own would not (the quickstart's)."""
    if continue_with is not None:
        return f"{ended}; continue with: {continue_with}{set_aside_note(run)}"
    if has_checkpoint(run):  # last.pt, or previous-last.pt that --resume falls back to
        said, flag = f"{ended}; continue from the last finished epoch with", "--resume"
    else:
        said = f"{ended} before its first checkpoint was written; start again with"
        flag = "--overwrite"
    words = ["distill" if distill else "train", source, flag]
    if torchrun:  # its options are the user's; the command it runs is known, --overwrite gone
        return (
            f"{said} torchrun and its options as before, running `-m compressor "
            f"{shlex.join(words)}`{set_aside_note(run)}"
        )
    return f"{said}: {shlex.join(['compress', *words])}{set_aside_note(run)}"


def check_same_recipe(run: RunDir, recipe: Recipe, source: str) -> None:
    """Refuse to resume with another recipe than the one the run started with."""
    started_with = started_recipe(run, recipe)
    if started_with == recipe:
        return
    if started_with is None:
        raise UserError(
            f"{source}: {run_recipe_lost(run)}, so the resume cannot tell whether {source} is "
            "the recipe the run started with; put that file back, or start over with --overwrite"
        )
    if (started_with.teacher is None) != (recipe.teacher is None):
        command = training_command(started_with)
        raise UserError(
            f"{source}: {run.root} was started by `compress {command}`; resume it with "
            f"`compress {command} {source} --resume`"
        )
    raise UserError(
        f"{source}: the recipe changed since {run.root} started "
        f"({recipe_changes(started_with, recipe)}); resume with the same recipe, or start a "
        "new run (output.name) or --overwrite"
    )


def check_checkpoint_is_the_runs(run: RunDir, saved: object) -> None:
    """Refuse a checkpoint that another run saved (a `last.pt` copied in by hand): its
    weights would train on as if they were this run's, or fail deep in `load_state_dict`.
    Each checkpoint carries the run id (`saved`) its manifest records; where either lacks it
    (a run from before ids, a lost manifest) the checkpoint is taken as the run's own."""
    record = manifest_record(run) or {}
    own = record.get("run_id")
    if isinstance(saved, str) and isinstance(own, str) and saved != own:
        raise UserError(
            f"{run.checkpoint}: saved by another run (id {saved[:12]}), not by {run.root} "
            f"(id {own[:12]}); put this run's checkpoint back, or start over with --overwrite"
        )


def data_counts(dataset: Dataset) -> dict[str, int]:
    """The images of each split, as every checkpoint records them."""
    return {"train": len(dataset.train), "test": len(dataset.test)}


def data_digests(dataset: Dataset) -> dict[str, str]:
    """Which files each split of an image folder was read from (ImageSet.files_digest), as
    every checkpoint and the manifest record them; empty for a built-in data set."""
    splits = {"train": dataset.train, "test": dataset.test}
    return {name: s.files_digest for name, s in splits.items() if s.files_digest is not None}


def check_same_data(state: dict[str, Any], dataset: Dataset, source: str) -> None:
    """Refuse to resume on other images than the run trained on: an image folder with files
    added, removed, moved to another class or replaced, or a class folder renamed, since
    reads as the same recipe, and the run would go on with another data set (or with its
    labels shifted) without a word. (Checkpoints from before the counts, the class names or
    the digests were kept are not checked for them.)"""
    saved = state.get("data_counts")
    now = data_counts(dataset)
    changes = []
    if isinstance(saved, dict) and saved != now:
        changes += [
            f"{split} images {saved.get(split)} → {count}"
            for split, count in now.items()
            if saved.get(split) != count
        ]
    saved_classes = state.get("data_classes")
    if isinstance(saved_classes, list):
        renamed = class_changes(saved_classes, dataset.classes)
        changes += [renamed] if renamed else []
    saved_digests = state.get("data_digests")
    if isinstance(saved_digests, dict) and not changes:  # what the counts and names miss
        changes += [
            f"{split} images renamed, moved to another class or replaced"
            for split, digest in data_digests(dataset).items()
            if saved_digests.get(split) not in (None, digest)
        ]
    if changes:
        raise UserError(
            f"{source}: the data changed since the run started ({'; '.join(changes)}); resume "
            "with the images it started with, or start over with --overwrite"
        )


def started_recipe(run: RunDir, recipe: Recipe) -> Recipe | None:
    """The recipe `run` started with, to compare with `recipe` (== means the same run);
    None when its recipe.yaml cannot be read, or was edited since the run started it (the
    manifest records its hash): its values would then not be the ones the checkpoint was
    trained with, and a resume with the edited values would pass for the same run.

    Read from the run's recipe.yaml (every value resolved when it started) by this
    compressor: a field added since takes its default on both sides, while a default that
    changed since shows up as a difference, because the run pinned the old one. Where files
    are and how the run is exported and gated (provenance.FREE_TO_CHANGE) are taken from
    `recipe`: changing them does not make another run; nor does writing out a data set's
    default, or leaving out a setting the run wrote as the default.
    """
    try:
        started_with = load_recipe(run.recipe, started=True)
    except UserError:
        return None
    if _edited(run):
        return None
    started_with = comparable_to(started_with, recipe)
    granted = recipe.teacher is not None and recipe.teacher.trust_pickle
    if started_with.teacher is not None and granted:
        # Trust may be given on resume: runs started before TorchScript and torch.export
        # teachers needed it must be able to go on (the file is the same; only its trust).
        trusted = started_with.teacher.model_copy(update={"trust_pickle": True})
        started_with = started_with.model_copy(update={"teacher": trusted})
    return started_with


def comparable_to(other: Recipe, recipe: Recipe) -> Recipe:
    """`other` with `recipe`'s values where they may differ without making another run:
    where files are, the export and gate sections (provenance.FREE_TO_CHANGE), and a data
    set's default written out or left out. `comparable_to(other, recipe) == recipe` says the
    two train the same run."""
    other = with_free_settings_of(other, recipe)
    return other.model_copy(update={"data": with_same_effect_written_as(other.data, recipe.data)})


def run_recipe_lost(run: RunDir) -> str:
    """Why `started_recipe` found no recipe: said as what happened to the file, since "the
    recipe changed" would send the user looking for an edit they never made."""
    if not run.recipe.exists():
        return f"{run.recipe} is missing"
    try:
        load_recipe(run.recipe, started=True)
    except UserError:
        return f"{run.recipe} cannot be read as a recipe"
    return f"{run.recipe} was edited since the run started (manifest.json records another hash)"


def _edited(run: RunDir) -> bool:
    """Does the run's (readable) recipe.yaml differ from the one it started with, beyond the
    settings free to change? Runs whose manifest records no hash cannot tell, and pass."""
    recorded = (manifest_record(run) or {}).get("trained_recipe_sha256")
    return isinstance(recorded, str) and trained_recipe_sha256(run.recipe) != recorded


def recipe_changes(started_with: Recipe, recipe: Recipe, shown: int = 3) -> str:
    """The first few changed settings, run value → new value, for a refusal's one line."""
    differences = recipe_differences(started_with, recipe) or ["compare with its recipe.yaml"]
    more = len(differences) - shown
    return "; ".join(differences[:shown]) + (f"; and {more} more" if more > 0 else "")


def drop_metrics_after(path: Path, epoch: int, warn: Callable[[str], None]) -> None:
    """A kill between the metrics line and the checkpoint leaves an epoch that will rerun.
    A damaged line (a disk error, an edit) is dropped with a warning rather than left to stop
    every later resume and the final report."""
    if not path.exists():
        return
    kept, damaged = [], 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        done = _epoch_of(line)
        if done is None:
            damaged += 1
        elif done <= epoch:
            kept.append(line)
    if damaged:
        warn(f"{path}: dropped {damaged} damaged line(s); their epochs have no metrics")
    write_text(path, "".join(f"{line}\n" for line in kept))


def _epoch_of(line: str) -> int | None:
    """The epoch a metrics line records, or None when the line is not one."""
    try:
        record = loads_json(line)
    except ValueError:
        return None
    epoch = record.get("epoch") if isinstance(record, dict) else None
    return epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else None
