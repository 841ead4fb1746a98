"""Run reports: the same facts as JSON (for machines), Markdown (for pull requests) and HTML;
and the gate's verdict as JUnit XML (compressor.reporting.junit).

`write_run_report` is loaded when first used: importing the JUnit writer runs this file,
and the run report pulls in matplotlib, which a gate job has no use for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from compressor.reporting.run_report import write_run_report

__all__ = ["write_run_report"]


def __getattr__(name: str) -> Any:
    if name != "write_run_report":
        raise AttributeError(f"module 'compressor.reporting' has no attribute {name!r}")
    return importlib.import_module("compressor.reporting.run_report").write_run_report
