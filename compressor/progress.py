"""Live progress in the terminal: a bar per epoch with loss and throughput, a line per epoch.

On a terminal the bar animates; in CI logs (no terminal) the per-epoch lines are printed,
with a line of progress once a minute within an epoch, so logs stay readable instead of
filling with redraws, and a long epoch still shows the job is alive.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from compressor.engine.context import RunObserver
from compressor.engine.training import EpochResult, StepCallback


class RichObserver(RunObserver):
    """The log on `console`; warnings through `warn`, and how a stopped run goes on on
    `stop_console`, which the CLI both sends to stderr: with the log in a file (`> train.log`),
    Ctrl-C showed nothing on the terminal."""

    def __init__(
        self,
        console: Console,
        warn: Callable[[str], None],
        clock: Callable[[], float] = time.perf_counter,
        stop_console: Console | None = None,
    ) -> None:
        self.console = console
        self._warn = warn
        self._clock = clock
        self._stop_console = stop_console or console  # the CLI's: stderr
        self._progress: Progress | None = None

    def message(self, text: str) -> None:
        self.console.print(text, soft_wrap=True)

    def warning(self, text: str) -> None:
        self._warn(text)

    def stopped(self, text: str) -> None:
        self._stop_console.print(text, soft_wrap=True, highlight=False)

    def epoch_started(self, epoch: int, epochs: int, steps: int) -> StepCallback | None:
        if not _animates(self.console):
            return self._heartbeat(epoch, epochs)
        progress = Progress(
            TextColumn(f"epoch {epoch + 1}/{epochs}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        task = progress.add_task("train", total=steps, status="")
        progress.start()
        self._progress = progress
        started = time.perf_counter()

        def on_step(step: int, total: int, loss: float, accuracy: float, images: int) -> None:
            elapsed = max(time.perf_counter() - started, 1e-9)
            progress.update(
                task,
                completed=step,
                status=f"loss {loss:.4f}  top-1 {accuracy:.1f} %  {images / elapsed:,.0f} images/s",
            )

        return on_step

    def _heartbeat(self, epoch: int, epochs: int) -> StepCallback:
        """In a log, a line of progress at most once a minute: an epoch of a full data set
        on the CPU takes ten minutes and more, silent in a CI log until its line."""
        started = last = self._clock()

        def on_step(step: int, total: int, loss: float, accuracy: float, images: int) -> None:
            nonlocal last
            now = self._clock()
            if now - last < HEARTBEAT_SECONDS or step == total:  # the epoch's line follows
                return
            last = now
            self.console.print(
                f"epoch {epoch + 1}/{epochs}: step {step:,}/{total:,}, loss {loss:.4f}, "
                f"top-1 {accuracy:.1f} %, {images / max(now - started, 1e-9):,.0f} images/s",
                soft_wrap=True,
            )

        return on_step

    def epoch_stopped(self) -> None:
        """Stop the bar: left running, it is drawn again below the run's last words and the
        terminal's cursor stays hidden."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def epoch_finished(
        self, epoch: int, epochs: int, result: EpochResult, test: float | None
    ) -> None:
        self.epoch_stopped()
        attack = result.stats.get("boundary_fraction")
        attack_text = f", on boundary {100 * attack:.0f} %" if attack is not None else ""
        test_text = f", test top-1 {test:.2f} %" if test is not None else ""
        self.console.print(
            f"epoch {epoch + 1}/{epochs}: loss {result.loss:.4f}, train top-1 "
            f"{result.train_accuracy:.2f} %{test_text}, "
            f"{result.images_per_second:,.0f} images/s, lr {result.lr:.4g}{attack_text}",
            soft_wrap=True,
        )


HEARTBEAT_SECONDS = 60.0


def _animates(console: Console) -> bool:
    """Draw a live bar? Only on a terminal that can redraw a line: not TERM=dumb (each
    redraw a new line there), and not a log that FORCE_COLOR makes rich take for a
    terminal (CI jobs set it for coloured logs: the bar's redraws filled the log)."""
    if not console.is_terminal or console.is_dumb_terminal:
        return False
    forced = os.environ.get("FORCE_COLOR") is not None
    isatty = getattr(console.file, "isatty", None)
    return not forced or (isatty is not None and isatty())
