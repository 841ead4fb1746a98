"""What the phases of one run share: who hears about it (`RunObserver`), what every phase
needs to know (`RunContext`), and the models it trains (`RunModels`)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from compressor.engine.device import DeviceSetup
from compressor.engine.distributed import Distributed
from compressor.engine.teacher import PreparedTeacher
from compressor.engine.training import EpochResult, StepCallback
from compressor.errors import warn_caller
from compressor.methods import Method
from compressor.recipe import Recipe
from compressor.rundir import RunDir


class RunObserver:
    """What a run tells its user; the CLI renders it with rich, tests can stay silent."""

    def message(self, text: str) -> None:
        """A line for the user."""

    def warning(self, text: str) -> None:
        """A warning for the user (`text` without the "warning: " before it): a line like
        the others unless the observer says warnings apart (the CLI's go to stderr); an
        observer that hears no messages either (this class as it is, a library caller's
        default) raises it as a CompressorWarning, so it is not lost."""
        if type(self).message is RunObserver.message:
            warn_caller(text)
        else:
            self.message(f"warning: {text}")

    def stopped(self, text: str) -> None:
        """Where a run that stopped early got to, and the command that goes on: a line the
        user must see with the log in a file (the CLI's go to stderr). A message here."""
        self.message(text)

    def epoch_started(self, epoch: int, epochs: int, steps: int) -> StepCallback | None:
        return None

    def epoch_finished(
        self, epoch: int, epochs: int, result: EpochResult, test: float | None
    ) -> None:
        """Called at the end of each epoch; `test` is None when the epoch was not scored."""

    def epoch_stopped(self) -> None:
        """The epoch ended in an exception (Ctrl-C, a NaN loss): take down what
        `epoch_started` put up, before the run says why it stopped."""


class SilentObserver(RunObserver):
    """Hears nothing, warnings included: the processes of a torchrun run other than rank 0,
    which talks for the run."""

    def warning(self, text: str) -> None:
        """Rank 0 warns of the same things."""


@dataclass(frozen=True)
class RunContext:
    """What every phase of one run needs: the recipe, where it came from, the run directory,
    this process's place under torchrun, the device set-up, and who hears about it."""

    recipe: Recipe
    source: str
    run: RunDir
    distributed: Distributed
    batch_per_process: int  # train.batch_size is the global batch, split over the processes
    setup: DeviceSetup
    observer: RunObserver

    @property
    def main(self) -> bool:
        """Rank 0 alone writes the run directory (and talks)."""
        return self.distributed.is_main


@dataclass(frozen=True)
class RunModels:
    student: nn.Module  # the bare student: what is saved and evaluated
    trained: nn.Module  # what the method steps through (the student wrapped for DDP, compiled)
    method: Method
    teacher: PreparedTeacher | None
