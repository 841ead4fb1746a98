"""The pretrained ResNet-20 from shared/ exported and validated on the full CIFAR-10 test set:
the export must keep its accuracy (within 0.05 points of PyTorch) on real data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from compressor.data import load_dataset
from compressor.models import load_teacher
from compressor.recipe import DataConfig, TeacherConfig
from export import EvalSet, OnnxRuntimeRunner, Tolerance, accuracy, export_onnx, parity, predict
from export.torch_runner import TorchRunner


@pytest.mark.slow
def test_resnet20_teacher_keeps_its_cifar10_accuracy(shared_dir: Path, tmp_path: Path) -> None:
    checkpoint = shared_dir / "teachers" / "resnet20-12fca82f.th"
    data_root = shared_dir / "data"
    if not checkpoint.is_file() or not (data_root / "cifar-10-batches-py").is_dir():
        pytest.skip(f"needs {checkpoint} and CIFAR-10 in {data_root}")
    data = load_dataset(DataConfig(name="cifar10", root=data_root))
    teacher = load_teacher(TeacherConfig(arch="resnet20", checkpoint=checkpoint), 10, 3)
    # The first 2,000 test images: the full set's accuracy through the loader is checked in
    # tests/engine/test_teacher_check.py; here ONNX Runtime must match PyTorch image by image.
    images, labels = data.test.images[:2000].numpy(), data.test.labels[:2000].numpy()
    eval_set = EvalSet("cifar10", images, labels, data.mean, data.std)
    path = tmp_path / "resnet20.onnx"
    export_onnx(
        teacher, path, image_shape=(3, 32, 32), opset=18, metadata={"classes": data.classes}
    )

    onnx_logits = predict(OnnxRuntimeRunner(path).infer, eval_set, 256)
    reference = predict(TorchRunner(teacher, torch.device("cpu")).infer, eval_set, 256)

    assert len(eval_set) == 2_000
    assert accuracy(reference, eval_set.labels) > 90.0  # 91.73 % on all 10,000
    assert accuracy(onnx_logits, eval_set.labels) == pytest.approx(
        accuracy(reference, eval_set.labels), abs=0.05
    )
    assert parity(reference, onnx_logits, Tolerance(1e-4, 99.9)).passed
