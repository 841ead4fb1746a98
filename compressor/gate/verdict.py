"""A gate rule's verdict and the gate's: what the terminal table, the verdict line and the
JUnit file are written from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

# Measured accuracies and agreements pass through float32 (99.5 % of samples reads back as
# 99.4999993 %), while thresholds are typed as short decimals. This slack keeps rounding from
# flipping a verdict; it is far below one sample of any real test set (1e-3 points at 100k),
# and for speedups far below timing noise.
_SLACK = 1e-4

Status = Literal["PASS", "FAIL", "SKIP"]


@dataclass(frozen=True)
class RuleResult:
    """One rule's verdict. `measured`/`threshold` are None when a skipped rule has none."""

    name: str
    measured: float | None
    threshold: float | None
    status: Status
    detail: str
    unit: Literal["%", "×"] = "%"

    @property
    def failed(self) -> bool:
        return self.status == "FAIL"

    @property
    def skipped(self) -> bool:
        return self.status == "SKIP"

    @property
    def measured_text(self) -> str:
        return _format(self.measured, self.unit, self._decimals)

    @property
    def threshold_text(self) -> str:
        if self.threshold is None:
            return "—"
        return f"≥ {_format(self.threshold, self.unit, self._decimals)}"

    @property
    def _decimals(self) -> int:
        """Two, or as many more as a typed threshold has (up to 4: a bar of 0.995 % read
        "≥ 0.99 %"; one computed from a measurement, teacher − max_drop, keeps two), and as a
        failure needs to show (up to 6): 98.6075 % against a bar of 98.6100 % read
        "98.61 % ≥ 98.61 % FAIL", which looks like a pass."""
        decimals = 2
        if (bar := self.threshold) is not None:
            decimals = next((d for d in (2, 3, 4) if abs(round(bar, d) - bar) < 1e-9), 2)
        if self.failed and self.measured is not None and self.threshold is not None:
            while decimals < 6 and round(self.measured, decimals) >= round(
                self.threshold, decimals
            ):
                decimals += 1
        return decimals

    @property
    def summary(self) -> str:
        """One line for logs and JUnit messages: the numbers first, then how they were got."""
        if self.skipped and self.measured is None:
            return f"{self.name}: skipped: {self.detail}"
        if self.skipped:
            return f"{self.name}: skipped: measured {self.measured_text} ({self.detail})"
        return (
            f"{self.name}: {self.status}: measured {self.measured_text}, "
            f"needs {self.threshold_text} ({self.detail})"
        )


@dataclass(frozen=True)
class GateResult:
    run: Path
    backend: str
    precision: str
    rules: list[RuleResult]
    seconds: float
    # What the verdict rests on that a reader must not miss (the model file was not here to
    # check): said on the verdict line, where it is not missed.
    notes: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        """One line: passed, or the rules that failed; then the notes."""
        failed = ", ".join(rule.name for rule in self.failed)
        return "; ".join([f"gate FAILED: {failed}" if failed else "gate passed", *self.notes])

    @property
    def failed(self) -> list[RuleResult]:
        return [rule for rule in self.rules if rule.failed]

    @property
    def passed(self) -> bool:
        """Skipped rules do not fail the gate; they are shown so nobody mistakes them for passes."""
        return not self.failed


def _format(value: float | None, unit: str, decimals: int = 2) -> str:
    if value is None:
        return "—"
    return f"{value:.{decimals}f} %" if unit == "%" else f"{value:.{decimals}f}×"


def judge(
    name: str, measured: float, threshold: float, detail: str, unit: Literal["%", "×"] = "%"
) -> RuleResult:
    status: Status = "PASS" if measured >= threshold - _SLACK else "FAIL"
    return RuleResult(name, measured, threshold, status, detail, unit)
