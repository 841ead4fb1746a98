"""benchmarks/throughput.py on the real CIFAR-10 and ResNet-56: every method is timed in its
own worker process and lands in the table, with KD as the 1.00× reference."""

from __future__ import annotations

from pathlib import Path

import pytest
import throughput


def test_ratios_need_ce_and_kd(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        throughput.parse_args(["--methods", "kd", "amkd"])
    assert stopped.value.code == 2
    assert "--methods must include ce and kd" in capsys.readouterr().err


@pytest.mark.slow
def test_each_method_is_timed_in_a_worker_and_tabulated(
    toy_timing_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    throughput.main([*toy_timing_args, "--methods", "ce", "kd", "amkd"])
    printed = capsys.readouterr().out
    rows = {
        cells[0]: cells
        for line in printed.splitlines()
        if line.startswith("| ") and not line.startswith("| method")
        for cells in [[cell.strip() for cell in line.strip("|").split("|")]]
    }
    assert list(rows) == ["CE", "KD", "AMKD"]
    assert rows["KD"][2] == "1.00×"
    assert float(rows["AMKD"][1]) > 0 and float(rows["AMKD"][3]) > 0  # images/s, samples/batch
    assert rows["KD"][3] == "—"
    assert "Data pipeline alone (BatchLoader with crop+flip, batch 32)" in printed


def test_a_device_or_student_file_that_cannot_be_is_one_line_before_any_worker(
    toy_timing_args: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for flags, said in (
        (["--device", "cuda:01"], "--device: device: expected auto, cpu, mps, cuda or cuda:N"),
        (["--student-checkpoint", str(tmp_path / "none.pt")], "none.pt: no such file"),
    ):
        with pytest.raises(SystemExit) as stopped:
            throughput.parse_args([*toy_timing_args, *flags])
        assert stopped.value.code == 2
        assert said in capsys.readouterr().err


@pytest.mark.slow
def test_a_student_the_worker_cannot_build_is_one_line_and_2(
    toy_timing_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """The worker's UserError was a 25-line traceback under "ce failed (exit 1)"."""
    with pytest.raises(SystemExit) as stopped:
        throughput.main([*toy_timing_args, "--methods", "ce", "kd", "--student", "bogus"])
    assert stopped.value.code == 2
    said = capsys.readouterr().err
    errors = [line for line in said.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and errors[0].startswith("error: unknown model 'bogus'")
    assert "Traceback" not in said
