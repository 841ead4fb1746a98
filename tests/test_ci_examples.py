"""docs/ci/github-actions.yml, the workflow the README offers: what it must keep true, read
from the file (GitHub itself cannot run here)."""

from __future__ import annotations

from pathlib import Path

import yaml

WORKFLOW = Path(__file__).parents[1] / "docs" / "ci" / "github-actions.yml"


def _steps() -> list[dict]:
    workflow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    [job] = workflow["jobs"].values()
    return job["steps"]


def test_the_gates_never_judge_a_run_distillation_did_not_make() -> None:
    """With runs/ from a cache, a distillation refused (the recipe changed) left the earlier
    run in place, and the gates, run whatever had failed, published its PASS."""
    gates = [step for step in _steps() if "compress gate" in step.get("run", "")]
    assert len(gates) == 2
    for gate in gates:
        assert "steps.distil.outcome == 'success'" in gate["if"]
    assert any(step.get("id") == "distil" for step in _steps())


def test_the_cache_of_runs_is_keyed_by_recipe_and_teacher_and_saved_whatever_the_outcome() -> None:
    steps = {step.get("name"): step for step in _steps()}
    restore, save = steps["Restore runs/"], steps["Save runs/"]
    assert restore["with"]["key"] == save["with"]["key"]
    assert "hashFiles('compress.yaml', 'teachers/**')" in save["with"]["key"]
    assert save["if"].startswith("always()")


def test_the_junit_publisher_may_create_its_check_run() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    assert workflow["permissions"]["checks"] == "write"


def test_the_run_directory_is_named_once_for_a_recipe_that_names_its_run() -> None:
    """Hard-coded in each step, runs/compress held only for a recipe without output.name (the
    ready recipes all set one): the distillation never found its checkpoint to resume, and
    export and the gates found no run."""
    workflow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    [job] = workflow["jobs"].values()
    assert job["env"]["RUN"] == "runs/compress"  # compress.yaml's run without output.name
    steps = yaml.safe_dump(job["steps"])
    assert "runs/compress" not in steps
    for command in ("compress export", "compress gate", "checkpoints/"):
        for step in (step for step in job["steps"] if command in step.get("run", "")):
            assert "$RUN" in step["run"], step["run"]
