"""Prediction: probability maps from a network, whole or in overlapping tiles blended with linear ramps.

Legend: N batch · C channels · K classes · H, W pixels · T tile side.

A network with one output channel gives the sigmoid foreground probability ``(N, 1, H, W)``; one with ``K >= 2``
channels gives the softmax ``(N, K, H, W)``. Networks of :mod:`mstool.models` accept any image size (they pad
to their multiple internally), so whole images need no padding here.
"""

from __future__ import annotations

import torch
from torch import nn

from .._check import check_int, check_shape
from ..device import resolve_device
from ..errors import ShapeError

__all__ = ["predict"]


def predict(
    model: nn.Module,
    images: torch.Tensor,
    *,
    batch_size: int = 8,
    tile: int | None = None,
    overlap: int | None = None,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Probability maps of a batch of images, in batches (and optionally tiles) of bounded memory.

    With ``tile``, each image is cut into ``tile x tile`` windows that overlap by at least ``overlap`` pixels
    (the last window of a row or column is shifted back to end at the image border); the windows' maps are
    blended with weights that ramp linearly from ``1 / (overlap + 1)`` at a window's inner edge to 1 at
    ``overlap`` pixels from it, and stay 1 along the image border. An image no larger than one tile is one
    window of weight 1, so its tiled map equals the untiled one.

    The model is run in eval mode without gradients; its training flag is restored afterwards.

    Args:
        model: a network mapping ``(B, C, h, w)`` to logits ``(B, K, h, w)``.
        images: ``(N, C, H, W)`` float images (on any device).
        batch_size: images (or tiles) per forward pass, ``>= 1``.
        tile: window side ``T >= 16``, or ``None`` to predict whole images.
        overlap: overlap of neighbouring windows in pixels, ``0 <= overlap < tile`` (``None``: ``tile // 4``).
        device: where the model runs (``None``: the device of the model's parameters); the result is returned
            on the device of ``images``.

    Returns:
        float32 ``(N, 1, H, W)`` foreground probability (one-channel model) or ``(N, K, H, W)`` softmax.

    Raises:
        ShapeError: ``images`` is not ``(N, C, H, W)``, or ``C`` differs from the model's ``in_channels``.
        DTypeError: ``images`` is not a float tensor.
        ParameterError: a bad ``batch_size``, ``tile`` or ``overlap``.

    Example:
        >>> from mstool.models import build_model
        >>> net = build_model("unet", options={"base": 4, "depth": 2}, generator=torch.Generator().manual_seed(0))
        >>> x = torch.randn(1, 1, 40, 40, generator=torch.Generator().manual_seed(1))
        >>> whole = predict(net, x)
        >>> tiled = predict(net, x, tile=24, overlap=8)
        >>> whole.shape, bool(((whole >= 0) & (whole <= 1)).all()), tiled.shape
        (torch.Size([1, 1, 40, 40]), True, torch.Size([1, 1, 40, 40]))
    """
    check_shape(images, "images", "N C H W", dtype="float")
    in_channels = getattr(model, "in_channels", None)
    if in_channels is not None and images.shape[1] != in_channels:
        raise ShapeError(f"`images` must have the model's {in_channels} channel(s); got {images.shape[1]} in "
                         f"({', '.join(map(str, images.shape))})")
    batch_size = check_int(batch_size, "batch_size", low=1)
    if tile is not None:
        tile = check_int(tile, "tile", low=16)
        overlap = tile // 4 if overlap is None else check_int(overlap, "overlap", low=0, high=tile - 1,
                                                                note=f"below tile = {tile}")
    dev = _model_device(model) if device is None else resolve_device(device)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            if tile is None:
                out = [_probs(model, images[i:i + batch_size].to(dev)).to(images.device)
                       for i in range(0, images.shape[0], batch_size)]
            else:
                out = [_predict_tiled(model, images[i:i + 1].to(dev), tile, overlap, batch_size).to(images.device)
                       for i in range(images.shape[0])]
    finally:
        model.train(was_training)
    if not out:
        k = _out_channels(model, images, dev)
        return images.new_zeros((0, k, *images.shape[-2:]), dtype=torch.float32)
    return torch.cat(out)


# -------------------------------------------------------------------------------------------- helpers
def _model_device(model: nn.Module) -> torch.device:
    param = next(iter(model.parameters()), None)
    return param.device if param is not None else torch.device("cpu")


def _probs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Sigmoid (one channel) or softmax probabilities of a batch, float32."""
    if x.device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    logits = model(x).float()
    return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)


def _out_channels(model: nn.Module, images: torch.Tensor, dev: torch.device) -> int:
    k = getattr(model, "num_classes", None)
    if isinstance(k, int):
        return k
    with torch.inference_mode():
        return int(model(torch.zeros(1, images.shape[1], 16, 16, device=dev)).shape[1])


def _starts(size: int, tile: int, overlap: int) -> list[int]:
    """Window starts along one axis: a stride of ``tile - overlap``, the last window ending at the border."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, tile - overlap))
    return starts + [size - tile]


def _ramp(start: int, length: int, size: int, overlap: int, device: torch.device) -> torch.Tensor:
    """Blending weights ``(length,)`` of one window: a linear ramp over ``overlap`` pixels at inner edges."""
    pos = torch.arange(length, device=device, dtype=torch.float32)
    w = torch.ones(length, device=device)
    if start > 0:
        w = torch.minimum(w, (pos + 1) / (overlap + 1))
    if start + length < size:
        w = torch.minimum(w, (length - pos) / (overlap + 1))
    return w


def _predict_tiled(model: nn.Module, image: torch.Tensor, tile: int, overlap: int, batch_size: int) -> torch.Tensor:
    """Blend the windows of one image ``(1, C, H, W)`` into ``(1, K, H, W)``."""
    _, _, h, w = image.shape
    th, tw = min(tile, h), min(tile, w)
    windows = [(y, x) for y in _starts(h, tile, overlap) for x in _starts(w, tile, overlap)]
    total: torch.Tensor | None = None
    weight = image.new_zeros((1, 1, h, w), dtype=torch.float32)
    for i in range(0, len(windows), batch_size):
        chunk = windows[i:i + batch_size]
        crops = torch.cat([image[..., y:y + th, x:x + tw] for y, x in chunk])
        probs = _probs(model, crops)
        if total is None:
            total = image.new_zeros((1, probs.shape[1], h, w), dtype=torch.float32)
        for (y, x), p in zip(chunk, probs, strict=True):
            wy = _ramp(y, th, h, overlap, image.device)
            wx = _ramp(x, tw, w, overlap, image.device)
            win = wy[:, None] * wx[None, :]
            total[0, :, y:y + th, x:x + tw] += p * win
            weight[0, :, y:y + th, x:x + tw] += win
    return total / weight

