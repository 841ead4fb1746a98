"""The CI gate: decide from a run's reports whether its student may ship.

`compress gate RUN` measures nothing itself. It reads what distillation and export already
measured — RUN/report.json and RUN/export/export_report.json — so a gate job needs no GPU, no
data set and no torch, and its verdict is reproducible from the run directory alone (its
student.pt only hashed, to tie the export to it; the ONNX file checked when it is there).
Thresholds come from the `gate:` section of RUN/recipe.yaml (the resolved recipe, so the run
carries its own acceptance criteria) and flags override them.

The rules, in table order (all in percentage points unless said otherwise):

- `student_accuracy`: student top-1 ≥ teacher top-1 − max_drop (report.json). A run trained
  without a teacher (`compress train`) has nothing to compare with: the rule is SKIPPED with
  the reason shown in the table and as JUnit <skipped>, so it is visible instead of a silent
  pass. An explicit `--max-drop` on such a run asks for a check that cannot be made and is
  bad input (exit 2), not a skip.
- `export_accuracy`: exported student (chosen backend and precision) top-1 ≥ PyTorch student
  top-1 − max_export_drop. Both numbers come from the export report, which scores both on
  the same evaluation set; report.json's accuracy may be on a different subset.
- `export_agreement`: top-1 agreement of the exported student with the PyTorch fp32 student
  ≥ min_agreement for fp32. fp16 and int8 logits legitimately move a few borderline
  decisions, so they are held to the bar `compress export` applied to them (recorded in the
  export report: export.fp16_min_agreement / export.int8_min_agreement) unless
  --min-agreement is given.
- `speedup`: teacher p50 / student p50 latency on the chosen backend ≥ min_speedup, at the
  largest batch both were timed at (the throughput batch: batch 1 is dominated by per-call
  overhead and hides what compression bought) unless a batch is given. The student is the
  row at the chosen precision; the teacher is the row at the same precision, or at fp32 when
  that is all there is (the exporter converts the teacher to int8 with --int8, never to
  fp16) — the baseline is the teacher deployed the same way, without distillation. Computed
  from the rows rather than read from the report's `speedup` map, which holds fp32 against
  fp32 only. SKIPPED when min_speedup is not set, with the speedup shown (not judged) where
  both were timed; once set (flag or recipe), missing timings are bad input, never a skip.
  A --speedup-batch that was not timed for both is bad input even when the rule is skipped:
  the user asked about that batch. A timing the export found noisy (interquartile
  range over the median above export/latency.py's bar) leaves the verdict as it is and says
  so in the rule's detail; so does a teacher file that failed parity with PyTorch (the export only
  warns of it: the teacher does not ship).

Anything that stops a rule from being judged — a run that is not completed, missing or
corrupt reports, an export made for another recipe, a backend or precision that was not
exported, out-of-range or nan thresholds — is a `UserError` (exit 2), so a broken
pipeline can never read as a pass or as a quality fail.
"""

from compressor.gate.evaluate import BACKENDS, PRECISIONS, evaluate_gate
from compressor.gate.verdict import GateResult, RuleResult

__all__ = ["BACKENDS", "PRECISIONS", "GateResult", "RuleResult", "evaluate_gate"]
