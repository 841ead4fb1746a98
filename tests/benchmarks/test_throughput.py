"""benchmarks/throughput.py on the real CIFAR-10 and ResNet-56: every method is timed in its
own worker process and lands in the table, with KD as the 1.00× reference."""

from __future__ import annotations

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
