"""Write datasets to disk in the paper's folder layout: built-in synthetic data, or one large image cut into tiles."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .._check import check_int
from .._fs import atomic_dir
from .._version import __version__
from ..device import make_generator, resolve_device
from ..errors import ParameterError
from ..io import check_pair, read_image, read_mask, write_image, write_mask
from ._layouts import SPLITS
from .synthetic import synthesize

__all__ = ["write_synthetic_dataset", "write_tiled_dataset", "split_counts"]


def split_counts(n: int, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)) -> tuple[int, int, int]:
    """Numbers of train/val/test images for ``n`` images; each split gets at least one image when ``n >= 3``.

    Example:
        >>> split_counts(64)
        (38, 13, 13)
        >>> split_counts(3)
        (1, 1, 1)
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or sum(fractions) <= 0:
        raise ParameterError(f"`split` must be three non-negative fractions (train, val, test); got {fractions}")
    total = float(sum(fractions))
    val = int(round(n * fractions[1] / total))
    test = int(round(n * fractions[2] / total))
    if n >= 3:
        val, test = max(val, 1 if fractions[1] else 0), max(test, 1 if fractions[2] else 0)
    train = n - val - test
    return train, val, test


def write_synthetic_dataset(
    root: str | os.PathLike,
    kind: str,
    n: int,
    size: int | tuple[int, int] = 256,
    *,
    seed: int = 0,
    snr: float = 8.0,
    invert: bool = False,
    split: tuple[float, float, float] = (0.6, 0.2, 0.2),
    device: str = "cpu",
    overwrite: bool = False,
) -> Path:
    """Generate ``n`` synthetic images of ``kind`` and write them as ``ROOT/{train,val,test}/{images,labels}/``.

    Images are 16-bit TIFF camera counts, labels are PNG (binary: 0/255 grayscale; multi-class: VOC palette).
    ``ROOT/dataset.json`` records the kind, size, seed, SNR, class names, split and mstool version, so a dataset can
    be regenerated bit for bit. The folder appears only when complete (written beside it, then renamed).

    Args:
        root: output folder; must not exist or be empty unless ``overwrite``.
        kind: a synthetic kind (:func:`mstool.data.synth_kinds`).
        n: number of images (at least 3, so that every split has one).
        size: image size, one int or ``(H, W)``.
        seed: seed of the whole dataset (recorded in ``dataset.json``).
        snr: signal-to-noise ratio (see :func:`mstool.data.synthesize`).
        invert: turn the intensities over (see :func:`mstool.data.synthesize`).
        split: train/val/test fractions.
        device: where images are rendered.
        overwrite: replace an existing non-empty folder (only once the new one is complete).

    Returns:
        The dataset folder.
    """
    # plain ints: both are written to dataset.json
    n = check_int(n, "n", low=3, note="so that train, val and test each get an image")
    seed = None if seed is None else check_int(seed, "seed", low=0)
    counts = split_counts(n, split)
    with atomic_dir(root, overwrite=overwrite, kind="synth") as tmp:
        data = synthesize(kind, n, size, snr=snr, invert=invert, generator=make_generator(seed),
                          device=resolve_device(device))
        images = data.images.squeeze(1).cpu().numpy().round().clip(0, 65535).astype(np.uint16)
        labels = data.labels.cpu().numpy().astype(np.uint8)
        start = 0
        for name, count in zip(SPLITS, counts):
            for i in range(start, start + count):
                stem = f"{kind}_{i:04d}"
                write_image(tmp / name / "images" / f"{stem}.tif", images[i])
                write_mask(tmp / name / "labels" / f"{stem}.png", labels[i])
            start += count
        meta = {
            "generator": "mstool.data.synthesize",
            "mstool_version": __version__,
            "kind": kind,
            "n": n,
            "size": list(images.shape[-2:]),
            "seed": seed,
            "snr": snr,
            "invert": invert,
            "classes": list(data.classes),
            "split": dict(zip(SPLITS, counts)),
        }
        (tmp / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n")
    return Path(root)


def write_tiled_dataset(
    image: str | os.PathLike,
    mask: str | os.PathLike,
    root: str | os.PathLike,
    *,
    tile: int = 128,
    seed: int = 0,
    invert: bool = False,
    mask_mode: str = "auto",
    overwrite: bool = False,
) -> Path:
    """Cut one large image and its mask into tiles and write them in the paper layout, for a comparison on one
    real micrograph (the DSB sample, or a user's own image).

    The tiles do not overlap and cover the image from its top-left corner (a border narrower than a tile is left
    out); they are split 60/20/20 into train, val and test as :func:`split_counts` says (at least one each), drawn
    with ``seed``.
    ``ROOT/tiles.json`` records the source files and settings. The folder appears only when complete.

    Args:
        image, mask: the image file and its mask (binary, or instance labels: > 0 is foreground).
        root: output folder; new, empty, or (with ``overwrite``) one that mstool wrote.
        tile: tile side in pixels.
        seed: seed of the split.
        invert: turn the image's intensities over (``min + max - x``), to test methods on the other polarity.
        mask_mode: how to read the mask (:func:`mstool.io.read_mask`).

    Returns:
        The dataset folder.

    Raises:
        ParameterError: fewer than 3 tiles fit, or image and mask differ in size.
    """
    tile = check_int(tile, "tile", low=1, note="pixels")
    seed = check_int(seed, "seed", low=0)  # a plain int for tiles.json
    pixels, labels = read_image(image), read_mask(mask, mode=mask_mode)
    check_pair(pixels, labels, image, mask)
    h, w = labels.shape
    corners = [(y, x) for y in range(0, h - tile + 1, tile) for x in range(0, w - tile + 1, tile)]
    if len(corners) < 3:
        raise ParameterError(f"{image}: {h} x {w} holds {len(corners)} tile(s) of {tile}; choose a smaller `tile`")
    if invert:
        pixels = (pixels.min() + pixels.max() - pixels.astype(np.float64)).astype(pixels.dtype)
    order = np.random.default_rng(seed).permutation(len(corners))
    _, val, test = split_counts(len(corners))
    split_of = {int(i): "test" if k < test else "val" if k < test + val else "train" for k, i in enumerate(order)}
    with atomic_dir(root, overwrite=overwrite, inputs=[image, mask], kind="tiles") as tmp:
        for i, (y, x) in enumerate(corners):
            write_image(tmp / split_of[i] / "images" / f"tile_{i:02d}.tif", pixels[y:y + tile, x:x + tile])
            write_mask(tmp / split_of[i] / "labels" / f"tile_{i:02d}.png", labels[y:y + tile, x:x + tile])
        meta = {"image": str(image), "mask": str(mask), "tile": tile, "seed": seed, "invert": invert,
                "tiles": len(corners), "mstool_version": __version__}
        (tmp / "tiles.json").write_text(json.dumps(meta, indent=2) + "\n")
    return Path(root)
