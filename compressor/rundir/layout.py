"""Where a run's files are, and what its manifest and checkpoints say about it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compressor.errors import UserError
from compressor.io import loads_json, previous_of, record_unreadable
from compressor.recipe import Recipe
from compressor.recipe.sections import run_name_problem


@dataclass(frozen=True)
class RunDir:
    root: Path

    @property
    def recipe(self) -> Path:
        return self.root / "recipe.yaml"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoints" / "last.pt"

    @property
    def student(self) -> Path:
        return self.root / "student.pt"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    def report(self, suffix: str) -> Path:
        return self.root / f"report.{suffix}"

    @property
    def files(self) -> tuple[Path, ...]:
        """Every file a training run writes (the export's are its own)."""
        reports = (self.report(suffix) for suffix in ("json", "md", "html"))
        checkpoints = (self.checkpoint, previous_of(self.checkpoint))
        return (self.recipe, self.manifest, *checkpoints, self.student, self.metrics, *reports)

    @property
    def export_dir(self) -> Path:
        return self.root / "export"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    @property
    def set_aside(self) -> Path:
        """Where `--overwrite` keeps the run it replaces until the new one completes."""
        return self.root.with_name(f"{self.root.name}.replaced")

    @property
    def replacing(self) -> Path:
        """Marks a run started with `--overwrite`: the one run whose completion may remove
        the set-aside run (compressor/rundir/set_aside.py)."""
        return self.root / ".replacing"


def run_dir_for(recipe: Recipe, recipe_path: Path) -> RunDir:
    """The run directory: output.dir/output.name, the name by default the recipe file's."""
    name = recipe.output.name or recipe_path.stem
    if set(name) == {"."}:
        # `..yaml` would make output.dir itself the run, and `...yaml` its parent: the run's
        # files among the user's, and an --overwrite that sets all of them aside, then deletes.
        raise UserError(
            f"{recipe_path}: the run would be named {name!r} after the file, which names "
            "output.dir or its parent, not a folder of its own; set output.name in the recipe "
            "or rename the file"
        )
    root = Path(recipe.output.dir) / name
    problem = None if recipe.output.name or root.exists() else run_name_problem(name)
    if problem is not None:  # output.name was checked with the recipe; a run made keeps it
        raise UserError(
            f"{recipe_path}: the run would be named {name!r} after the file, which {problem}; "
            "set output.name in the recipe or rename the file"
        )
    return RunDir(root)


def training_command(run_recipe: Recipe) -> str:
    """`train` or `distill`: which command made a run, read from the recipe.yaml it holds
    (`compress train` drops the teacher from the recipe it stores, `distill` needs one)."""
    return "train" if run_recipe.teacher is None else "distill"


def manifest_record(run: RunDir) -> dict[str, Any] | None:
    """manifest.json as a mapping; None when it is missing, unreadable or not a mapping."""
    try:
        if record_unreadable(run.manifest) is not None:
            return None
        record = loads_json(run.manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def has_checkpoint(run: RunDir) -> bool:
    """Can the run be resumed: is there a checkpoint, or the one before it?"""
    return run.checkpoint.exists() or previous_of(run.checkpoint).exists()


def holds_run(run: RunDir) -> bool:
    """Has a run started here (finished or not)? Then starting afresh would write over it."""
    return run.manifest.exists() or run.checkpoint.exists()
