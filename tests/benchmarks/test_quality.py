"""benchmarks/quality.py: the tables and the target verdict, and a real run end to end.

The table functions are pure functions of run records, so they are checked on records with
chosen numbers; the end-to-end test trains real (tiny) runs on the real CIFAR-10 and teacher.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from subprocess import PIPE

import pytest
import quality
import torch
from quality import RunRecord, build_table, seed_table, target_text

BENCHMARKS = Path(quality.__file__).resolve().parent


def _record(label: str, seed: int, final: float, best: float | None = None) -> RunRecord:
    return RunRecord(
        label=label,
        seed=seed,
        final_top1=final,
        best_top1=final if best is None else best,
        teacher_top1=91.73,
        train_seconds=100.0,
        epochs=4,
        device="cpu",
    )


def _records(finals: dict[str, list[float]]) -> list[RunRecord]:
    return [
        _record(label, seed, final)
        for label, values in finals.items()
        for seed, final in enumerate(values)
    ]


def test_target_met_only_when_the_gap_exceeds_the_larger_std() -> None:
    text = target_text(_records({"amkd": [57.0, 56.0, 58.0], "kd": [55.0, 54.5, 55.5]}))
    assert text is not None
    assert "AMKD − KD = +2.00 points, larger std 1.00 (met)" in text
    assert "ahead on 3 of 3 shared seeds" in text
    text = target_text(_records({"amkd": [57.0, 55.0, 59.0], "kd": [55.0, 54.5, 55.5]}))
    assert text is not None and "(not met)" in text


def test_target_counts_paired_seeds_and_withholds_a_verdict_on_one_seed() -> None:
    records = _records({"amkd": [56.0, 54.0, 57.0], "kd": [55.0, 55.0], "bss": [50.0]})
    text = target_text(records)
    assert text is not None
    assert "ahead on 1 of 2 shared seeds" in text  # seed 2 has no KD run to pair with
    assert "BSS has one seed: no verdict" in text
    assert target_text(_records({"amkd": [56.0], "kd": [55.0, 54.0]})) is None


def test_build_table_follows_the_label_order_and_skips_labels_without_runs() -> None:
    records = _records({"kd": [55.0, 57.0], "amkd": [60.0]})
    lines = build_table(records, ["amkd", "ce", "kd"], "method").splitlines()
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| amkd", "| kd"]
    assert "| amkd | 60.00 | 60.00 | 1 | 91.73 | 100.0 | 25.0 |" in lines
    assert "| kd | 56.00 ± 1.41 | 56.00 ± 1.41 | 2 | 91.73 | 100.0 | 25.0 |" in lines


def test_seed_table_marks_missing_runs_and_lists_a_shared_run_once() -> None:
    records = [_record("kd", 0, 55.0), _record("kd", 1, 54.0), _record("amkd", 1, 56.5)]
    table = seed_table(records, ["kd", "amkd", "kd"])
    assert table.splitlines() == [
        "| final top-1 (%) by seed | seed 0 | seed 1 |",
        "|---|---:|---:|",
        "| kd | 55.00 | 54.00 |",
        "| amkd | — | 56.50 |",
    ]


def test_ablation_rows_change_one_option_and_start_with_the_default() -> None:
    variants = quality.ablation_variants(
        [0.5], [1.0, 8.0], bank_epochs=5, fractions=[0.25, 0.5], beta_stops=[0.75, 1.0, 0.3]
    )
    assert variants[0].slug == "amkd" and variants[0].method == {"name": "amkd"}
    slugs = [variant.slug for variant in variants]
    assert len(slugs) == len(set(slugs))
    assert "amkd-gamma-8" not in slugs  # γ 8 is the default: the first row already is it
    assert "amkd-fraction-0.25" not in slugs  # so is attack.fraction 0.25
    fraction = next(variant for variant in variants if variant.slug == "amkd-fraction-0.5")
    assert fraction.method == {"name": "amkd", "attack": {"fraction": 0.5}}
    assert "amkd-beta-stop-0.75" not in slugs  # β stopping at 75 % is the default too
    early = next(variant for variant in variants if variant.slug == "amkd-beta-stop-0.3")
    assert early.method == {"name": "amkd", "weights": {"beta_stop_fraction": 0.3}}
    assert "amkd-beta-to-end" in slugs  # the name session-4 runs were stored under
    assert all(len(variant.method) == 2 for variant in variants[1:])
    only = quality.ablation_variants([0.5], [1.0], 5, only=["amkd-bank-5"])
    assert [variant.method for variant in only] == [{"name": "amkd", "bank_epochs": 5}]


def test_a_missing_docs_block_is_refused_before_any_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = quality.main(["--out", str(out), "--write-docs", "--docs-block", "no-such-block"])
    assert code == 2
    error = capsys.readouterr().err
    assert "no block named 'no-such-block'" in error and error.rstrip().endswith("--docs-block")
    assert not out.exists()


@pytest.mark.slow
def test_tiny_benchmark_trains_tabulates_and_resumes(
    tmp_path: Path,
    shared_dir: Path,
    cifar10_root: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Two methods × two seeds on 100 images, one epoch: every run is a real run directory; a
        second call trains nothing; a changed budget into the same --out is refused; the runs copied
    to another --out are taken as complete."""
    out = tmp_path / "out"
    argv = [
        "--data-root", str(cifar10_root),
        "--teacher-checkpoint", str(shared_dir / "teachers" / "resnet20-12fca82f.th"),
        "--max-train-samples", "100", "--max-test-samples", "100",
        "--epochs", "1", "--batch-size", "50", "--seeds", "0", "1",
        "--methods", "kd", "amkd", "--device", "cpu", "--num-threads", "1",
        "--out", str(out),
    ]  # fmt: skip
    assert quality.main(argv) == 0
    printed = capsys.readouterr().out
    assert re.findall(r"^train  (\S+)$", printed, re.M) == ["kd-s0", "amkd-s0", "kd-s1", "amkd-s1"]
    assert "**Smoke run — proves the pipeline, NOT a result.**" in printed
    assert "| final top-1 (%) by seed | seed 0 | seed 1 |" in printed
    assert "ahead on" in printed and "of 2 shared seeds" in printed
    for run in ("kd-s0", "kd-s1", "amkd-s0", "amkd-s1"):
        assert (out / "runs" / run / "report.json").is_file()
        assert (out / "recipes" / f"{run}.yaml").is_file()

    metrics = (out / "runs" / "amkd-s0" / "metrics.jsonl").read_bytes()
    assert quality.main(argv) == 0
    assert len(re.findall(r"^skip   \S+ \(completed\)$", capsys.readouterr().out, re.M)) == 4
    assert (out / "runs" / "amkd-s0" / "metrics.jsonl").read_bytes() == metrics

    # How the completed runs ran (device, threads) is no budget: tabulated without the flags.
    threads = argv.index("--num-threads")
    elsewhere = [*argv[: threads - 2], *argv[threads + 2 :], "--report-only"]
    assert quality.main(elsewhere) == 0
    assert "| kd | " in capsys.readouterr().out

    # Another budget, with a method the --out lacks: refused before CE trains, and before any
    # recipe file is rewritten to the new budget.
    recipes = {path.name: path.read_text() for path in (out / "recipes").iterdir()}
    changed = [*argv[:-2], "--epochs", "2", "--methods", "ce", "kd", "amkd", "--out", str(out)]
    assert quality.main(changed) == 2
    refused = capsys.readouterr().err
    assert "completed with a different recipe (train.epochs: 1 → 2)" in refused
    assert not (out / "runs" / "ce-s0").exists()
    assert {path.name: path.read_text() for path in (out / "recipes").iterdir()} == recipes

    other_teacher = tmp_path / "other-teacher.th"
    weights = torch.load(argv[3], weights_only=True, map_location="cpu")
    state = weights.get("state_dict", weights)
    bias = next(key for key in state if key.endswith("linear.bias"))
    state[bias] = state[bias] + 0.01
    torch.save(weights, other_teacher)
    teacher_changed = [*argv, "--teacher-checkpoint", str(other_teacher), "--report-only"]
    assert quality.main(teacher_changed) == 2
    assert "not the teacher" in capsys.readouterr().err

    copied = tmp_path / "copied"  # runs gathered from another --out: where they lie is free
    shutil.copytree(out, copied)
    assert quality.main([*argv[:-2], "--out", str(copied)]) == 0
    assert len(re.findall(r"^skip   \S+ \(completed\)$", capsys.readouterr().out, re.M)) == 4

    (copied / "runs" / "kd-s1" / "recipe.yaml").unlink()
    assert quality.main([*argv[:-2], "--out", str(copied), "--report-only"]) == 2
    assert f"{copied / 'runs' / 'kd-s1' / 'recipe.yaml'} is missing" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flag", "value"), [("--seeds", "0"), ("--methods", "kd"), ("--margins", "0.5")]
)
def test_a_value_given_twice_is_refused(
    flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--seeds 0 0` counted seed 0's runs twice in every mean, std and standard error."""
    with pytest.raises(SystemExit) as exit_:
        quality.parse_args([flag, value, value])
    assert exit_.value.code == 2
    assert f"{flag}: {value} given twice" in capsys.readouterr().err


def test_an_unknown_ablation_is_refused_with_the_known_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--ablations amkd-bank-3` without `--bank-epochs 3` tabulated nothing, and said nothing."""
    with pytest.raises(SystemExit) as exit_:
        quality.parse_args(["--ablations", "amkd-bank-3", "amkd-mining-hardest"])
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert "--ablations: no ablation named amkd-bank-3; with these flags they are" in error
    assert "amkd-bank-5" in error and "amkd-mining-hardest" in error
    assert quality.parse_args(["--ablations", "amkd-bank-3", "--bank-epochs", "3"]).ablations


def test_an_ablation_value_given_twice_is_one_row() -> None:
    slugs = [v.slug for v in quality.ablation_variants([0.5, 0.5], [1.0, 1.0], 5)]
    assert len(slugs) == len(set(slugs))


def test_target_without_spread_in_either_row_gives_no_standard_errors() -> None:
    """Smoke runs on a few test images can end identical on every seed: that divided by 0."""
    target = target_text(_records({"amkd": [31.0, 31.0], "kd": [30.5, 30.5]}))
    assert target is not None
    assert "AMKD − KD = +0.50 points, larger std 0.00 (met), no spread in either row" in target


def test_report_only_with_no_completed_run_writes_no_docs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A mistyped --out emptied the docs block: header-only tables, "device auto"."""
    written: list[str] = []
    monkeypatch.setattr(quality, "replace_block", lambda name, text: written.append(name))
    argv = ["--out", str(tmp_path / "typo"), "--report-only", "--write-docs"]
    assert quality.main([*argv, "--docs-block", "quality-e15"]) == 2
    assert written == []
    assert "no completed run of this benchmark, so nothing was written" in capsys.readouterr().err
    assert not (tmp_path / "typo").exists()


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_ctrl_c_stops_runs_trained_side_by_side_and_marks_them_interrupted(
    stop: str, tmp_path: Path, shared_dir: Path, cifar10_root: Path
) -> None:
    """--jobs 2 with a third run queued, and Ctrl-C from the terminal (SIGINT to the whole
    process group): the benchmark went on to train the queued run, or hung, its workers
    waiting for work that never came. Now it ends at once, the two runs marked interrupted,
    the third not started, and says how to continue. A scheduler's SIGTERM, sent to the
    benchmark alone, ended it silently, its runs left "running"; it stops them as Ctrl-C."""
    out = tmp_path / "out"
    command = [
        sys.executable, str(BENCHMARKS / "quality.py"),
        "--data-root", str(cifar10_root),
        "--teacher-checkpoint", str(shared_dir / "teachers" / "resnet20-12fca82f.th"),
        "--max-train-samples", "100", "--max-test-samples", "100",
        "--epochs", "500", "--batch-size", "50", "--seeds", "0",
        "--methods", "ce", "kd", "triplet", "--device", "cpu", "--num-threads", "1",
        "--jobs", "2", "--out", str(out),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=PIPE, stderr=PIPE, text=True, start_new_session=True)
    manifests = [out / "runs" / run / "manifest.json" for run in ("ce-s0", "kd-s0")]
    deadline = time.monotonic() + 180
    while not all(path.is_file() for path in manifests):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.2)
    if stop == "ctrl-c":
        os.killpg(process.pid, signal.SIGINT)  # as a terminal sends it
    else:
        process.terminate()
    try:
        _, stderr = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the benchmark did not end after {stop}")
    finally:  # workers left behind, if any
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == (130 if stop == "ctrl-c" else 143), stderr  # as compress's
    assert "interrupted: run the same command again to continue" in stderr
    assert "Traceback" not in stderr
    for path in manifests:
        assert json.loads(path.read_text())["status"] == "interrupted"
    assert not (out / "runs" / "triplet-s0").exists()


