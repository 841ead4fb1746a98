"""Run reports: the same facts as JSON (for machines), Markdown (for pull requests) and HTML."""

from compressor.reporting.run_report import write_run_report

__all__ = ["write_run_report"]
