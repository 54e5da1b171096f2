"""Tiny dataset folders for layout, dataset and CLI tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mstool.io import write_image, write_mask


def tiny_pair(seed: int = 0, size: int = 16, multiclass: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mask = np.zeros((size, size), np.uint8)
    mask[size // 4: size // 2, size // 4: 3 * size // 4] = 1
    if multiclass:
        mask[size // 2 + 1:, : size // 2] = 2
        mask[0, :] = 255
    image = (1000 + 2000 * (mask > 0) + rng.integers(0, 50, (size, size))).astype(np.uint16)
    return image, mask


def make_paper(root: Path, names=("a", "b"), splits=("train", "val", "test"), mask_suffix=".png") -> Path:
    for k, split in enumerate(splits):
        for i, name in enumerate(names):
            image, mask = tiny_pair(10 * k + i)
            write_image(root / split / "images" / f"{name}.tif", image)
            write_mask(root / split / "labels" / f"{name}{mask_suffix}", mask)
    return root


def make_cellpose(root: Path, names=("c1", "c2"), suffix="_masks") -> Path:
    for i, name in enumerate(names):
        image, mask = tiny_pair(i)
        write_image(root / f"{name}.tif", image)
        write_mask(root / f"{name}{suffix}.tif", mask * (i + 3))  # instance-like labels: >0 is foreground
    return root


def make_voc(root: Path, train=("2007_000001", "2007_000002"), val=("2007_000003",)) -> Path:
    for i, name in enumerate(train + val):
        image, mask = tiny_pair(i, multiclass=True)
        write_image(root / "JPEGImages" / f"{name}.jpg", np.stack([(image // 16).astype(np.uint8)] * 3, -1))
        write_mask(root / "SegmentationClass" / f"{name}.png", mask)
    sets = root / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("\n".join(train) + "\n")
    (sets / "val.txt").write_text("\n".join(val) + "\n")
    return root
