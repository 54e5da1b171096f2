"""EMS, the paper's Extraction of Meta-Structure: skeletonise, jitter, sample.

Legend: N batch · H, W pixels.
"""

from __future__ import annotations

import torch

from .._check import check_range
from ..labels import LabelSpec, apply_spec, parse_spec

__all__ = ["EMS_DEFAULT", "ems_spec", "ems"]

EMS_DEFAULT = "skeleton+shift:1+sample:0.1"
"""The paper's EMS with its defaults: 1-px skeleton, jitter radius 1, keep 10% of the pixels."""


def ems_spec(shift: int = 1, keep: float = 0.1) -> LabelSpec:
    """The EMS label spec ``skeleton+shift:{shift}+sample:{keep}``.

    Example:
        >>> str(ems_spec())
        'skeleton+shift:1+sample:0.1'
    """
    check_range(keep, "keep", 0, 1)
    return parse_spec(f"skeleton+shift:{int(shift)}+sample:{keep:g}")


def ems(
    labels: torch.Tensor,
    *,
    shift: int = 1,
    keep: float = 0.1,
    generator: torch.Generator | None = None,
    num_classes: int | None = None,
) -> torch.Tensor:
    """Extract the meta-structure of a batch of labels: skeletonise, jitter every pixel, keep a random fraction.

    The skeleton keeps where objects are and drops how wide they are; the jitter (every skeleton pixel moved by an
    independent offset in ``[-shift, shift]^2``) and the sampling (exactly ``ceil(keep * count)`` pixels kept per
    image and class) randomise the label without moving its spatial density, which is what a network learns from.
    The whole batch is one pass of each step, on the labels' device.

    Args:
        labels: ``(N, H, W)`` int64, classes ``0..K-1``, 255 = ignore.
        shift: jitter radius in pixels (paper: 1).
        keep: fraction of skeleton pixels kept (paper: 0.1).
        generator: source of randomness.
        num_classes: number of classes (default: from the labels).

    Returns:
        ``(N, H, W)`` int64 labels: sparse foreground on background.

    References:
        Luo, Liu, Guo, Yang, arXiv 2205.00160 (2022), the EMS step of iGTT.

    Example:
        >>> lab = torch.zeros(1, 32, 32, dtype=torch.long)
        >>> lab[:, 8:24, 8:24] = 1
        >>> out = ems(lab, generator=torch.Generator().manual_seed(0))
        >>> bool(out.sum() < lab.sum() * 0.1)
        True
    """
    return apply_spec(labels, ems_spec(shift, keep), generator=generator, num_classes=num_classes)
