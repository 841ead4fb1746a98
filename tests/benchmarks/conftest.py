"""The benchmark scripts import each other as top-level modules (`from docs_section import
...`), as they do when run as `python benchmarks/quality.py`; the tests import them the same way."""

from __future__ import annotations

import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))
