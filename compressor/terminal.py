"""What the commands print: the two consoles, and the figures of a training run, an export
and a gate, shown alike by their own commands and by the quickstart."""

from __future__ import annotations

import errno
import functools
import os
import re
import shlex
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from rich import box
from rich.console import Console, JustifyMethod
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from compressor.interrupt import stop

if TYPE_CHECKING:
    from compressor.engine.run import RunResult
    from compressor.gate import GateResult
    from compressor.recipe import Recipe
    from export import ExportReport


def _log_width(stream: TextIO | None) -> int | None:
    """Off a terminal (a CI log, a file) rich assumes 80 columns, and a gate table's detail
    column wraps over several lines; 120 keeps a row on one line. A terminal, or COLUMNS,
    says its own width; but rich takes COLUMNS=0 at its word and prints nothing at all,
    error lines included, so a width that is not one counts as unset."""
    columns = os.environ.get("COLUMNS")
    if columns is not None and columns.isdigit() and int(columns) > 0:
        return None
    if stream is not None and stream.isatty():  # None: closed (`>&-`), see entry.main
        return None if columns is None else shutil.get_terminal_size().columns
    return 120


# Characters the messages and tables use that a legacy code page lacks, and what stands in
# for each there: `?` for ≥ left a gate's threshold unreadable (at least, or at most?).
ASCII_FOR = {
    "≥": ">=",
    "≤": "<=",
    "→": "->",
    "×": "x",
    "—": "-",
    "−": "-",
    "…": "...",
    "·": ".",
    "Δ": "diff",
}
OUR_SYMBOLS = "".join(ASCII_FOR)


# Control characters but newline and tab: C0, DEL and C1.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def shell_path(path: Path) -> str:
    """A path as a shell takes it, quoted when it must be (`'runs/cifar small/report.html'`),
    so a line that names a file to open can be pasted into `xdg-open` or `cp` as it is."""
    return shlex.quote(str(path))


def printable(text: str) -> str:
    """`text` with each control character shown as its escape (`\\x1b`). Text read from a run
    directory (a CI artifact the gate judges: a manifest's reason, a report's file name)
    could hold terminal escapes that clear the screen, move the cursor over earlier lines or
    retitle the window, printing a verdict the gate never gave; rich passes ESC through."""
    return _CONTROL.sub(lambda match: repr(match.group())[1:-1], text)


class _PipeConsole(Console):
    """A console whose output into a closed pipe (`compress distill r.yaml | head -3`) raises
    BrokenPipeError, as a plain print does, where rich exits with SystemExit(1): that passed
    every handler a run has, so its manifest stayed "running". As an exception, a run marks
    itself interrupted, and compressor.entry ends the command with exit 141. Every string it
    prints, in a line or a table's cell, is made `printable`."""

    def on_broken_pipe(self) -> None:
        self.quiet = True  # nothing more to write where nobody reads
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))

    def render_str(self, text: str, **options: Any) -> Text:
        text = printable(text)
        if not shows_our_symbols(self.encoding):
            # Spelt in ASCII before rich measures it: replaced as the stream encodes it
            # (compressor.entry), a table's cells came out wider than measured, columns askew.
            text = "".join(ASCII_FOR.get(char, char) for char in text)
        return super().render_str(text, **options)


@functools.cache
def shows_our_symbols(encoding: str) -> bool:
    """Can a stream of this encoding show OUR_SYMBOLS (not cp1252, not ascii)?"""
    try:
        OUR_SYMBOLS.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


# Paths and recipe names may hold brackets, which rich would read as markup, and `:dog:` or
# `module:rocket` (an entrypoint), which it would print as emoji: neither is used.
# soft_wrap: a line is one line whatever the width, so a CI log can be grepped for a result
# or a warning; a terminal wraps it itself.
console = _PipeConsole(markup=False, emoji=False, soft_wrap=True, width=_log_width(sys.stdout))
error_console = _PipeConsole(
    stderr=True, markup=False, emoji=False, soft_wrap=True, width=_log_width(sys.stderr)
)


def print_warning(text: str) -> None:
    """`warning: TEXT` on stderr, as every command says a warning: apart from the results and
    the training log on stdout, so `compress gate RUN > verdict.txt` keeps them visible and a
    CI job can collect them with `2>`."""
    error_console.print(f"warning: {text}", style="yellow", highlight=False, soft_wrap=True)


def print_table(table: Table) -> None:
    """Print `table` without cutting a figure: in a terminal narrower than its no-wrap
    columns (COLUMNS=40), rich would shrink them to "9…". Such a column is kept as wide as its
    widest cell and the table drawn as wide as that needs; the terminal wraps its lines, and
    the columns that may wrap (a gate rule's detail) still do."""
    unbounded = console.options.update_width(10_000)
    for column in table.columns:
        if column.no_wrap:
            cells = (column.header, *column.cells)
            column.min_width = max(Measurement.get(console, unbounded, c).maximum for c in cells)
    needed = Measurement.get(console, unbounded, table).minimum
    if needed > console.width:
        table.width = needed
    console.print(table)


