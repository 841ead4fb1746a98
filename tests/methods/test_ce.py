"""Plain cross-entropy: the one method that trains without a teacher."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from compressor.methods import build_method
from compressor.recipe import CEMethod
from tests.methods.helpers import step


def test_ce_needs_no_teacher(student_factory: Callable[..., nn.Module], batch) -> None:
    student = student_factory()
    out = step(build_method(CEMethod(), student, None), batch)
    assert set(out.parts) == {"ce"}
    out.loss.backward()
    assert all(p.grad is not None for p in student.parameters())
