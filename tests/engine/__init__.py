"""Shared tiny data and settings for the engine tests."""

from __future__ import annotations

import pytest
import torch

from mstool.data import synthesize
from mstool.engine import TrainConfig
from mstool.io import normalize_image


def tiny_data(n: int = 6, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` z-scored synthetic ER images ``(n, 1, size, size)`` and their clean binary labels."""
    data = synthesize("er", n, size, generator=torch.Generator().manual_seed(seed))
    images = torch.stack([normalize_image(im[0].numpy()) for im in data.images])
    return images, data.labels


def tiny_config(**overrides) -> TrainConfig:
    """A U-Net of base 4 and depth 2, Adam, 2 epochs of batch 2 on 24-pixel crops, validated every epoch."""
    values = {"model_options": {"base": 4, "depth": 2}, "epochs": 2, "batch_size": 2, "crop": 24, "val_every": 1}
    values.update(overrides)
    return TrainConfig.from_preset("quick", **values)


@pytest.fixture
def one_thread():
    """One torch thread for the test: tiny tensors gain nothing from more, and a busy shared machine makes
    OpenMP thread teams wait on each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
