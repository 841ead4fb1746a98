"""The run directory: the contract between distillation, export and the gate.

```
runs/<name>/
  recipe.yaml  manifest.json  checkpoints/last.pt  student.pt  metrics.jsonl
  report.json|md|html  export/  .lock (held while a process trains the run)
runs/<name>.replaced/   the run an --overwrite replaces, until the new one completes
```
Everything a later stage needs is read from here, so the export box needs no training code.
"""

from __future__ import annotations

from compressor.rundir.claim import (
    check_inputs_outside_run,
    check_run_dir,
    check_run_dir_can_be_made,
    claim_run_dir,
)
from compressor.rundir.completed import (
    check_same_teacher,
    read_completed_run,
    repair_command,
    run_command,
)
from compressor.rundir.layout import (
    RunDir,
    has_checkpoint,
    holds_run,
    manifest_record,
    run_dir_for,
    training_command,
)
from compressor.rundir.set_aside import discard_replaced_run, set_aside_file_note, set_aside_note
from compressor.rundir.status import check_still_in_place, mark_stopped

__all__ = [
    "RunDir",
    "check_inputs_outside_run",
    "check_run_dir",
    "check_run_dir_can_be_made",
    "check_same_teacher",
    "check_still_in_place",
    "claim_run_dir",
    "discard_replaced_run",
    "has_checkpoint",
    "holds_run",
    "manifest_record",
    "mark_stopped",
    "read_completed_run",
    "repair_command",
    "run_command",
    "run_dir_for",
    "set_aside_file_note",
    "set_aside_note",
    "training_command",
]
