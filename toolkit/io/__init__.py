"""File input and output: images, masks and score maps. All validation of files happens here.

Legend: C channels · H, W pixels.

- images: :func:`read_image` gives ``(H, W)`` / ``(H, W, 3)`` arrays in the file's dtype, :func:`load_image`
  gives ``(C, H, W)`` float32 z-scored tensors, :func:`write_image`, :func:`find_images`;
- masks: :func:`read_mask` gives ``(H, W)`` int64 labels (binary 0/1 or class indices, 255 = ignore),
  :func:`write_mask`, :func:`voc_palette`, :func:`check_pair`; Cityscapes labelIds are mapped to the 19 train ids
  (:data:`CITYSCAPES_CLASSES`) by ``mode="cityscapes"``;
- score maps: :func:`write_score_map` / :func:`read_score_map`, float32 TIFF or ``.npz``.

Every bad file raises an :class:`~mstool.errors.MstoolError` that names the file and the problem.
"""

from .images import IMAGE_SUFFIXES, find_images, image_size, load_image, normalize_image, read_image, write_image
from .maps import MAP_SUFFIXES, read_score_map, write_score_map
from .masks import CITYSCAPES_CLASSES, MASK_MODES, check_pair, read_mask, voc_palette, write_mask

__all__ = [
    "IMAGE_SUFFIXES",
    "image_size",
    "read_image",
    "normalize_image",
    "load_image",
    "write_image",
    "find_images",
    "MASK_MODES",
    "CITYSCAPES_CLASSES",
    "read_mask",
    "write_mask",
    "voc_palette",
    "check_pair",
    "MAP_SUFFIXES",
    "write_score_map",
    "read_score_map",
]
