"""The student's training-mode probe: bad students are one line, and the probe leaves no trace."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from compressor.errors import UserError
from compressor.models import create_model, student_kwargs
from compressor.models.probe import check_student_output


class PairOutput(nn.Module):
    """Logits plus an auxiliary head's, as GoogLeNet returns in training mode."""

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = images.flatten(1)[:, :10]
        return logits, logits


def test_a_fitting_student_passes_and_is_left_as_it_was() -> None:
    """The probe trains nothing: BatchNorm statistics and the random stream are unchanged."""
    student = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5), nn.Flatten(), nn.LazyLinear(10)
    )
    student(torch.randn(2, 3, 8, 8))  # materialise the lazy layer
    before = {name: value.clone() for name, value in student.state_dict().items()}
    torch.manual_seed(0)
    check_student_output(student, "net", torch.randn(2, 3, 8, 8) + 5.0, 10)
    after_probe = torch.rand(3)
    torch.manual_seed(0)
    torch.randn(2, 3, 8, 8)  # the probe's images, drawn as above
    assert torch.equal(torch.rand(3), after_probe)
    for name, value in student.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_students_that_cannot_train_on_the_data_are_one_line() -> None:
    images = torch.randn(2, 3, 32, 32)
    with pytest.raises(UserError, match=r"student net returns a tuple in training mode"):
        check_student_output(PairOutput(), "net", images, 10)
    with pytest.raises(UserError, match=r"student resnet8 returns \[2, 10\] .* \[2, 7\]"):
        check_student_output(create_model("resnet8", 10), "resnet8", images, 7)
    with pytest.raises(UserError) as too_small:
        check_student_output(create_model("vit_b_16", 10), "vit_b_16", images, 10)
    assert too_small.value.lines[0].startswith(
        "student vit_b_16 fails on a batch of shape [2, 3, 32"
    )
    assert "another size (data.image_size" in too_small.value.lines[0]


# torchvision warns about GoogLeNet's future default initialisation: an error here, as a
# student's kwargs say which initialisation it wants.
@pytest.mark.filterwarnings("error:The default weight initialization of GoogleNet")
def test_torchvision_students_with_auxiliary_heads_return_logits() -> None:
    """GoogLeNet's auxiliary heads are off for a student unless the recipe turns them on; a
    teacher keeps them, so a checkpoint with their weights still loads."""
    student = create_model("googlenet", 10, **student_kwargs("googlenet", {}))
    check_student_output(student, "googlenet", torch.randn(2, 3, 64, 64), 10)
    teacher = create_model("googlenet", 10, init_weights=False)
    assert any(name.startswith("aux1.") for name in teacher.state_dict())
    with pytest.raises(UserError, match="returns a GoogLeNetOutputs in training mode"):
        check_student_output(teacher, "googlenet", torch.randn(2, 3, 64, 64), 10)


def test_one_image_is_enough_to_probe() -> None:
    """An evaluation batch of one (eval_batch_size 1, a one-image test set): BatchNorm in
    training mode needs two values per channel, so the probe doubles the image."""
    check_student_output(create_model("resnet18", 10), "resnet18", torch.randn(1, 3, 32, 32), 10)
