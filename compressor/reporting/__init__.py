"""Run reports: the same facts as JSON (for machines), Markdown (for pull requests) and HTML
(compressor.reporting.run_report); and the gate's verdict as JUnit XML
(compressor.reporting.junit).

Nothing is imported here: the run report pulls in matplotlib, which a gate job writing JUnit
has no use for.
"""
