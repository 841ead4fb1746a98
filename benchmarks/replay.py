"""`Replay`: a training loader that serves epoch 0's batches whatever epoch the engine sets.

Shared by the timing scripts: every method is timed on the same batches, and bank mode's reuse
epochs meet exactly the samples that its untimed refresh pass banked.
"""

from __future__ import annotations

from compressor.data import BatchLoader


class Replay(BatchLoader):
    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(0)
