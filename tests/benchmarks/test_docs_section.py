"""benchmarks/docs_section.py: a script rewrites only its own part of BENCHMARKS.md."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from docs_section import (
    DOCS,
    block_markers,
    block_span,
    mean_std,
    replace_block,
    replace_section,
    wrap,
)

from compressor.errors import UserError


def _docs(tmp_path: Path, text: str) -> Path:
    docs = tmp_path / "BENCHMARKS.md"
    docs.write_text(text, encoding="utf-8")
    return docs


def test_replace_block_keeps_the_prose_and_other_blocks(tmp_path: Path) -> None:
    begin_a, end_a = block_markers("a")
    begin_b, end_b = block_markers("b")
    rest = f"{end_a}\nbetween\n{begin_b}\nb\n{end_b}\nafter\n"
    docs = _docs(tmp_path, f"# T\n\nbefore\n{begin_a}\nold a\n{rest}")
    replace_block("a", "new a\n\n| x |", docs)
    assert docs.read_text(encoding="utf-8") == f"# T\n\nbefore\n{begin_a}\nnew a\n\n| x |\n{rest}"
    replace_block("a", "newer", docs)  # idempotent markers: a second write replaces the first
    assert docs.read_text(encoding="utf-8").count("new") == 1


def test_missing_block_is_a_user_error_and_writes_nothing(tmp_path: Path) -> None:
    docs = _docs(tmp_path, "# T\n")
    with pytest.raises(UserError, match=r"no block named 'absent'.*where its tables belong$"):
        replace_block("absent", "x", docs)
    assert docs.read_text(encoding="utf-8") == "# T\n"
    begin, _ = block_markers("other", "boundary_similarity.py")
    assert begin.endswith("(written by benchmarks/boundary_similarity.py --write-docs) -->")
    docs.write_text(f"# T\n{begin}\nold\n<!-- other:end -->\n", encoding="utf-8")
    replace_block("other", "new", docs, script="boundary_similarity.py")
    assert "\nnew\n" in docs.read_text(encoding="utf-8")
    with pytest.raises(UserError, match="no block named 'other'"):  # quality.py's markers
        replace_block("other", "x", docs)


def test_mean_std_is_a_table_cell() -> None:
    assert mean_std([70.0, 71.0, 72.0]) == "71.00 ± 1.00"
    assert mean_std([0.0312], digits=3) == "0.031"


def test_mean_std_leaves_out_what_a_run_could_not_measure() -> None:
    """boundary_similarity.py measures nan where no attack landed: stdev crashed on it."""
    assert mean_std([0.5, math.nan, 0.7]) == "0.60 ± 0.14 (2 of 3 runs)"
    assert mean_std([math.nan, 0.25]) == "0.25 (1 of 2 runs)"
    assert mean_std([math.nan, math.nan]) == "—"


def test_replace_section_stops_at_the_next_heading_or_appends(tmp_path: Path) -> None:
    docs = _docs(tmp_path, "# T\n\n## A\nold\n\n## B\nkeep\n")
    replace_section("## A", "## A\nnew\n", docs)
    assert docs.read_text(encoding="utf-8") == "# T\n\n## A\nnew\n\n## B\nkeep\n"
    replace_section("## C", "## C\nadded\n", docs)
    assert docs.read_text(encoding="utf-8").endswith("## B\nkeep\n\n## C\nadded\n")


def test_wrap_folds_prose_but_not_tables_or_commands() -> None:
    prose = "word " * 40
    assert "\n" in wrap(prose)
    table = "| " + "cell | " * 30
    assert wrap(table) == table
    command = "`.venv/bin/python " + "--flag " * 30 + "`"
    assert wrap(command) == command


def test_the_docs_hold_every_block_the_throughput_script_writes() -> None:
    """throughput.py --write-docs writes its methods and its torchdistill comparison into
    blocks of their own: each run once replaced the whole section, the other's figures and
    the prose around them with it."""
    text = DOCS.read_text(encoding="utf-8")
    for name in ("throughput", "throughput-torchdistill"):
        start, end = block_span(text, name, script="throughput.py")
        assert start < end
