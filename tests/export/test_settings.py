"""Export settings: the recipe's `export:` section with the caller's overrides, refused by the
recipe's own rules and named as the flag that was typed."""

from __future__ import annotations

import pytest

from compressor.errors import UserError
from compressor.recipe import ExportConfig
from export.settings import ExportOptions, export_settings, tolerance_for


def test_overrides_replace_the_recipe_values_and_the_rest_is_kept() -> None:
    recipe = ExportConfig(batch_sizes=[1, 8], timed_runs=50)
    merged = export_settings(recipe, ExportOptions(batch_sizes=[4], calibration_images=64))
    assert merged.batch_sizes == [4] and merged.timed_runs == 50
    assert merged.int8.calibration_images == 64
    assert export_settings(recipe, ExportOptions()) == recipe


def test_a_bad_override_is_named_as_the_flag_that_was_typed() -> None:
    with pytest.raises(UserError) as flag:
        export_settings(ExportConfig(), ExportOptions(timed_runs=0))
    assert str(flag.value).startswith("--runs: ")
    with pytest.raises(UserError) as calibration:
        export_settings(ExportConfig(), ExportOptions(calibration_images=0))
    assert str(calibration.value).startswith("--calibration-images: ")


@pytest.mark.parametrize(
    ("options", "flag"),
    [
        (ExportOptions(timed_runs=10**23), "--runs"),
        (ExportOptions(warmup_runs=100_001), "--warmup"),
    ],
)
def test_run_counts_past_any_sensible_timing_are_refused(options: ExportOptions, flag: str) -> None:
    """--runs 10**23 crashed in numpy, 10**12 was blamed on the batch sizes, and a huge
    --warmup never ended."""
    with pytest.raises(UserError) as refused:
        export_settings(ExportConfig(), options)
    assert str(refused.value).startswith(f"{flag}: Input should be less than or equal to 100000")


def test_fp32_is_judged_elementwise_and_reduced_precision_by_agreement_only() -> None:
    settings = ExportConfig()
    fp32 = tolerance_for(settings, "fp32")
    assert fp32.max_abs_diff == settings.max_abs_diff
    assert fp32.min_agreement == settings.min_agreement
    fp16, int8 = tolerance_for(settings, "fp16"), tolerance_for(settings, "int8")
    assert fp16.max_abs_diff is None and fp16.min_agreement == settings.fp16_min_agreement
    assert int8.max_abs_diff is None and int8.min_agreement == settings.int8_min_agreement
