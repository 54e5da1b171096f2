"""Every name a user types: the one place each family's names are written.

The registries (:data:`mstool.models.MODELS`, :data:`mstool.unsupervised.METHODS`, :data:`mstool.data.LAYOUTS`,
:data:`mstool.data.SYNTH_KINDS`, :data:`mstool.losses.LOSSES`) accept only the names declared here, in this order,
and the command line offers these tuples as its choices. This module imports nothing, so ``mstool --help`` stays
free of torch.

Example:
    >>> from mstool.data import synth_kinds
    >>> list(SYNTH_KINDS) == synth_kinds()
    True
"""

from __future__ import annotations

__all__ = [
    "LAYOUTS", "LAYOUT_CHOICES", "SYNTH_KINDS", "MODELS", "LOSSES", "UNSUPERVISED_METHODS", "FOREGROUND_RULES",
    "MASK_MODES", "MASK_FORMATS", "PRESETS", "NOISE_MODES", "KERNELS", "EXECUTORS",
]

LAYOUTS = ("paper", "voc", "cellpose", "cityscapes")
"""Dataset folder layouts, in the order ``auto`` tries them (:func:`mstool.data.discover_layout`)."""

LAYOUT_CHOICES = ("auto", *LAYOUTS)
"""What ``--layout`` accepts: ``auto`` (detect) or a layout."""

SYNTH_KINDS = ("er", "mito", "nuc", "shapes", "em")
"""Built-in synthetic microscopy kinds (:func:`mstool.data.synthesize`)."""

MODELS = ("unet", "deeplabv3plus", "hrnet")
"""Segmentation networks (:func:`mstool.models.build_model`)."""

LOSSES = ("bce", "ce", "soft_iou", "dmi", "dmi+iou")
"""Training losses (:func:`mstool.losses.make_loss`); a training config also takes ``auto``."""

UNSUPERVISED_METHODS = ("otsu", "minerror", "multiotsu", "local", "kmeans", "gmm", "dfc", "igtt")
"""Unsupervised methods (:data:`mstool.unsupervised.METHODS`)."""

FOREGROUND_RULES = ("auto", "bright", "dark")
"""Which intensity side is foreground (:func:`mstool.unsupervised.choose_foreground`)."""

MASK_MODES = ("auto", "binary", "instance", "multiclass", "cityscapes")
"""How a mask file is read (:func:`mstool.io.read_mask`)."""

MASK_FORMATS = ("png", "tif")
"""Files a segmentation's masks are written as."""

PRESETS = ("quick", "paper")
"""Training presets (:data:`mstool.engine.PRESETS`)."""

NOISE_MODES = ("offline", "online")
"""``offline``: one noisy draw per image, made once before training; ``online``: a fresh draw every epoch."""

KERNELS = ("box", "gaussian")
"""Parzen windows of a density (:func:`mstool.metastructure.density`)."""

EXECUTORS = ("local", "ray")
"""Where a comparison's cells run (:func:`mstool.compare.run_suite`): this process, or a Ray cluster."""