@pytest.mark.parametrize("flag", ["--max-train-samples", "--max-test-samples"])
def test_a_subset_too_small_to_hold_every_class_is_refused(
    flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """5 images were trained on and reported as "a class-balanced 5-image subset"."""
    with pytest.raises(SystemExit) as stopped:
        quality.parse_args([flag, "5"])
    assert stopped.value.code == 2
    assert f"argument {flag}: 5: must be at least 10" in capsys.readouterr().err
    assert getattr(quality.parse_args([flag, "10"]), flag[2:].replace("-", "_")) == 10
    # Nor more than the split holds: it trained on all of it, reported as a smaller subset.
    with pytest.raises(SystemExit):
        quality.parse_args([flag, "60000"])
    assert f"argument {flag}: 60000: must be at most " in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--batch-size", "1"), ("--epochs", "0"), ("--eval-every", "0"), ("--seeds", "-1")],
)
def test_a_budget_flag_out_of_range_is_refused_by_its_own_name(
    flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """They were refused only once the recipe was built, named by recipe field and run
    (`kd-s0: train.epochs: ...`)."""
    with pytest.raises(SystemExit) as stopped:
        quality.parse_args([flag, value])
    assert stopped.value.code == 2
    assert f"argument {flag}: {value}: must be at least" in capsys.readouterr().err


def test_a_runs_warnings_are_printed_named_by_the_run(capsys: pytest.CaptureFixture[str]) -> None:
    """The runs train without an observer's messages; their warnings went unheard, then came
    as raw Python warning text. With --jobs several runs train at once: each is named."""
    quality.NamedWarnings("amkd-s0").warning("train.batch_size 8 is more than the split's 5")
    assert capsys.readouterr().err == (
        "warning: amkd-s0: train.batch_size 8 is more than the split's 5\n"
    )
