"""benchmarks/step_profile.py on the real CIFAR-10 and ResNet-56: each stage's time lands in
its own row (a few steps, so the figures are checked for where they fall, not for speed)."""

from __future__ import annotations

import pytest
import step_profile


@pytest.mark.slow
def test_attack_time_is_charged_to_amkd_only(
    toy_timing_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    step_profile.main(toy_timing_args)
    printed = capsys.readouterr().out
    rows = {
        cells[0]: [float(cell) for cell in cells[1:]]
        for line in printed.splitlines()[2:]
        if line.startswith("| ")
        for cells in [[cell.strip() for cell in line.strip("|").split("|")]]
    }
    header = "| stage (ms / step) | KD | AMKD | AMKD refined | AMKD bank, reuse epoch |"
    assert printed.splitlines()[0] == header
    kd, amkd, refined, bank_reuse = zip(*rows.values(), strict=True)
    assert rows["attack"][0] == 0 and rows["attack"][3] == 0
    assert rows["attack"][1] > 0 and rows["attack"][2] > 0
    assert rows["student, boundary samples"][0] == 0
    assert all(column[-1] > 0 for column in (kd, amkd, refined, bank_reuse))  # the totals
    assert "AMKD: " in printed and "boundary samples per batch" in printed
