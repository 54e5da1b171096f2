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

from ..errors import FileMissingError, LayoutError
from ..io import IMAGE_SUFFIXES, find_images, read_mask
from ._layouts import discover_layout

__all__ = ["MaskEntry", "collect_masks", "stack_labels", "find_counterparts"]


@dataclass(frozen=True)
class MaskEntry:
    """One mask file of a label set.

    Attributes:
        name: the image name the mask belongs to (file name without extension and without a mask suffix).
        split: the dataset split (``""`` for a plain folder of masks).
        rel: the mask's path relative to the label set's root; a noisy copy keeps it, with a ``.png`` suffix.
        path: the mask file.
    """

    name: str
    split: str
    rel: Path
    path: Path


def collect_masks(
    root: str | os.PathLike,
    *,
    layout: str = "auto",
    splits: tuple[str, ...] | None = None,
    mask_suffix: str = "_masks",
) -> tuple[list[MaskEntry], str]:
    """List the masks of a dataset folder, or of a plain folder of mask files.

    Args:
        root: a dataset folder (paper, cellpose or VOC layout) or a folder holding mask files only.
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
    try:
        found = discover_layout(root, layout, mask_suffix=mask_suffix)
    except LayoutError:
        if layout != "auto":
            raise
        found = None
    if found is None or (layout == "auto" and found.kind == "cellpose" and not _has_plain_images(root, mask_suffix)):
        # a folder of masks only, such as a noisy copy of a cellpose folder (`a_masks.png` and no `a.tif`)
        files = find_images(root)
        return [MaskEntry(_strip(p.stem, mask_suffix), "", Path(p.name), p) for p in files], "auto"
    chosen = found.splits if splits is None else tuple(splits)
    entries = []
    for split in chosen:
        for s in found.samples(split):
            if s.mask is not None:
                entries.append(MaskEntry(s.name, split, s.mask.relative_to(found.root), s.mask))
    if not entries:
        raise LayoutError(f"{root}: no masks found in split(s) {', '.join(chosen)}")
    return entries, found.mask_mode


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


def find_counterparts(entries: list[MaskEntry], other_root: str | os.PathLike) -> list[Path]:
    """The file in ``other_root`` at each entry's relative path (any image suffix), e.g. a noisy copy's masks.

    Raises:
        LayoutError: naming the first few entries that have no counterpart.
    """
    other_root = Path(other_root)
    if not other_root.is_dir():
        raise FileMissingError(f"{other_root}: label folder does not exist")
    found, missing = [], []
    for e in entries:
        folder = other_root / e.rel.parent
        candidates = sorted(folder.glob(f"{_glob_escape(e.rel.stem)}.*")) if folder.is_dir() else []
        candidates = [p for p in candidates if p.stem == e.rel.stem]
        if not candidates:
            missing.append(str(other_root / e.rel.with_suffix(".png")))
        else:
            found.append(candidates[0])
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise LayoutError(f"{other_root}: no mask for {', '.join(missing[:3])}{more}")
    return found


def _glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[]" else c for c in text)


def stack_labels(paths: list[Path], *, mode: str = "auto", pad_value: int = 255) -> tuple[torch.Tensor, list[tuple]]:
    """Read masks into one ``(N, H, W)`` int64 batch, padding smaller masks with the ignore index.

    Padding with 255 keeps pixels that do not exist out of every count (noise transition matrices, densities with
    ignored pixels left out), so masks of different sizes can be analysed together.

    Returns:
        ``(labels, sizes)`` with each mask's ``(H, W)``.
    """
    arrays = [read_mask(p, mode=mode) for p in paths]
    sizes = [a.shape for a in arrays]
    if not arrays:
        return torch.zeros(0, 0, 0, dtype=torch.long), sizes
    h = max(s[0] for s in sizes)
    w = max(s[1] for s in sizes)
    out = np.full((len(arrays), h, w), pad_value, dtype=np.int64)
    for i, a in enumerate(arrays):
        out[i, : a.shape[0], : a.shape[1]] = a
    return torch.from_numpy(out), sizes
