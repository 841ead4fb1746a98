"""Device selection, the numeric settings each device trains with, and the process-wide torch
settings a run changes and puts back."""

from __future__ import annotations

import pytest
import torch

from compressor.engine import device
from compressor.engine.device import full_fp32, restored_torch_settings, select_device, setup_device
from compressor.errors import UserError
from compressor.recipe import TrainConfig

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is visible")
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")


@NO_CUDA
def test_auto_without_a_gpu_is_the_cpu() -> None:
    if torch.backends.mps.is_available():
        pytest.skip("auto picks MPS here")
    assert select_device("auto") == torch.device("cpu")


@NO_CUDA
def test_an_explicit_cuda_device_must_exist() -> None:
    for spec in ("cuda", "cuda:1"):
        with pytest.raises(UserError, match=f"'{spec}' but no CUDA GPU is visible"):
            select_device(spec)


@CUDA
def test_a_cuda_index_must_be_visible() -> None:
    count = torch.cuda.device_count()
    assert select_device(f"cuda:{count - 1}") == torch.device("cuda", count - 1)
    with pytest.raises(UserError, match=f"only {count} GPU"):
        select_device(f"cuda:{count}")


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="MPS is available")
def test_mps_must_be_available() -> None:
    with pytest.raises(UserError, match="'mps' but MPS is not available"):
        select_device("mps")


def test_the_cpu_trains_in_fp32_with_channels_last_by_default() -> None:
    setup = setup_device(TrainConfig(device="cpu"))
    assert (setup.device, setup.amp_dtype, setup.channels_last) == (torch.device("cpu"), None, True)
    assert not setup.needs_grad_scaler
    with setup.autocast():
        assert not torch.is_autocast_enabled("cpu")
    assert not setup_device(TrainConfig(device="cpu", channels_last=False)).channels_last


@pytest.mark.skipif(
    torch.cuda.is_available() or torch.backends.mps.is_available(),
    reason="needs a machine where device auto is the CPU",
)
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_off_cuda_is_refused(amp: str) -> None:
    """`device: auto` finds the CPU here (the recipe schema refuses `device: cpu` with it)."""
    with pytest.raises(UserError, match=f"train.amp is '{amp}' but the device is cpu"):
        setup_device(TrainConfig(device="auto", amp=amp))


@CUDA
def test_cuda_trains_in_mixed_precision() -> None:
    auto = setup_device(TrainConfig(device="cuda"))
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    assert auto.amp_dtype is expected and auto.channels_last
    fp16 = setup_device(TrainConfig(device="cuda", amp="fp16"))
    assert fp16.amp_dtype is torch.float16 and fp16.needs_grad_scaler
    assert setup_device(TrainConfig(device="cuda", amp="off")).amp_dtype is None


def test_a_runs_thread_count_and_determinism_are_put_back() -> None:
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    other = 1 if threads > 1 else 2
    with pytest.raises(RuntimeError, match="run failed"), restored_torch_settings():
        setup_device(TrainConfig(device="cpu", num_threads=other))
        torch.use_deterministic_algorithms(not deterministic, warn_only=True)
        assert torch.get_num_threads() == other
        raise RuntimeError("run failed")
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == deterministic


