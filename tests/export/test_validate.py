"""Parity rules (precision-aware, NaN-proof) and the evaluation set the exporter scores on."""

from __future__ import annotations

import numpy as np
import pytest

from export import EvalSet, Tolerance, parity


def test_parity_is_precision_aware() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(200, 10)).astype(np.float32)
    close = reference + 5e-5
    assert parity(reference, close, Tolerance(1e-4, 99.9)).passed
    assert parity(reference, close, Tolerance(1e-4, 99.9)).logit_scale == np.abs(reference).max()
    assert not parity(reference, reference + 2e-4, Tolerance(1e-4, 99.9)).passed
    assert not parity(reference, reference - 2e-4, Tolerance(1e-4, 99.9)).passed  # |difference|
    # fp16-sized differences: judged by agreement only, so they pass without an elementwise limit
    drifted = reference + rng.normal(scale=1e-3, size=reference.shape).astype(np.float32)
    result = parity(reference, drifted, Tolerance(None, 99.0))
    assert result.passed and result.max_abs_diff > 1e-4 and result.tolerance_max_abs is None
    flipped = reference.copy()
    flipped[:10] = -flipped[:10]  # 10 of 200 decisions change: 95 % agreement
    assert parity(reference, flipped, Tolerance(None, 99.0)).top1_agreement <= 95.0
    assert not parity(reference, flipped, Tolerance(None, 99.0)).passed


def test_agreement_is_the_exact_share() -> None:
    """7 of 1,000 top-1 decisions agree: 0.7 %, not the 0.7000000000000001 a mean gives."""
    reference = np.tile(np.array([[1.0, 0.0]], dtype=np.float32), (1000, 1))
    logits = reference[:, ::-1].copy()
    logits[:7] = reference[:7]
    assert parity(reference, logits, Tolerance(None, 0.0)).top1_agreement == 0.7


def test_agreement_at_exactly_the_bar_passes() -> None:
    """The bar is a minimum: 999 of 1,000 decisions against 99.9 % pass, 998 do not."""
    reference = np.tile(np.array([[1.0, 0.0]], dtype=np.float32), (1000, 1))
    for changed, passed in ((1, True), (2, False)):
        logits = reference.copy()
        logits[:changed] = logits[:changed, ::-1]
        assert parity(reference, logits, Tolerance(None, 99.9)).passed is passed


def test_mean_abs_diff_is_the_mean_of_the_differences() -> None:
    """One logit off by 0.4, eleven exact: the mean is 0.4 / 12, the max 0.4. A mean that
    read the max hid how local a difference was."""
    reference = np.zeros((4, 3), dtype=np.float32)
    logits = reference.copy()
    logits[2, 1] = -0.4
    result = parity(reference, logits, Tolerance(None, 0.0))
    assert result.max_abs_diff == pytest.approx(0.4)
    assert result.mean_abs_diff == pytest.approx(0.4 / 12)


def test_parity_fails_on_nan_logits() -> None:
    reference = np.ones((4, 3), dtype=np.float32)
    broken = reference.copy()
    broken[0, 0] = np.nan
    assert not parity(reference, broken, Tolerance(None, 0.0)).passed


def test_eval_set_normalises_and_cycles() -> None:
    images = np.full((3, 1, 2, 2), 255, dtype=np.uint8)
    eval_set = EvalSet("t", images, np.zeros(3, dtype=np.int64), mean=(0.5,), std=(0.25,))
    assert np.allclose(eval_set.batch(0, 3), 2.0)
    assert eval_set.sample(8).shape == (8, 1, 2, 2)
    assert eval_set.sample(2).dtype == np.float32
