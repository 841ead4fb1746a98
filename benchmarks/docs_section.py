"""Writing a benchmark's section into docs/BENCHMARKS.md, shared by the benchmark scripts.

A section runs from its `## ` heading to the next one; a script replaces only its own, so the
hand-written sections around it and the other scripts' sections never move. A block is a
smaller unit, fenced by named comment lines inside a hand-written section, for tables that sit
between prose (the quality benchmark's, one block per budget). Writes are atomic.
"""

from __future__ import annotations

import math
import statistics
import textwrap
from collections.abc import Sequence
from pathlib import Path

from compressor.errors import UserError
from compressor.io import write_text

DOCS = Path(__file__).resolve().parents[1] / "docs" / "BENCHMARKS.md"
WIDTH = 95


def wrap(line: str) -> str:
    """Prose wrapped like the rest of BENCHMARKS.md; tables and commands stay one line each."""
    if line.startswith(("|", "```", ".venv", "`.venv")) or len(line) <= WIDTH:
        return line
    return textwrap.fill(line, WIDTH, break_long_words=False, break_on_hyphens=False)


def mean_std(values: Sequence[float], digits: int = 2) -> str:
    """A table cell: mean ± sample std over runs, or the value alone for one run.

    A nan is a measure a run had nothing to take it on (boundary_similarity.py: no attack
    landed); it is left out, and the cell says over how many runs it is ("—" for none).
    """
    known = [value for value in values if not math.isnan(value)]
    if not known:
        return "—"
    cell = f"{statistics.mean(known):.{digits}f}"
    if len(known) > 1:
        cell += f" ± {statistics.stdev(known):.{digits}f}"
    if len(known) < len(values):
        cell += f" ({len(known)} of {len(values)} runs)"
    return cell


def replace_section(heading: str, text: str, docs: Path = DOCS) -> None:
    """Put `text` (starting with `heading`) in place of that section, or append it."""
    current = docs.read_text(encoding="utf-8")
    start = current.find(f"\n{heading}\n")
    if start < 0:
        current = current.rstrip("\n") + "\n\n" + text
    else:
        end = current.find("\n## ", start + 1)
        current = current[: start + 1] + text + ("" if end < 0 else current[end:])
    write_text(docs, current)


def block_markers(name: str, script: str = "quality.py") -> tuple[str, str]:
    """The comment lines that fence the block `name`, which `benchmarks/<script>` writes: one
    per budget or measurement, so none overwrites another."""
    return (
        f"<!-- {name}:begin (written by benchmarks/{script} --write-docs) -->",
        f"<!-- {name}:end -->",
    )


def block_span(
    text: str, name: str, docs: Path = DOCS, script: str = "quality.py"
) -> tuple[int, int]:
    """Where the block's content starts and ends in `text`; a one-line error if it is unmarked."""
    begin, end_marker = block_markers(name, script)
    start, end = text.find(begin), text.find(end_marker)
    if start < 0 or end < start:
        raise UserError(
            f"{docs}: no block named {name!r}; add the lines {begin!r} and {end_marker!r} "
            "where its tables belong"
        )
    return start + len(begin), end


def replace_block(name: str, text: str, docs: Path = DOCS, script: str = "quality.py") -> None:
    """Put `text` between the block's markers, leaving the rest of the file alone."""
    current = docs.read_text(encoding="utf-8")
    start, end = block_span(current, name, docs, script)
    write_text(docs, current[:start] + "\n" + text + "\n" + current[end:])
