"""The torch Dataset over a dataset folder, and batch augmentation on the device.

Legend: N batch · C channels · H, W pixels.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from .._check import check_int, check_shape
from ..device import spawn_seed
from ..errors import LayoutError, ParameterError
from ..io import check_pair, normalize_image, read_image, read_mask
from ._layouts import Layout, Sample, discover_layout

__all__ = ["SegmentationDataset", "RandomCropFlip", "random_crop_flip"]


class SegmentationDataset(torch.utils.data.Dataset):
    """Images and masks of one split of a dataset folder.

    Each item is a dict ``{"image": (C, H, W) float32, "mask": (H, W) int64, "name": str}``; images are scaled by
    their dtype's maximum and z-scored per image (the paper's normalisation); masks hold classes ``0..K-1`` with
    255 = ignore (binary: 0 background, 1 foreground). Unlabelled splits give ``"mask": None`` only when
    ``require_masks=False``.

    Args:
        root: a dataset folder, or a :class:`~mstool.data.Layout` already discovered.
        split: ``train``, ``val``, ``test`` (or ``all`` for a flat cellpose folder, ``trainval`` for VOC).
        layout: ``auto`` or a layout name (ignored when ``root`` is a Layout).
        mask_mode: how masks are read (see :func:`mstool.io.read_mask`); ``None`` takes the layout's default
            (``multiclass`` for VOC, ``auto`` otherwise).
        channels: channels of the returned image (1 converts RGB to luminance); ``None`` keeps the file's.
        mask_suffix: the cellpose mask suffix.
        require_masks: raise :class:`LayoutError` when the split has no masks.
        cache: keep loaded items in memory (small microscopy datasets are read once per run, not once per epoch).

    Example:
        >>> from mstool.data import write_synthetic_dataset
        >>> root = write_synthetic_dataset("er", "er", n=5, size=32, seed=0)
        >>> ds = SegmentationDataset(root, "train")
        >>> item = ds[0]
        >>> tuple(item["image"].shape), tuple(item["mask"].shape), item["mask"].dtype
        ((1, 32, 32), (32, 32), torch.int64)
    """

    def __init__(
        self,
        root: str | os.PathLike | Layout,
        split: str = "train",
        *,
        layout: str = "auto",
        mask_mode: str | None = None,
        channels: int | None = 1,
        mask_suffix: str = "_masks",
        require_masks: bool = True,
        cache: bool = False,
    ):
        self.layout = root if isinstance(root, Layout) else discover_layout(root, layout, mask_suffix=mask_suffix)
        self.split = split
        self.samples: list[Sample] = self.layout.samples(split)
        self.mask_mode = self.layout.mask_mode if mask_mode is None else mask_mode
        self.channels = channels
        self.has_masks = all(s.mask is not None for s in self.samples)
        if require_masks and not self.has_masks:
            raise LayoutError(f"{self.layout.root}: split {split!r} has images without masks (labels/ folder missing?)")
        self._cache: dict[int, dict] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.samples]

    def __getitem__(self, index: int) -> dict:
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        sample = self.samples[index]
        raw = read_image(sample.image)
        image = normalize_image(raw, channels=self.channels)
        mask = None
        if sample.mask is not None:
            mask_np = read_mask(sample.mask, mode=self.mask_mode)
            check_pair(raw, mask_np, sample.image, sample.mask)
            mask = torch.from_numpy(mask_np)
        item = {"image": image, "mask": mask, "name": sample.name}
        if self._cache is not None:
            self._cache[index] = item
        return item


def random_crop_flip(
    images: torch.Tensor,
    masks: torch.Tensor,
    size: int | tuple[int, int] | None,
    *,
    flip: bool = True,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random crops and horizontal/vertical flips of a batch, run as kornia augmentations on the batch's device.

    The same crop and flips are applied to each image and its mask; masks are cropped by slicing, so class values
    (and 255 = ignore) stay exact. Kornia draws its parameters from torch's global generator, so the draw runs inside
    :func:`torch.random.fork_rng` seeded from ``generator``: the result depends only on ``generator`` and the
    caller's global random state is left untouched.

    Args:
        images: ``(N, C, H, W)`` float.
        masks: ``(N, H, W)`` integer labels.
        size: crop ``(h, w)`` or one int; ``None`` crops nothing. Must not exceed the image size.
        flip: also flip horizontally and vertically, each with probability 0.5.
        generator: the source of randomness.

    Returns:
        ``(images (N, C, h, w), masks (N, h, w))`` on the input's device, masks in the input's dtype.
    """
    check_shape(images, "images", "N C H W", dtype="float")
    check_shape(masks, "masks", "N H W", dtype="int")
    if images.shape[0] != masks.shape[0] or images.shape[-2:] != masks.shape[-2:]:
        raise ParameterError(
            f"`images` {tuple(images.shape)} and `masks` {tuple(masks.shape)} must have the same N, H and W"
        )
    crop = None if size is None else _crop_size(size)
    if crop is not None and (crop[0] > images.shape[-2] or crop[1] > images.shape[-1] or min(crop) < 1):
        raise ParameterError(
            f"crop `size` must be between 1 x 1 and the image size {images.shape[-2]} x {images.shape[-1]}; got "
            f"{crop[0]} x {crop[1]}"
        )
    if images.shape[0] == 0 or (crop is None and not flip):
        return images, masks
    import kornia.augmentation as K

    ops = ([K.RandomCrop(crop, cropping_mode="slice")] if crop is not None else [])
    if flip:
        ops += [K.RandomHorizontalFlip(), K.RandomVerticalFlip()]
    aug = K.AugmentationSequential(*ops, data_keys=["input", "mask"])
    seed = spawn_seed(generator)
    # manual_seed also seeds every CUDA device: fork them all so the caller's CUDA random state survives too
    cuda_devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(seed)
        out_images, out_masks = aug(images, masks.unsqueeze(1).to(images.dtype))
    return out_images, out_masks.squeeze(1).round().to(masks.dtype)


def _crop_size(size: int | tuple[int, int]) -> tuple[int, int]:
    """``size`` or ``(h, w)`` as two ints; the caller checks them against the images."""
    if isinstance(size, tuple | list):
        if len(size) != 2:
            raise ParameterError(f"crop `size` must be an integer or a pair (h, w); got {size!r}")
        return check_int(size[0], "size"), check_int(size[1], "size")
    side = check_int(size, "size")
    return side, side


class RandomCropFlip(nn.Module):
    """Module form of :func:`random_crop_flip`: stores the crop size and flip setting."""

    def __init__(self, size: int | tuple[int, int] | None, *, flip: bool = True):
        super().__init__()
        self.size = size
        self.flip = flip

    def forward(self, images, masks, generator: torch.Generator | None = None):
        return random_crop_flip(images, masks, self.size, flip=self.flip, generator=generator)
