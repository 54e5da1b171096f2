"""Segmentation losses: BCE, cross-entropy with ignore, soft IoU, DMI and DMI + IoU, and a registry.

Legend: N batch · C channels · K classes · H, W pixels.

Functions do the maths (``bce_loss``, ``cross_entropy_loss`` take logits; ``soft_iou_loss``, ``dmi_loss``,
``dmi_iou_loss`` take probabilities); each has a thin ``nn.Module`` twin. :func:`make_loss` builds any
registered loss (``LOSSES``) as a module that takes raw logits ``(N, C, H, W)`` and targets ``(N, H, W)``
with ignore index 255.
"""

from ._losses import (
    LOSSES,
    BCELoss,
    CrossEntropyLoss,
    DMIIoULoss,
    DMILoss,
    LossFromLogits,
    SoftIoULoss,
    bce_loss,
    cross_entropy_loss,
    dmi_iou_loss,
    dmi_loss,
    make_loss,
    soft_iou_loss,
)

__all__ = [
    "bce_loss",
    "cross_entropy_loss",
    "soft_iou_loss",
    "dmi_loss",
    "dmi_iou_loss",
    "BCELoss",
    "CrossEntropyLoss",
    "SoftIoULoss",
    "DMILoss",
    "DMIIoULoss",
    "LossFromLogits",
    "LOSSES",
    "make_loss",
]
