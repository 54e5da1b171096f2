"""Label sets on disk: the masks of a dataset folder (any layout) or of a plain folder of mask files.

``mstool labels make/analyze`` and ``mstool prior estimate`` read label sets through these functions, so a noisy
copy of a dataset mirrors the clean one file for file (``train/labels/a.png`` -> ``OUT/train/labels/a.png``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError, FileMissingError, LayoutError, MstoolError, ParameterError
from ..io import IMAGE_SUFFIXES, find_images, image_size, read_image, read_mask
from ._layouts import Layout, discover_layout

__all__ = ["MaskEntry", "ImageEntry", "collect_masks", "collect_images", "read_images", "read_label_set",
           "stack_labels", "find_masks_by_stem", "find_counterparts", "MASK_NAME_SUFFIXES", "mask_image_name"]


@dataclass(frozen=True)
class MaskEntry:
    """One mask file of a label set.

    Attributes:
        name: the image name the mask belongs to (file name without extension and without a mask suffix).
        split: the dataset split (``""`` for a plain folder of masks).
        rel: the mask's path relative to the label set's root; a noisy copy keeps it, with a ``.png`` suffix.
        path: the mask file.
        image: the image it labels, when the label set is a dataset folder (sizes are checked against it).
    """

    name: str
    split: str
    rel: Path
    path: Path
    image: Path | None = None


@dataclass(frozen=True)
class ImageEntry:
    """One image file to segment: its name (unique in the collection), split (``""`` outside datasets), file."""

    name: str
    split: str
    path: Path


def collect_images(
    source: str | os.PathLike,
    *,
    layout: str = "auto",
    splits: tuple[str, ...] | None = None,
    mask_suffix: str = "_masks",
) -> list[ImageEntry]:
    """The images of one file, a plain folder of images, or a dataset folder (its images, never its masks).

    Args:
        source: an image file, a folder of images, a dataset root of any layout (paper, cellpose, VOC), or one
            split of a paper-layout dataset (``data/test``: its ``images/``).
        layout: ``auto`` or a layout name for ``source``.
        splits: a dataset's splits to take (default: every split).
        mask_suffix: the cellpose mask suffix (``a_masks.tif`` is the mask of ``a.tif``, not an image).

    Returns:
        The images in a stable order, with unique names.

    Raises:
        FileMissingError: ``source`` does not exist.
        LayoutError: no images; ``splits`` for a plain folder or a split the dataset lacks; two images with one
            name (in different splits: choose one with ``splits``).
    """
    root = Path(source)
    if not root.exists():
        raise FileMissingError(f"{root}: no such file or folder")
    if root.is_file():
        if splits:
            raise LayoutError(f"{root}: a single image has no splits; leave out --split")
        if root.suffix.lower() not in IMAGE_SUFFIXES:
            raise LayoutError(f"{root}: not an image file (expected {', '.join(IMAGE_SUFFIXES)})")
        return [ImageEntry(root.stem, "", root)]
    found = _layout_or_plain(root, layout, mask_suffix)
    if found is None:
        if splits:
            raise LayoutError(f"{root}: a plain folder of images has no splits (split {splits[0]!r} was asked "
                              "for); name a dataset folder or leave out --split")
        return [ImageEntry(p.stem, "", p) for p in find_images(_split_part(root, "images"))]
    entries: list[ImageEntry] = []
    seen: dict[str, ImageEntry] = {}
    for split in (found.splits if not splits else tuple(splits)):
        for s in found.scan(split)[0]:
            if s.name in seen:
                raise LayoutError(f"{s.image}: image name {s.name!r} is also {seen[s.name].path}; choose one split "
                                  "with --split")
            seen[s.name] = ImageEntry(s.name, split, s.image)
            entries.append(seen[s.name])
    if not entries:
        raise LayoutError(f"{root}: no images found in the {found.kind} layout's split(s) "
                          f"{', '.join(splits or found.splits)}")
    return entries


def read_images(
    source: str | os.PathLike,
    *,
    layout: str = "auto",
    splits: tuple[str, ...] | None = None,
    page: int | None = None,
    skip_unreadable: bool = False,
) -> tuple[dict[str, tuple[Path, np.ndarray]], list[str]]:
    """Read the images of :func:`collect_images` (a file, a folder, or a dataset folder's images).

    Args:
        source, layout, splits: as :func:`collect_images`.
        page: the page of multi-page TIFF images.
        skip_unreadable: leave out an image that cannot be read and say why in the returned problems (else the
            first such image raises).

    Returns:
        ``{name: (file, array)}`` in the collection's order, and the problems of the images left out.

    Raises:
        FileReadError, ParameterError: an image cannot be read (without ``skip_unreadable``).
        ParameterError: no image could be read (with ``skip_unreadable``).
    """
    loaded: dict[str, tuple[Path, np.ndarray]] = {}
    problems: list[str] = []
    for entry in collect_images(source, layout=layout, splits=splits):
        try:
            loaded[entry.name] = (entry.path, read_image(entry.path, page=page))
        except MstoolError as exc:
            if not skip_unreadable:
                raise
            problems.append(str(exc))
    if not loaded and len(problems) == 1 and Path(source).is_file():  # its one problem names the file already
        raise ParameterError(problems[0])
    if not loaded:
        raise ParameterError(f"{source}: no readable image; {'; '.join(problems)}")
    return loaded, problems


def collect_masks(
    root: str | os.PathLike,
    *,
    layout: str = "auto",
    splits: tuple[str, ...] | None = None,
    mask_suffix: str = "_masks",
) -> tuple[list[MaskEntry], str]:
    """List the masks of a dataset folder, or of a plain folder of mask files.

    Args:
        root: a dataset folder (paper, cellpose or VOC layout), a folder holding mask files only, or one split
            of a paper-layout dataset (``data/test``: its ``labels/``).
        layout: ``auto`` or a layout name; a plain mask folder is used when no layout matches and ``layout`` is
            ``auto``.
        splits: the splits to read (default: every split); ignored for a plain folder.
        mask_suffix: the cellpose mask suffix.

    Returns:
        ``(entries, mask_mode)``: the masks in a stable order, and how to read them (``multiclass`` for VOC).

    Raises:
        FileMissingError: ``root`` does not exist.
        LayoutError: no masks found, or a split that the layout lacks.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileMissingError(f"{root}: label folder does not exist")
    found = _layout_or_plain(root, layout, mask_suffix)
    if found is None or (layout == "auto" and found.kind == "cellpose" and not _has_plain_images(root, mask_suffix)):
        # a folder of masks only, such as a noisy copy of a cellpose folder (`a_masks.png` and no `a.tif`)
        files = find_images(_split_part(root, "labels"))
        return [MaskEntry(_strip(p.stem, mask_suffix), "", Path(p.name), p) for p in files], "auto"
    chosen = found.splits if splits is None else tuple(splits)
    entries = []
    for split in chosen:
        for s in found.samples(split):
            if s.mask is not None:
                entries.append(MaskEntry(s.name, split, s.mask.relative_to(found.root), s.mask, s.image))
    if not entries:
        raise LayoutError(f"{root}: no masks found in split(s) {', '.join(chosen)}")
    return entries, found.mask_mode


def _split_part(root: Path, part: str) -> Path:
    """``root/part`` when ``root`` is one split of a paper-layout dataset (``test/`` holding ``images/`` and
    ``labels/``, and no image of its own), so that ``data/test`` reads as its images or its masks; else ``root``."""
    if (root / part).is_dir() and (root / "images").is_dir() and not any(
            p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in root.iterdir()):
        return root / part
    return root


def _layout_or_plain(root: Path, layout: str, mask_suffix: str) -> Layout | None:
    """The dataset layout of ``root``, or ``None`` for a plain folder (only when ``layout`` is ``auto``)."""
    try:
        return discover_layout(root, layout, mask_suffix=mask_suffix)
    except LayoutError:
        if layout != "auto":
            raise
        return None


def _strip(stem: str, suffix: str) -> str:
    return stem[: -len(suffix)] if suffix and stem.endswith(suffix) and len(stem) > len(suffix) else stem


def _has_plain_images(root: Path, mask_suffix: str) -> bool:
    """Whether a cellpose-looking folder (or its split folders) holds any image that is not a mask."""
    folders = [root] + [root / s for s in ("train", "val", "test") if (root / s).is_dir()]
    for folder in folders:
        for p in folder.iterdir():
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.stem.endswith(mask_suffix):
                return True
    return False


def find_counterparts(entries: list[MaskEntry], other_root: str | os.PathLike, *,
                      allow_missing: bool = False) -> list[Path | None]:
    """The file in ``other_root`` at each entry's relative path (any image suffix), e.g. a noisy copy's masks;
    failing that, the one mask anywhere under it named like the entry's image (:func:`find_masks_by_stem`), so a
    flat folder of masks pairs with a dataset's split folders and the other way round.

    Args:
        entries: the masks to find counterparts of.
        other_root: the folder mirroring them.
        allow_missing: give ``None`` for an entry without a counterpart instead of raising.

    Raises:
        LayoutError: naming the first few entries that have no counterpart (without ``allow_missing``).
    """
    other_root = Path(other_root)
    if not other_root.is_dir():
        raise FileMissingError(f"{other_root}: label folder does not exist")
    found, missing = [], []
    by_name: dict[str, list[Path]] | None = None
    for e in entries:
        folder = other_root / e.rel.parent
        candidates = sorted(folder.glob(f"{_glob_escape(e.rel.stem)}.*")) if folder.is_dir() else []
        candidates = [p for p in candidates if p.stem == e.rel.stem]
        if not candidates:
            if by_name is None:  # walked once, and only when a mirrored path is missing
                try:
                    by_name = find_masks_by_stem(other_root)
                except LayoutError:
                    by_name = {}
            named = by_name.get(e.name, [])
            candidates = named if len(named) == 1 else []  # two masks of one name: neither is chosen
        if not candidates:
            missing.append(str(e.rel.with_suffix("")))  # the name, whatever suffix the mask would have had
            if allow_missing:
                found.append(None)
        else:
            found.append(candidates[0])
    if missing and not allow_missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise LayoutError(f"{other_root}: no mask named like the clean mask(s) {', '.join(missing[:3])}{more} "
                          "(any image suffix)")
    return found


MASK_NAME_SUFFIXES = ("_masks", "_mask")
"""Endings a mask's file name may add to its image's name (``cell1_masks.tif`` labels ``cell1.tif``)."""


def mask_image_name(stem: str) -> str:
    """The image name a mask file stem labels: the stem without a :data:`MASK_NAME_SUFFIXES` ending.

    Example:
        >>> [mask_image_name(s) for s in ("cell1_masks", "cell1_mask", "cell1", "_mask")]
        ['cell1', 'cell1', 'cell1', '_mask']
    """
    for suffix in MASK_NAME_SUFFIXES:
        if stem.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def find_masks_by_stem(root: str | os.PathLike) -> dict[str, list[Path]]:
    """Every mask file under ``root`` (any depth, hidden files and mstool's temporaries skipped), by the image name
    it labels (:func:`mask_image_name`).

    A folder of real noisy masks named like the images they label (``cell_012.png`` or ``cell_012_masks.png``
    for ``cell_012.tif``, as ``mstool labels make`` names them in a cellpose folder) is matched to a dataset this
    way, whatever its folder structure.

    Raises:
        FileMissingError: ``root`` is not a folder.
        LayoutError: ``root`` holds no mask file.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileMissingError(f"{root}: label folder does not exist")
    out: dict[str, list[Path]] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not any(part.startswith(".") for part in rel.parts):
            out.setdefault(mask_image_name(p.stem), []).append(p)
    if not out:
        raise LayoutError(f"{root}: no mask files ({', '.join(IMAGE_SUFFIXES)})")
    return out


def _glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[]" else c for c in text)


def read_label_set(entries: list[MaskEntry], *, mode: str = "auto") -> list[np.ndarray]:
    """Read the masks of a label set, each checked against its image's size when the set is a dataset folder.

    Raises:
        DataError: a mask whose size differs from its image's (the message names both files), or a bad mask.
    """
    arrays = []
    for e in entries:
        mask = read_mask(e.path, mode=mode)
        if e.image is not None:
            size = image_size(e.image)
            if size != mask.shape:
                raise DataError(f"{e.path}: mask is {mask.shape[0]} x {mask.shape[1]} but its image {e.image} is "
                                f"{size[0]} x {size[1]} (height x width)")
        arrays.append(mask)
    return arrays


def stack_labels(arrays: list[np.ndarray], *, pad_value: int = 255) -> tuple[torch.Tensor, list[tuple]]:
    """Stack ``(H, W)`` masks into one ``(N, H, W)`` int64 batch, padding smaller masks with the ignore index.

    Padding with 255 keeps pixels that do not exist out of every count (noise transition matrices, densities with
    ignored pixels left out), so masks of different sizes can be analysed together.

    Returns:
        ``(labels, sizes)`` with each mask's ``(H, W)``.
    """
    sizes = [a.shape for a in arrays]
    if not arrays:
        return torch.zeros(0, 0, 0, dtype=torch.long), sizes
    h = max(s[0] for s in sizes)
    w = max(s[1] for s in sizes)
    out = np.full((len(arrays), h, w), pad_value, dtype=np.int64)
    for i, a in enumerate(arrays):
        out[i, : a.shape[0], : a.shape[1]] = a
    return torch.from_numpy(out), sizes