def train_and_print(
    path: Path,
    *,
    distill: bool,
    resume: bool,
    overwrite: bool,
    recipe: Recipe | None = None,
    continue_with: str | None = None,
) -> RunResult:
    """Train `path`'s recipe (or `recipe`, read from it and amended) and print the results;
    `continue_with` as for `run_training`."""
    from compressor.engine.distributed import join_process_group
    from compressor.engine.run import run_training
    from compressor.progress import RichObserver
    from compressor.recipe import load_recipe

    if recipe is None:  # a resumed run goes on with the settings it began with
        # Under torchrun, read in the process group: a node whose copy of the recipe is
        # missing or wrong stops the others instead of leaving them waiting for it.
        distributed = join_process_group()
        try:
            recipe = distributed.together(lambda: load_recipe(path, started=resume))
        except BaseException:
            distributed.close()
            raise
    try:
        result = run_training(
            recipe,
            path,
            distill=distill,
            resume=resume,
            overwrite=overwrite,
            observer=RichObserver(console, warn=print_warning, stop_console=error_console),
            continue_with=continue_with,
        )
    except KeyboardInterrupt:
        stop.said = True  # run_training printed where the run stopped and how to resume it
        raise
    if not result.main_process:
        return result  # torchrun: rank 0 prints the results once
    table = Table(title=f"run {result.run.root}")
    table.add_column("")
    if result.teacher is not None:
        table.add_column("teacher", justify="right", no_wrap=True)
    table.add_column("student", justify="right", no_wrap=True)
    models = [m for m in (result.teacher, result.student) if m is not None]
    table.add_row("test top-1 (%)", *(f"{m.accuracy:.2f}" for m in models))
    table.add_row("parameters", *(f"{m.parameters:,}" for m in models))
    table.add_row("MFLOPs / image", *(f"{m.flops / 1e6:,.2f}" for m in models))
    print_table(table)
    if result.agreement is not None:
        console.print(f"top-1 agreement teacher/student: {result.agreement:.2f} %")
    console.print(f"reports: {shell_path(result.run.root / 'report.html')} (also .md, .json)")
    return result


def print_gate(result: GateResult) -> None:
    """The gate's rules as a table, then its verdict on one line, naming the rules that failed."""
    table = Table(title=f"gate {result.run} ({result.backend} {result.precision})")
    table.add_column("rule", no_wrap=True)
    table.add_column("measured", justify="right", no_wrap=True)
    table.add_column("threshold", justify="right", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("detail", overflow="fold")
    styles = {"PASS": "green", "FAIL": "bold red", "SKIP": "yellow"}
    for rule in result.rules:
        table.add_row(
            rule.name,
            rule.measured_text,
            rule.threshold_text,
            Text(rule.status, style=styles[rule.status]),
            console.render_str(rule.detail, highlight=False),
        )
    print_table(table)
    console.print(result.verdict)


def students_failing_parity(report: ExportReport) -> str:
    """The exported students whose outputs left PyTorch's: what ships must match it. (A
    teacher's files, exported for the speedup figures, only warn.)"""
    from export.results import failed_students

    return ", ".join(failed_students(report.results))


def print_export(report: ExportReport) -> None:
    """The exported models as a table (accuracy, parity, p50 latency per batch size), then the
    student's speedups, each precision against fp32, and the export's warnings."""
    from compressor.reporting.run_report import size_change
    from export.report import signed_points, times
    from export.results import NOISY_MARK, noisy_speedups

    batches = report.settings.batch_sizes
    table = Table(title=f"export {report.run} (p50 latency in ms)", box=box.SIMPLE_HEAD)
    for column in ("model", "backend", "prec.", "device", "top-1 %", "parity"):
        justify: JustifyMethod = "right" if column == "top-1 %" else "left"
        table.add_column(column, justify=justify, no_wrap=True)
    for batch in batches:
        table.add_column(f"@{batch}", justify="right", no_wrap=True)
    for result in report.results:
        parity = result.parity
        table.add_row(
            result.model,
            result.backend,
            result.precision,
            result.device,
            f"{result.accuracy:.2f}",
            "—" if parity is None else ("pass" if parity.passed else "FAIL"),
            *(f"{result.latency[b].p50_ms:.3g}" if b in result.latency else "—" for b in batches),
        )
    print_table(table)
    noisy = noisy_speedups(report.results)
    for backend, by_batch in report.speedup.items():
        figures = ", ".join(
            f"{times(value)} at batch {batch}"
            + (NOISY_MARK if batch in noisy.get(backend, ()) else "")
            for batch, value in by_batch.items()
        )
        console.print(f"student speedup over the teacher ({backend}): {figures}")
    for row in report.precisions:
        speed = ", ".join(
            f"{times(value)} at batch {b}" + (NOISY_MARK if b in row["noisy_speedups"] else "")
            for b, value in row["speedup"].items()
        )
        smaller = f", {size_change(row['size_ratio'])}" if row["size_ratio"] else ""
        console.print(
            f"{row['model']} {row['precision']} vs fp32 ({row['backend']}): top-1 "
            f"{signed_points(-row['accuracy_drop'])} points, {speed}{smaller}"
        )
        if row["teacher_speedup"]:  # what `compress gate --precision` judges
            over = ", ".join(
                f"{times(value)} at batch {b}"
                + (NOISY_MARK if b in row["noisy_teacher_speedups"] else "")
                for b, value in row["teacher_speedup"].items()
            )
            console.print(
                f"student {row['precision']} speedup over the teacher "
                f"{row['teacher_precision']} ({row['backend']}): {over}"
            )
    for failure in report.failures:
        console.print(failure, style="red", highlight=False, soft_wrap=True)
    for warning in report.warnings:
        print_warning(warning)
