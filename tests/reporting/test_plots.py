"""compressor/reporting/plots.py: PNGs for the HTML reports, drawn without touching the
caller's matplotlib."""

from __future__ import annotations

import base64
import subprocess
import sys


def test_drawing_a_plot_leaves_the_callers_matplotlib_backend_alone() -> None:
    """A notebook with `%matplotlib inline` that trained or exported lost its inline plots:
    importing the reports switched the whole process to Agg. In a process of its own, as a
    backend is chosen once per process."""
    script = (
        "import matplotlib; matplotlib.use('svg')\n"
        "from compressor.reporting.plots import grouped_bar_plot\n"
        "import export.report, compressor.engine.run\n"
        "png = grouped_bar_plot('t', ['a'], {'student': [1.0]}, 'ms')\n"
        "print(matplotlib.get_backend(), png)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    backend, png = done.stdout.split()
    assert backend == "svg"
    assert base64.b64decode(png).startswith(b"\x89PNG\r\n\x1a\n")
