"""The model registry, :func:`build_model` and :func:`count_parameters`.

Legend: N batch · C channels · K classes · H, W pixels.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from .. import names
from .._registry import Registry
from ..errors import ParameterError
from ._deeplab import DeepLabV3Plus
from ._hrnet import HRNet
from ._unet import UNet

__all__ = ["MODELS", "build_model", "count_parameters", "model_options"]

MODELS: Registry[type[nn.Module]] = Registry("model", declared=names.MODELS)
"""Model name -> class; the trainer, the CLI's ``--model`` choices and the comparison suite read it."""
MODELS.add("unet", UNet)
MODELS.add("deeplabv3plus", DeepLabV3Plus)
MODELS.add("hrnet", HRNet)

_NOT_OPTIONS = ("self", "in_channels", "num_classes", "generator")


def model_options(name: str) -> dict[str, object]:
    """The options a registered model accepts, with their defaults.

    Example:
        >>> model_options("unet")
        {'base': 64, 'depth': 4, 'norm': 'batch', 'dropout': 0.0}
    """
    params = inspect.signature(MODELS.get(name)).parameters
    return {k: p.default for k, p in params.items() if k not in _NOT_OPTIONS}


def build_model(
    name: str,
    *,
    in_channels: int = 1,
    num_classes: int = 1,
    options: dict[str, object] | None = None,
    generator: torch.Generator | None = None,
) -> nn.Module:
    """Build a registered network by name.

    Every model maps ``(N, in_channels, H, W)`` images of any size to logits ``(N, num_classes, H, W)`` and
    has ``features(x)`` (the last decoder features before the 1x1 classifier; channels in
    ``model.feature_channels``, stride in ``model.feature_stride``).

    Options per model (see :func:`model_options` and each class):

    - ``unet``: ``base=64``, ``depth=4``, ``norm="batch"``, ``dropout=0.0``;
    - ``deeplabv3plus``: ``width=32``, ``output_stride=16``, ``norm="batch"``;
    - ``hrnet``: ``width=16``, ``branches=4``, ``blocks=2``, ``norm="batch"``.

    ``norm`` is ``batch``, ``group`` or ``none`` for every model.

    Args:
        name: one of ``MODELS.names()``: ``unet``, ``deeplabv3plus``, ``hrnet``.
        in_channels: image channels.
        num_classes: output channels: 1 for a binary (sigmoid) map, ``K >= 2`` for softmax classes.
        options: model-specific settings; unknown keys are an error.
        generator: CPU generator for a reproducible initialisation (``None``: torch's global one).

    Raises:
        ParameterError: unknown model (lists the names), unknown option (lists the model's options) or an
            option value out of range.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> net = build_model("unet", options={"base": 8, "depth": 2}, generator=g)
        >>> net(torch.zeros(1, 1, 16, 16)).shape
        torch.Size([1, 1, 16, 16])
        >>> build_model("segformer")
        Traceback (most recent call last):
        ...
        mstool.errors.ParameterError: unknown model 'segformer'; choose one of: unet, deeplabv3plus, hrnet
    """
    cls = MODELS.get(name)
    options = dict(options or {})
    allowed = model_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ParameterError(f"model {name!r} has no option {unknown[0]!r}; "
                             f"its options are: {', '.join(allowed)}")
    return cls(in_channels, num_classes, generator=generator, **options)


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameter values (all of them, or only those with ``requires_grad``).

    Example:
        >>> count_parameters(nn.Conv2d(1, 8, 3))
        80
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
