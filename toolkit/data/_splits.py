"""A dataset folder as the train, val and test tensors a training run needs, with documented fallbacks.

Legend: N batch · C channels · H, W pixels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._check import check_in, check_int
from ..device import make_generator
from ..errors import DataError, LayoutError, ParameterError
from ..io import MASK_MODES, read_mask
from ..labels import count_classes
from ._collect import find_masks_by_stem
from ._dataset import SegmentationDataset
from ._inspect import empty_classes_note
from ._layouts import Layout, discover_layout, layout_names
from ._writer import write_synthetic_dataset
from .synthetic import synth_kinds

__all__ = ["DataSource", "Splits", "prepare_splits", "lazy_split", "lazy_splits", "load_split_tensors",
           "read_label_folder"]

Split = tuple[torch.Tensor, torch.Tensor, list[str]]
"""``(images (N, C, H, W) float32, labels (N, H, W) int64, names)``."""


@dataclass(frozen=True)
class DataSource:
    """Where a run's data comes from and how it is read: everything :func:`prepare_splits` needs, checked.

    Attributes:
        data: a dataset folder (made absolute, so that a record of it means the same folder from any working
            directory), or ``synth:KIND`` for built-in synthetic data generated into the run folder.
        layout: the dataset layout (``auto`` or a name of :data:`mstool.data.LAYOUTS`).
        fit: ``center`` crops images of different sizes to a common size (:func:`load_split_tensors`); ``None``
            requires one size.
        mask_mode: how masks are read (:func:`mstool.io.read_mask`); ``None``: the layout's default.
        mask_suffix: the cellpose layout's mask suffix (``name.tif`` pairs with ``name{mask_suffix}.tif``).
        val_fraction: the share of training images held out as validation when the data has no val split.
        seed: seed of the held-out draws and of a ``synth:`` dataset.
        synth_n, synth_size, synth_invert: a ``synth:`` dataset's image count (at least 3), side and whether it is
            turned over (dark objects on a bright background).

    Example:
        >>> DataSource("synth:er", synth_n=5, synth_size=32).is_synthetic
        True
    """

    data: str
    layout: str = "auto"
    fit: str | None = None
    mask_mode: str | None = None
    val_fraction: float = 0.2
    seed: int = 0
    mask_suffix: str = "_masks"
    synth_n: int = 24
    synth_size: int = 128
    synth_invert: bool = False

    def __post_init__(self) -> None:
        data = str(self.data)
        object.__setattr__(self, "data", data if data.startswith("synth:") else str(Path(data).resolve()))
        check_in(self.layout, "layout", ["auto", *layout_names()])
        if self.fit is not None:
            check_in(self.fit, "fit", ["center"])
        if self.mask_mode is not None:
            check_in(self.mask_mode, "mask_mode", MASK_MODES)
        if not isinstance(self.mask_suffix, str) or not self.mask_suffix:
            raise ParameterError(f"`mask_suffix` must be a non-empty string such as '_masks'; got {self.mask_suffix!r}")
        if not 0 < self.val_fraction < 1:
            raise ParameterError(f"`val_fraction` must be in (0, 1); got {self.val_fraction}")
        if not isinstance(self.synth_invert, bool):
            raise ParameterError(f"`synth_invert` must be true or false; got {self.synth_invert!r}")
        if self.is_synthetic:
            check_in(self.data.split(":", 1)[1], "synthetic kind", synth_kinds())
            object.__setattr__(self, "synth_n", check_int(self.synth_n, "synth_n", low=3))
            object.__setattr__(self, "synth_size", check_int(self.synth_size, "synth_size", low=32))

    @property
    def is_synthetic(self) -> bool:
        return self.data.startswith("synth:")


@dataclass
class Splits:
    """The tensors a run trains, validates and tests on, and how they were obtained (``notes``).

    ``label_folders`` holds the masks of real noisy label folders for the training images, ``(N, H, W)`` each,
    by the name they were given (:func:`read_label_folder`).
    """

    root: Path
    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    test_names: list[str]
    num_classes: int
    notes: list[str] = field(default_factory=list)
    train_names: list[str] = field(default_factory=list)
    other_names: list[str] = field(default_factory=list)
    label_folders: dict[str, torch.Tensor] = field(default_factory=dict)


def prepare_splits(source: DataSource | str, workdir: str | os.PathLike, *,
                   label_folders: dict[str, str | os.PathLike] | None = None) -> Splits:
    """Load a dataset's train, val and test sets, a ``synth:KIND`` one first generated into ``workdir/data``.

    Fallbacks, recorded in ``notes``:

    - no ``val`` split: a share ``source.val_fraction`` of the training images (at least one) is held out as
      validation, drawn with ``source.seed``; thresholds and polarity are still never chosen on test;
    - a single split (a flat cellpose folder ``all``, or only ``train``): it is divided 60/20/20 into train, val
      and test the same way;
    - no labelled ``test`` split (VOC and Cityscapes, whose test masks are not public, or a dataset with
      ``train`` and ``val`` only): ``val`` is the test set and validation is held out of ``train``. A split
      with no mask at all is left out (named in ``notes``); one with some masks missing is an error.

    Args:
        source: the data and how to read it; a string is ``DataSource(source)``.
        workdir: the run folder a ``synth:`` dataset is written into, once (unused for a dataset folder).
        label_folders: real noisy label folders by name, read for the training images
            (:func:`read_label_folder`).

    Raises:
        LayoutError: the folder has no split, or one too small to hold a set out of.
        DataError: a label folder does not match the training images.
    """
    src = source if isinstance(source, DataSource) else DataSource(source)
    seed, val_fraction = src.seed, src.val_fraction
    notes: list[str] = []
    if src.is_synthetic:
        root = Path(workdir) / "data"
        if not (root / "dataset.json").exists():
            write_synthetic_dataset(root, src.data.split(":", 1)[1], src.synth_n, src.synth_size, seed=seed,
                                    invert=src.synth_invert, overwrite=True)
        notes.append(f"built-in synthetic data {src.data}{' turned over' if src.synth_invert else ''}: "
                     f"{src.synth_n} images of {src.synth_size} px, seed {seed}, split 60/20/20")
    else:
        root = Path(src.data)
    found = discover_layout(root, src.layout, mask_suffix=src.mask_suffix)
    splits = set(found.splits)
    unlabelled = sorted(s for s in splits if _unlabelled(found, s))
    if unlabelled:
        splits -= set(unlabelled)
        notes.append(f"split(s) {', '.join(unlabelled)} hold no masks and are not used")

    def load(split: str) -> Split:
        return load_split_tensors(found, split, fit=src.fit, mask_mode=src.mask_mode)

    g = make_generator(seed)
    if {"train", "val", "test"} <= splits:
        train, val, test = load("train"), load("val"), load("test")
    elif {"train", "val"} <= splits:
        test = load("val")
        train, val = _hold_out(load("train"), val_fraction, g)
        notes.append(f"no labelled test split: the val split is the test set; {val_fraction:.0%} of train held out "
                     f"as validation (seed {seed})")
    elif {"train", "test"} <= splits:
        train, val = _hold_out(load("train"), val_fraction, g)
        test = load("test")
        notes.append(f"no val split: {val_fraction:.0%} of train held out as validation (seed {seed})")
    elif splits:
        only = "all" if "all" in splits else ("train" if "train" in splits else sorted(splits)[0])
        rest, test = _hold_out(load(only), 0.2, g)
        train, val = _hold_out(rest, 0.25, g)
        notes.append(f"one split ({only!r}): divided 60/20/20 into train/val/test (seed {seed})")
    else:
        raise LayoutError(f"{root}: no split holds masks ({', '.join(unlabelled)} have images only); training "
                          "and evaluation need labelled images")
    folders = {name: read_label_folder(path, train[2], train[1].shape[-2:], others=val[2] + test[2], fit=src.fit,
                                       mask_mode=src.mask_mode)
               for name, path in (label_folders or {}).items()}
    every = torch.cat([t[1].flatten() for t in (train, val, test)] + [t.flatten() for t in folders.values()])
    empty = empty_classes_note(set(torch.unique(every).tolist()))
    if empty:
        notes.append(empty)
    return Splits(root, train[0], train[1], val[0], val[1], test[0], test[1], test[2], count_classes(every), notes,
                  train_names=list(train[2]), other_names=list(val[2]) + list(test[2]), label_folders=folders)


def _unlabelled(found: Layout, split: str) -> bool:
    """Whether a split lists images and, by its layout's design, no mask (VOC's test split, a paper-layout split
    without ``labels/``); a split whose masks are missing by mistake (a scan problem) is not, so it fails loudly."""
    samples, problems = found.scan(split)
    return bool(samples) and not problems and all(sample.mask is None for sample in samples)


def lazy_split(source: DataSource | str, workdir: str | os.PathLike, split: str) -> SegmentationDataset:
    """One split of a dataset as a :class:`SegmentationDataset` read item by item (for
    :func:`mstool.engine.train` and :func:`mstool.engine.evaluate` on data larger than memory). A ``synth:``
    dataset is written into ``workdir/data`` first, with train, val and test splits.

    Unlike :func:`prepare_splits` there is no fallback: the dataset must have the split.

    Raises:
        LayoutError: no such split.
    """
    src = source if isinstance(source, DataSource) else DataSource(source)
    root = Path(workdir) / "data" if src.is_synthetic else Path(src.data)
    if src.is_synthetic and not (root / "dataset.json").exists():
        write_synthetic_dataset(root, src.data.split(":", 1)[1], src.synth_n, src.synth_size, seed=src.seed,
                                invert=src.synth_invert, overwrite=True)
    found = discover_layout(root, src.layout, mask_suffix=src.mask_suffix)
    if split not in found.splits or _unlabelled(found, split):
        have = ", ".join(s for s in found.splits if not _unlabelled(found, s))
        raise LayoutError(f"{root}: reading the data lazily needs a labelled {split} split; it has {have} (a split "
                          "is never held out of another item by item: read it whole, as `mstool evaluate --eager` "
                          "does, and val becomes the test set)")
    return SegmentationDataset(found, split, mask_mode=src.mask_mode)


def lazy_splits(source: DataSource | str, workdir: str | os.PathLike) -> tuple[SegmentationDataset,
                                                                            SegmentationDataset, int]:
    """The train and val splits of a dataset read item by item (:func:`lazy_split`), and the class count, read
    from the training masks alone (one mask in memory at a time).

    Raises:
        LayoutError: no ``train`` or no ``val`` split.
    """
    train, val = (lazy_split(source, workdir, split) for split in ("train", "val"))
    highest = 1
    for sample in train.samples:
        mask = read_mask(sample.mask, mode=train.mask_mode)
        valid = mask[mask != 255]
        highest = max(highest, int(valid.max()) if valid.size else 1)
    return train, val, highest + 1


def read_label_folder(path: str | os.PathLike, names: list[str], size: tuple[int, int] | torch.Size, *,
                      others: list[str] = (), fit: str | None = None, mask_mode: str | None = None) -> torch.Tensor:
    """The masks of a real noisy label folder for the images ``names``, ``(N, H, W)`` int64 of ``size``.

    Masks are found by file stem anywhere under ``path``; a mask named like one of ``others`` (validation or test
    images) is allowed and left unused. With ``fit="center"`` a larger mask is cropped about its centre as its
    image was.

    Raises:
        DataError: missing masks, masks named like no image, two masks for one image, or a mask of the wrong size;
            the message names the files.
    """
    found = find_masks_by_stem(path)
    twice = sorted(stem for stem, files in found.items() if len(files) > 1)
    if twice:
        raise DataError(f"{path}: two masks for image {twice[0]!r}: {', '.join(map(str, found[twice[0]][:2]))}")
    missing = [n for n in names if n not in found]
    if missing:
        raise DataError(f"{path}: no mask for training image(s) {_first(missing)}")
    known = set(names) | set(others)
    extra = sorted(stem for stem in found if stem not in known)
    if extra:
        raise DataError(f"{path}: mask(s) named like no image of the dataset: "
                        f"{_first([found[s][0].name for s in extra])}")
    h, w = size
    masks = []
    for name in names:
        file = found[name][0]
        mask = torch.from_numpy(read_mask(file, mode=mask_mode or "auto").astype(np.int64))
        mh, mw = mask.shape
        if (mh, mw) != (h, w) and not (fit == "center" and mh >= h and mw >= w):
            raise DataError(f"{file}: mask is {mh} x {mw} but training image {name!r} is {h} x {w}")
        masks.append(_center(mask, h, w))
    return torch.stack(masks)


def _first(items: list[str], shown: int = 3) -> str:
    more = f" and {len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(map(str, items[:shown])) + more


def _hold_out(split: Split, fraction: float, generator: torch.Generator) -> tuple[Split, Split]:
    images, labels, names = split
    n = images.shape[0]
    if n < 2:
        raise LayoutError(f"cannot hold out a validation or test set from {n} image(s); add images or splits")
    k = min(max(1, round(n * fraction)), n - 1)
    perm = torch.randperm(n, generator=generator)
    keep, held = perm[k:].sort().values, perm[:k].sort().values

    def pick(idx: torch.Tensor) -> Split:
        return images[idx], labels[idx], [names[i] for i in idx.tolist()]

    return pick(keep), pick(held)


def load_split_tensors(
    root: str | os.PathLike | Any,
    split: str,
    *,
    layout: str = "auto",
    channels: int | None = 1,
    mask_mode: str | None = None,
    mask_suffix: str = "_masks",
    fit: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """One labelled split of a dataset folder as stacked tensors, for :func:`mstool.engine.train` and
    :func:`mstool.engine.evaluate`.

    Images are read and z-scored as :class:`SegmentationDataset` gives them. A batch tensor needs
    one size, so images of different sizes are an error unless ``fit="center"``, which crops every image and
    mask about its centre to the smallest height and the smallest width of the split (pixels at the borders
    of larger images are dropped; nothing is resampled, so labels stay exact).

    Args:
        root: a dataset folder or a :class:`~mstool.data.Layout`.
        split: ``train``, ``val``, ``test`` (or ``all`` / ``trainval`` for the layouts that have them).
        layout: ``auto`` or a layout name.
        channels: image channels (1: luminance), ``None`` keeps the files'.
        mask_mode: how masks are read (see :func:`mstool.io.read_mask`); ``None``: the layout's default.
        mask_suffix: the cellpose mask suffix.
        fit: ``None`` (sizes must agree) or ``"center"``.

    Returns:
        ``(images (N, C, H, W) float32, labels (N, H, W) int64, names)``.

    Raises:
        LayoutError: no such split, or it has images without masks.
        DataError: the split is empty, or its images differ in size and ``fit`` is None.
        ParameterError: an unknown ``fit``.

    Example:
        >>> root = write_synthetic_dataset("er", "er", n=5, size=32, seed=0)
        >>> images, labels, names = load_split_tensors(root, "train")
        >>> images.shape[1:], labels.dtype, len(names) == images.shape[0]
        (torch.Size([1, 32, 32]), torch.int64, True)
    """
    if fit is not None:
        check_in(fit, "fit", ["center"])
    ds = SegmentationDataset(root, split, layout=layout, mask_mode=mask_mode, channels=channels,
                             mask_suffix=mask_suffix, require_masks=True)
    items = [ds[i] for i in range(len(ds))]
    if not items:
        raise DataError(f"{ds.layout.root}: split {split!r} holds no images")
    sizes = sorted({tuple(item["image"].shape[-2:]) for item in items})
    if len(sizes) > 1 and fit is None:
        shown = ", ".join(f"{h} x {w}" for h, w in sizes[:4]) + (" ..." if len(sizes) > 4 else "")
        raise DataError(f"{ds.layout.root}: split {split!r} has images of {len(sizes)} sizes ({shown}); pass "
                        "fit='center' (`fit = \"center\"` in a --config file) to crop them to a common size, or "
                        "predict them one at a time")
    h, w = min(s[0] for s in sizes), min(s[1] for s in sizes)
    images = torch.stack([_center(item["image"], h, w) for item in items])
    labels = torch.stack([_center(item["mask"], h, w) for item in items]).long()
    return images, labels, [item["name"] for item in items]



def _center(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    top, left = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2
    return x[..., top:top + h, left:left + w]
