"""Checks for pictures the library writes: a PNG that exists may still be empty, blank or one flat colour."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def assert_picture_has_content(path: str | Path, *, min_side: int = 64, min_colours: int = 8,
                               min_ink: float = 0.02) -> np.ndarray:
    """Assert that ``path`` is a readable picture with something drawn on it; return it as ``(H, W, 3)`` uint8.

    Drawn means: both sides at least ``min_side`` pixels, at least ``min_colours`` distinct colours, and at
    least a fraction ``min_ink`` of the pixels differ from the most common colour (the figure's background).
    """
    path = Path(path)
    assert path.is_file(), f"{path}: no picture was written"
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"))
    h, w = rgb.shape[:2]
    assert min(h, w) >= min_side, f"{path}: {w}x{h} pixels, smaller than {min_side} on a side"
    flat = rgb.reshape(-1, 3)
    colours, counts = np.unique(flat, axis=0, return_counts=True)
    assert len(colours) >= min_colours, f"{path}: only {len(colours)} colour(s); nothing seems drawn"
    ink = 1 - counts.max() / len(flat)
    assert ink >= min_ink, f"{path}: {ink:.1%} of the pixels differ from the background colour (< {min_ink:.0%})"
    return rgb
