"""Segmentation networks (pure torch, no downloaded weights) and their registry.

Legend: N batch · C channels · K classes · H, W pixels.

Every network maps images ``(N, in_channels, H, W)`` of any size to logits ``(N, num_classes, H, W)``
(``num_classes = 1``: one sigmoid foreground channel; ``K >= 2``: softmax classes) and exposes
``features(x)``, the last decoder features before the 1x1 classifier (``feature_channels`` channels at
``1 / feature_stride`` of the input resolution), for linear probes of feature quality.
Build them by name with :func:`build_model`; ``MODELS`` lists the names.
"""

from ._deeplab import DeepLabV3Plus
from ._hrnet import HRNet
from ._registry import MODELS, build_model, count_parameters, model_options
from ._unet import UNet

__all__ = ["UNet", "DeepLabV3Plus", "HRNet", "MODELS", "build_model", "count_parameters", "model_options"]