def test_a_stop_is_not_replaced_by_a_failure_to_put_the_settings_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ctrl-C while torch first imported torch._dynamo (the optimizer's first use) left
    torch._inductor half-loaded; putting determinism back imports it, and its AttributeError
    replaced the KeyboardInterrupt: a clean stop reported as a crash (exit 3)."""

    def half_loaded(*args: object, **kwargs: object) -> None:
        raise AttributeError("partially initialized module 'torch._inductor'")

    with pytest.raises(KeyboardInterrupt), restored_torch_settings():
        monkeypatch.setattr(torch, "use_deterministic_algorithms", half_loaded)
        raise KeyboardInterrupt
    monkeypatch.undo()
    threads = torch.get_num_threads()
    with restored_torch_settings():  # a run that ends well still puts them back
        torch.set_num_threads(1 if threads > 1 else 2)
    assert torch.get_num_threads() == threads


def test_the_callers_random_stream_goes_on_as_if_no_run_had_drawn_from_it() -> None:
    """A run seeds torch's global generator from train.seed: a notebook's own draws after
    run_training came out as that seed's, whatever the notebook had seeded."""
    torch.manual_seed(1234)
    expected = torch.rand(3)
    torch.manual_seed(1234)
    with restored_torch_settings():
        torch.manual_seed(0)  # as the run does
        torch.rand(100)
    assert torch.equal(torch.rand(3), expected)


needs_precision_api = pytest.mark.skipif(
    not hasattr(torch.backends.mkldnn, "matmul"),
    reason="torch < 2.9 has no per-backend fp32_precision",
)


def _leaves() -> list:
    backends = torch.backends
    return [
        backends.cuda.matmul,
        backends.cudnn.conv,
        backends.cudnn.rnn,
        backends.mkldnn.matmul,
        backends.mkldnn.conv,
        backends.mkldnn.rnn,
    ]


def _precisions() -> list[str]:
    return [leaf.fp32_precision for leaf in _leaves()]


# A fresh process's settings: cuDNN's conv and RNN explicitly tf32, everything else deferring
# to its parent ("none") up to the global switch, which is "none" too.
DEFAULTS = ["none", "tf32", "tf32", "none", "none", "none"]


@pytest.fixture
def torch_defaults():
    """Each test starts from and leaves behind a fresh process's precision settings."""
    if not hasattr(torch.backends.mkldnn, "matmul"):  # torch < 2.9: the legacy flags only
        flags = (torch.backends.cuda.matmul, torch.backends.cudnn)
        saved = [flag.allow_tf32 for flag in flags]
        yield
        for flag, value in zip(flags, saved, strict=True):
            flag.allow_tf32 = value
        return

    def reset() -> None:
        torch.set_float32_matmul_precision("highest")
        for parent in (torch.backends, torch.backends.cudnn, torch.backends.mkldnn):
            parent.fp32_precision = "none"
        for leaf, value in zip(_leaves(), DEFAULTS, strict=True):
            leaf.fp32_precision = value

    reset()
    assert _precisions() == DEFAULTS
    yield
    reset()


@needs_precision_api
@pytest.mark.usefixtures("torch_defaults")
def test_full_fp32_switches_tf32_and_bf16_off_and_restores_them() -> None:
    # The new API sets cuDNN's convolutions and RNNs apart, a state in which torch refuses to
    # read the legacy `torch.backends.cudnn.allow_tf32` at all; "medium" lets oneDNN run fp32
    # matmuls in bf16 on the CPU.
    torch.set_float32_matmul_precision("medium")
    torch.backends.cudnn.rnn.fp32_precision = "ieee"
    before = _precisions()
    assert before == ["tf32", "tf32", "ieee", "bf16", "none", "none"]
    with pytest.raises(RuntimeError, match="inside"), full_fp32():
        assert _precisions() == ["ieee"] * 6
        raise RuntimeError("inside")
    assert _precisions() == before


@needs_precision_api
@pytest.mark.usefixtures("torch_defaults")
def test_full_fp32_leaves_inherited_settings_inherited() -> None:
    """A switch that deferred to its parent still does afterwards, so a later change of the
    parent reaches it (torch's getters report the parent's value, not "none")."""
    for leaf in (torch.backends.cudnn.conv, torch.backends.cudnn.rnn):
        leaf.fp32_precision = "none"
    torch.backends.cudnn.fp32_precision = "tf32"
    with full_fp32():
        assert torch.backends.cudnn.conv.fp32_precision == "ieee"
    assert torch.backends.cudnn.conv.fp32_precision == "tf32"
    torch.backends.cudnn.fp32_precision = "ieee"
    assert torch.backends.cudnn.conv.fp32_precision == "ieee"
    assert torch.backends.cudnn.rnn.fp32_precision == "ieee"


@pytest.mark.usefixtures("torch_defaults")
def test_full_fp32_through_the_legacy_switches(monkeypatch: pytest.MonkeyPatch) -> None:
    """What torch < 2.9 runs: the legacy `allow_tf32` flags, which torch 2.9+ still honours."""
    monkeypatch.setattr(device, "_precision_api_switches", lambda: None)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    with full_fp32():
        assert not torch.backends.cuda.matmul.allow_tf32
        assert not torch.backends.cudnn.allow_tf32
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
