"""Writing a benchmark's section into docs/BENCHMARKS.md, shared by the benchmark scripts.

A section runs from its `## ` heading to the next one; a script replaces only its own, so the
hand-written sections around it and the other scripts' sections never move.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs" / "BENCHMARKS.md"
WIDTH = 95


def wrap(line: str) -> str:
    """Prose wrapped like the rest of BENCHMARKS.md; tables and commands stay one line each."""
    if line.startswith(("|", "```", ".venv", "`.venv")) or len(line) <= WIDTH:
        return line
    return textwrap.fill(line, WIDTH, break_long_words=False, break_on_hyphens=False)


def replace_section(heading: str, text: str, docs: Path = DOCS) -> None:
    """Put `text` (starting with `heading`) in place of that section, or append it."""
    current = docs.read_text(encoding="utf-8")
    start = current.find(f"\n{heading}\n")
    if start < 0:
        current = current.rstrip("\n") + "\n\n" + text
    else:
        end = current.find("\n## ", start + 1)
        current = current[: start + 1] + text + ("" if end < 0 else current[end:])
    docs.write_text(current, encoding="utf-8")
