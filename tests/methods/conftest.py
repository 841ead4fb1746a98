"""Small real models for the method tests: a trained teacher and a fresh student.

A tiny CNN with the zoo's interface (`forward_features`, `forward_head`, `num_features`) and
BatchNorm, so tests see what matters for distillation: train-mode BN in the student,
eval-mode BN buffers in the teacher that must never move. Data are class-coloured noise the
teacher learns in a few SGD steps, so its decisions are meaningful but training takes < 1 s.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
from torch import nn

NUM_CLASSES = 4
IMAGE_SIZE = 12


class TinyNet(nn.Module):
    def __init__(self, width: int, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(width, num_classes)
        self.num_features = width

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def make_batch(size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised-looking images whose class is a per-channel colour shift plus noise."""
    labels = torch.arange(size) % NUM_CLASSES
    colours = torch.tensor([[1.0, -1.0, 0.0], [-1.0, 1.0, 0.0], [0.0, 1.0, -1.0], [0.5, 0.5, 1.0]])
    noise = torch.randn(size, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)
    images = 0.6 * colours[labels][:, :, None, None] + noise
    return images.clamp(-2.5, 2.5), labels


@pytest.fixture(scope="session")
def trained_teacher() -> nn.Module:
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    model = TinyNet(width=16)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(40):
        images, labels = make_batch(64, generator)
        loss = nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval().requires_grad_(False)


@pytest.fixture
def teacher(trained_teacher: nn.Module) -> nn.Module:
    """A fresh copy per test, so a test that broke the freeze cannot hide it from another."""
    return copy.deepcopy(trained_teacher)


@pytest.fixture
def student_factory() -> Callable[..., nn.Module]:
    def make(width: int = 8, seed: int = 1) -> nn.Module:
        torch.manual_seed(seed)
        return TinyNet(width=width).train()

    return make


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    return make_batch(32, torch.Generator().manual_seed(1))
