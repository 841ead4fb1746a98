"""Live progress in the terminal: a bar per epoch with loss and throughput, a line per epoch.

On a terminal the bar animates; in CI logs (no terminal) only the per-epoch lines are
printed, so logs stay readable instead of filling with redraws.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from compressor.engine.context import RunObserver
from compressor.engine.training import EpochResult, StepCallback


class RichObserver(RunObserver):
    """The log on `console`; warnings through `warn`, which the CLI sends to stderr."""

    def __init__(self, console: Console, warn: Callable[[str], None]) -> None:
        self.console = console
        self._warn = warn
        self._progress: Progress | None = None

    def message(self, text: str) -> None:
        self.console.print(text, soft_wrap=True)

    def warning(self, text: str) -> None:
        self._warn(text)

    def epoch_started(self, epoch: int, epochs: int, steps: int) -> StepCallback | None:
        if not self.console.is_terminal:
            return None
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
