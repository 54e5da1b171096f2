"""Validate a dataset folder: counts, sizes, dtypes, class content per split, and every problem found."""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from .. import IGNORE_INDEX
from .._fs import atomic_path, check_output_file
from ..errors import MstoolError
from ..io import check_pair, read_image, read_mask
from ._layouts import Layout, discover_layout

__all__ = ["SplitReport", "DatasetReport", "check_dataset"]


@dataclass
class SplitReport:
    """What one split holds. ``foreground`` is the mean over images of the fraction of labelled, non-background
    pixels; ``class_pixels`` counts pixels per mask value over the split (255 = ignore)."""

    split: str
    images: int = 0
    labelled: int = 0
    sizes: Counter = field(default_factory=Counter)
    dtypes: Counter = field(default_factory=Counter)
    channels: Counter = field(default_factory=Counter)
    class_pixels: Counter = field(default_factory=Counter)
    foreground: float = float("nan")

    def as_dict(self) -> dict:
        return {
            "split": self.split,
            "images": self.images,
            "labelled": self.labelled,
            "sizes": {f"{h}x{w}": c for (h, w), c in sorted(self.sizes.items())},
            "dtypes": dict(self.dtypes),
            "channels": dict(self.channels),
            "class_pixels": {int(k): int(v) for k, v in sorted(self.class_pixels.items())},
            "foreground_fraction": None if np.isnan(self.foreground) else round(self.foreground, 6),
        }


@dataclass
class DatasetReport:
    """The result of :func:`check_dataset`; ``ok`` is True when no problem was found. ``notes`` are things to look
    at that may be intended (an unlabelled split, class values that never occur): they do not make it not ok."""

    root: str
    layout: str
    splits: list[SplitReport]
    problems: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict:
        return {"root": self.root, "layout": self.layout, "ok": self.ok,
                "splits": [s.as_dict() for s in self.splits], "problems": list(self.problems),
                "notes": list(self.notes)}


def check_dataset(root: str | os.PathLike, layout: str = "auto", *, mask_mode: str | None = None,
                  mask_suffix: str = "_masks", json_path: str | os.PathLike | None = None,
                  overwrite: bool = False) -> DatasetReport:
    """Read every image and mask of a dataset folder and report what it holds and what is wrong.

    Unlike the Dataset, which stops at the first bad file, this reads everything and collects each problem
    (unpaired files, unreadable or truncated files, size mismatches, float or negative masks, masks saved as
    lossy JPEG) as one line naming the file, and notes on what may be intended: a split without masks, class values
    that leave classes below them empty (a stray value gives the network that many outputs). An unusable root
    (missing, no layout) still raises. With ``json_path`` the report is also written there as JSON (the file is
    checked before anything is read, and replaced only with ``overwrite``).

    Example:
        >>> from mstool.data import write_synthetic_dataset
        >>> root = write_synthetic_dataset("nuc", "nuc", n=3, size=32, seed=0)
        >>> report = check_dataset(root)
        >>> report.layout, report.ok, [s.images for s in report.splits]
        ('paper', True, [1, 1, 1])
    """
    if json_path is not None:
        check_output_file(json_path, overwrite=overwrite, inputs=[root], suffixes=(".json",))
    found = discover_layout(root, layout, mask_suffix=mask_suffix)
    mode = found.mask_mode if mask_mode is None else mask_mode
    problems: list[str] = []
    reports = []
    for split in found.splits:
        samples, split_problems = found.scan(split)
        problems.extend(split_problems)
        rep = SplitReport(split)
        fg = []
        for s in samples:
            try:
                image = read_image(s.image)
            except MstoolError as exc:
                problems.append(str(exc))
                continue
            rep.images += 1
            rep.sizes[image.shape[:2]] += 1
            rep.dtypes[str(image.dtype)] += 1
            rep.channels[1 if image.ndim == 2 else image.shape[2]] += 1
            if s.mask is None:
                continue
            try:
                mask = read_mask(s.mask, mode=mode)
                check_pair(image, mask, s.image, s.mask)
            except MstoolError as exc:
                problems.append(str(exc))
                continue
            rep.labelled += 1
            values, counts = np.unique(mask, return_counts=True)
            rep.class_pixels.update(dict(zip(values.tolist(), counts.tolist())))
            labelled = mask != IGNORE_INDEX
            fg.append(float((labelled & (mask > 0)).sum() / max(int(labelled.sum()), 1)))
        if fg:
            rep.foreground = float(np.mean(fg))
        reports.append(rep)
    jpeg = [s.mask for split in found.splits for s in found.scan(split)[0]
            if s.mask is not None and s.mask.suffix.lower() in _LOSSY]
    if jpeg:
        problems.append(f"{jpeg[0]}: {len(jpeg)} mask(s) saved as JPEG, whose compression changes label values along "
                        "every edge (the foreground and class counts above are off); save masks as PNG or TIFF")
    report = DatasetReport(str(found.root), found.kind, reports, problems, _notes(found, reports))
    if json_path is not None:
        with atomic_path(json_path) as tmp:
            tmp.write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    return report


_LOSSY = (".jpg", ".jpeg")


def _notes(found: Layout, reports: list[SplitReport]) -> list[str]:
    """Unlabelled splits (with the folders a paper-layout split does hold) and class values with empty classes
    below them."""
    notes = []
    for rep in reports:
        if rep.images and not rep.labelled:
            where = found.root / rep.split
            others = sorted(p.name for p in where.iterdir() if p.is_dir() and p.name != "images") \
                if found.kind == "paper" and where.is_dir() else []
            hint = (f"; the paper layout reads masks from {rep.split}/labels/, this split holds "
                    f"{', '.join(o + '/' for o in others)}") if others else ""
            notes.append(f"split {rep.split!r}: {rep.images} images and no masks: they are unlabelled{hint}")
    empty = empty_classes_note({int(v) for rep in reports for v in rep.class_pixels})
    return notes + ([empty] if empty else [])


def empty_classes_note(values: set[int]) -> str | None:
    """A note when class values (255 = ignore left out) leave classes below the largest empty, else ``None``.

    Example:
        >>> empty_classes_note({0, 1, 2, 30, 255})[:50]
        'mask values go up to 30 but classes 3-29 never occ'
    """
    values = sorted(v for v in values if v != IGNORE_INDEX)
    empty = sorted(set(range(values[-1] + 1)) - set(values)) if values and values[-1] >= 2 else []
    if not empty:
        return None
    run = len(empty) > 3 and empty[-1] - empty[0] + 1 == len(empty)
    shown = f"{empty[0]}-{empty[-1]}" if run else ", ".join(map(str, empty[:8])) + (" ..." if len(empty) > 8 else "")
    return (f"mask values go up to {values[-1]} but classes {shown} never occur: a network trained on them gets "
            f"{values[-1] + 1} outputs; check for a stray value")
