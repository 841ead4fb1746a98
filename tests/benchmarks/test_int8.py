"""benchmarks/int8.py on a real (tiny) run: the export it runs, the S8S8 rows it adds and the
verdict line; and a bad run directory ends in one error line, exit 2."""

from __future__ import annotations

from pathlib import Path

import int8
import pytest
import yaml
from typer.testing import CliRunner

from compressor.cli import app
from compressor.provenance import x86_without_vnni


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`compress train`: a ResNet-8 on the embedded digits, one epoch."""
    folder = tmp_path_factory.mktemp("int8-bench")
    recipe = folder / "tiny.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "student": {"arch": "resnet8"},
                "train": {"epochs": 1, "batch_size": 64, "device": "cpu"},
                "output": {"dir": str(folder / "runs")},
            }
        ),
        encoding="utf-8",
    )
    result = CliRunner().invoke(app, ["train", str(recipe)])
    assert result.exit_code == 0, result.output
    return folder / "runs" / "tiny"


def test_int8_benchmark_exports_scores_and_retimes(
    trained_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [str(trained_run), "--batch-sizes", "1", "--runs", "2", "--warmup", "1"]
    timing = [*argv, "--repeats", "1", "--threads", "1"]
    assert int8.main([*timing, "--symmetric", "--other-weights"]) == 0
    printed = capsys.readouterr().out
    table = [line for line in printed.splitlines() if line.startswith("| student |")]
    other = "int8 8-bit w" if x86_without_vnni() else "int8 7-bit w"
    assert [line.split(" | ")[1] for line in table] == ["fp32", "int8", other, "int8 s8s8"]
    prose = " ".join(printed.split())  # wrapped at 100 columns
    assert f"`{other}` is the same model with the weight width" in prose
    assert "resnet8 trained with `ce`" in prose
    assert "Targets (accuracy drop ≤ 0.5 points, a latency gain at batch 1): student:" in printed
    # Exported in a copy: an export of the run's own would have been replaced.
    assert not (trained_run / "export").exists()


def test_a_missing_run_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert int8.main([str(tmp_path / "absent")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("error: ")
