"""Read and write label masks: binary, instance and multi-class (PASCAL VOC palette, 255 = ignore), and
Cityscapes ``labelIds`` masks mapped to the 19 train ids.

Legend: H, W pixels.

Masks come back as ``(H, W)`` int64 labels: binary 0 background / 1 foreground, or class indices
``0..K-1``; 255 is the ignore index (:data:`mstool.IGNORE_INDEX`) in both.
"""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path

import numpy as np
import tifffile
import torch
from PIL import Image

from .. import names
from .._check import check_in
from .._fs import atomic_path
from ..errors import DataError, DTypeError, MstoolWarning, ParameterError, ShapeError
from .images import _read_pixels

__all__ = ["MASK_MODES", "CITYSCAPES_CLASSES", "read_mask", "write_mask", "voc_palette", "check_pair"]

MASK_MODES = names.MASK_MODES
"""How :func:`read_mask` interprets the stored values."""

# mstool.IGNORE_INDEX (a test keeps them equal); a literal keeps this floor free of the top-level package
_IGNORE = 255

CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation", "terrain",
    "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)
"""The 19 Cityscapes evaluation classes: class ``k`` is train id ``k``, as ``read_mask(mode="cityscapes")`` gives."""

# the labelId of each train id 0..18, from the official table (cityscapesScripts, helpers/labels.py); every other
# labelId (void, parking, rail track, guard rail, bridge, tunnel, polegroup, caravan, trailer; license plate -1)
# is ignore there, and anything outside 0..33 is no Cityscapes labelId at all
_CITYSCAPES_LABEL_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)
_CITYSCAPES_MAX_ID = 33


@functools.lru_cache(maxsize=1)
def _cityscapes_lookup() -> np.ndarray:
    """``(34,)`` int64: the train id (or 255) of each labelId 0..33."""
    lut = np.full(_CITYSCAPES_MAX_ID + 1, _IGNORE, dtype=np.int64)
    lut[list(_CITYSCAPES_LABEL_IDS)] = np.arange(len(_CITYSCAPES_LABEL_IDS))
    lut.flags.writeable = False
    return lut


def _cityscapes_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Map ``(H, W)`` Cityscapes labelIds to train ids 0..18; every other value (-1, 34, 255, ...) -> 255."""
    known = (label_ids >= 0) & (label_ids <= _CITYSCAPES_MAX_ID)
    return np.where(known, _cityscapes_lookup()[np.clip(label_ids, 0, _CITYSCAPES_MAX_ID)], _IGNORE)


@functools.lru_cache(maxsize=1)
def _voc_palette() -> np.ndarray:
    idx = np.arange(256)
    cmap = np.zeros((256, 3), dtype=np.int64)
    # each label spreads its bits over the three channels, three bits at a time, from the top bit down
    for bit in range(8):
        for channel in range(3):
            cmap[:, channel] |= ((idx >> (3 * bit + channel)) & 1) << (7 - bit)
    cmap = cmap.astype(np.uint8)
    cmap.flags.writeable = False
    return cmap


def voc_palette() -> np.ndarray:
    """The PASCAL VOC colour map: the colour of label ``i`` is row ``i``.

    Bits 0, 1, 2 of the label set the top bit of red, green, blue; bits 3, 4, 5 the next bit, and so on.

    Returns:
        ``(256, 3)`` uint8 array (a fresh copy).

    References:
        Everingham et al., "The PASCAL Visual Object Classes Challenge", VOCdevkit ``labelcolormap``.

    Example:
        >>> voc_palette()[[0, 1, 2, 15, 255]].tolist()
        [[0, 0, 0], [128, 0, 0], [0, 128, 0], [192, 128, 128], [224, 224, 192]]
    """
    return _voc_palette().copy()


def read_mask(path: str | os.PathLike, *, mode: str = "auto", page: int | None = None) -> np.ndarray:
    """Read a mask file as ``(H, W)`` int64 labels.

    Storage first: a palette (mode ``P``) PNG gives its indices; an RGB mask whose colours all belong to
    the PASCAL VOC palette is mapped back to indices (both count as *palette masks*); an RGB mask with
    equal channels is read as gray; any other RGB mask is an error. Then ``mode`` decides:

    ``"multiclass"``
        values are class indices and are kept as they are; 255 = ignore (PASCAL VOC).
    ``"instance"``
        values are object ids: every value > 0 is foreground -> ``{0, 1}``.
    ``"binary"``
        ``{0, 1}``, ``{0, 255}`` and ``{0, v}`` masks -> ``{0, 1}``; a ``{0, 1, 255}`` mask keeps 255 as
        ignore (also in palette masks). Any other mask is refused: binarising it would silently turn object
        ids or class indices into foreground.
    ``"cityscapes"``
        values are Cityscapes labelIds (``*_gtFine_labelIds.png``): the 19 evaluation classes become train ids
        0..18 (road 7 -> 0, ..., car 26 -> 13, ..., bicycle 33 -> 18; names in :data:`CITYSCAPES_CLASSES`) and
        every other value -> 255 (ignore): the void and unevaluated labelIds, license plate's -1 and anything
        outside 0..33. Masks already holding train ids (``*_labelTrainIds.png``) are read with ``"multiclass"``.
    ``"auto"`` (default)
        palette masks -> ``"multiclass"``; binary masks as in ``"binary"``; other gray masks are read as object
        ids (``"instance"``). When their values do not look like object ids (one value covers separate regions,
        as class indices do) a :class:`~mstool.errors.MstoolWarning` names the file: pass
        ``mode="multiclass"`` for class indices, ``mode="instance"`` to read them as objects without a warning.

    Args:
        path: mask file (``.tif``, ``.tiff``, ``.png``; ``.jpg`` reads but its compression blurs labels).
        mode: one of :data:`MASK_MODES`.
        page: page of a multi-page TIFF.

    Returns:
        ``(H, W)`` int64 array.

    Raises:
        FileMissingError, FileReadError: as :func:`~mstool.io.read_image`.
        DataError: non-integer values, negative values (except in ``"cityscapes"``), RGB colours outside the VOC
            palette, a multi-page TIFF without ``page``, a mask that is not binary in ``"binary"`` mode.
        ParameterError: an unknown ``mode``.

    Example:
        >>> import tempfile
        >>> labels = np.array([[0, 1, 2], [255, 2, 0]])
        >>> with tempfile.TemporaryDirectory() as d:
        ...     write_mask(Path(d) / "m.png", labels)
        ...     read_mask(Path(d) / "m.png").tolist()
        ...     read_mask(Path(d) / "m.png", mode="instance").tolist()
        [[0, 1, 2], [255, 2, 0]]
        [[0, 1, 1], [1, 1, 0]]
        >>> with tempfile.TemporaryDirectory() as d:  # Cityscapes labelIds: road, car, unlabeled, parking
        ...     write_mask(Path(d) / "c.png", np.array([[7, 26], [0, 9]]))
        ...     read_mask(Path(d) / "c.png", mode="cityscapes").tolist()
        [[0, 13], [255, 255]]
    """
    check_in(mode, "mode", MASK_MODES)
    p = Path(path)
    arr, palette = _read_pixels(p, page=page, keep_palette=True)
    if arr.ndim == 3:
        arr, palette = _rgb_to_labels(arr, p)
    labels = _integer_labels(arr, p, negative_ok=mode == "cityscapes")
    if mode == "cityscapes":
        return _cityscapes_train_ids(labels)
    if mode == "multiclass" or (mode == "auto" and palette):
        return labels
    if mode == "instance":
        return (labels > 0).astype(np.int64)
    return _binarize(labels, palette, p, strict=mode == "binary")


def _rgb_to_labels(rgb: np.ndarray, p: Path) -> tuple[np.ndarray, bool]:
    """Map VOC colours to indices (palette mask), or take an equal-channel RGB mask as gray."""
    if rgb.dtype == np.uint8:
        code = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
        pal = _voc_palette().astype(np.int64)
        pal_code = (pal[:, 0] << 16) | (pal[:, 1] << 8) | pal[:, 2]
        colours, inverse = np.unique(code, return_inverse=True)
        lookup = {code: i for i, code in enumerate(pal_code.tolist())}
        if all(c in lookup for c in colours.tolist()):
            index_of = np.array([lookup[c] for c in colours.tolist()], dtype=np.int64)
            return index_of[inverse.reshape(code.shape)], True
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
        return rgb[..., 0], False
    raise DataError(f"{p}: RGB mask with colours outside the PASCAL VOC palette; save masks as gray or "
                    "palette (indexed) images, or with VOC colours")


def _integer_labels(arr: np.ndarray, p: Path, *, negative_ok: bool = False) -> np.ndarray:
    if arr.dtype == np.bool_:
        return arr.astype(np.int64)
    if np.issubdtype(arr.dtype, np.floating):
        bad = ~np.isfinite(arr) | (np.round(arr) != arr)
        if bad.any():
            example = arr[bad].flat[0]
            raise DataError(f"{p}: mask has non-integer values (e.g. {example:g}); masks hold integer labels")
    elif not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"{p}: mask has {arr.dtype} values; masks hold integer labels")
    if arr.size and arr.min() < 0 and not negative_ok:
        raise DataError(f"{p}: mask has negative values (minimum {arr.min():g}); labels must be >= 0")
    return arr.astype(np.int64)


def _binarize(labels: np.ndarray, palette: bool, p: Path, *, strict: bool) -> np.ndarray:
    values = set(np.unique(labels).tolist())
    if palette:  # 255 is ignore in palette masks
        if len(values - {0, _IGNORE}) <= 1:
            return np.where(labels == _IGNORE, _IGNORE, labels > 0).astype(np.int64)
    elif len(values - {0}) <= 1:  # {0}, {0, 1}, {0, 255} or a binary mask stored with another foreground value
        return (labels > 0).astype(np.int64)
    elif values == {0, 1, _IGNORE}:
        return labels
    values = np.unique(labels)
    foreground = values[values > 0]
    shown = _few_values(values)
    if strict or palette:
        # a palette mask holds class indices; binarising them is a choice the caller must make
        raise DataError(f"{p}: mask values {shown} are not binary (0/1 or 0/255); read them as object ids "
                        "(every value > 0 is foreground) with --mask-mode instance (mode='instance'), or as class "
                        "indices with --mask-mode multiclass")
    if _separate_regions(labels, len(foreground)):
        # 255 among other values is most often "not labelled" drawn beside a wrong foreground value
        unlabelled = (" 255 is an object here too: only a mask of 0, 1 and 255 keeps 255 as not labelled;"
                      if _IGNORE in values else "")
        warnings.warn(f"{p}: mask values {shown} are read as object ids (every value > 0 is foreground: "
                      f"{float((labels > 0).mean()):.0%} of the mask), but a value covers separate regions as class "
                      f"indices do;{unlabelled} pass --mask-mode multiclass (mode='multiclass') if they are classes, "
                      "or --mask-mode instance to read them as objects without this warning", MstoolWarning,
                      stacklevel=3)
    return (labels > 0).astype(np.int64)


def _few_values(values: np.ndarray, shown: int = 6) -> str:
    listed = ", ".join(str(v) for v in values[:shown].tolist())
    return listed + (f", ... ({len(values)} values)" if len(values) > shown else "")


def _separate_regions(labels: np.ndarray, objects: int) -> bool:
    """Whether some value > 0 covers more than one 8-connected region (object ids cover one region each)."""
    from skimage.measure import label

    return int(label(labels, background=0, connectivity=2).max()) > objects


def write_mask(path: str | os.PathLike, mask: np.ndarray | torch.Tensor) -> None:
    """Write ``(H, W)`` integer labels atomically, so that :func:`read_mask` gives them back.

    - ``.png``, values within ``{0, 1}``: 8-bit gray 0/255, viewable in any viewer.
    - ``.png``, other values (up to 255): palette PNG with the VOC colours; 255 = ignore stays exact.
    - ``.tif``/``.tiff``: raw values as uint8, uint16 or uint32, whichever holds the maximum.

    Round trips: binary masks (any format, ``mode="auto"``) and index masks with 255 ignore (PNG,
    ``mode="auto"``) read back equal. Gray TIFF index masks read back with ``mode="multiclass"``.

    Args:
        path: ``.png``, ``.tif`` or ``.tiff`` file; its folder is created.
        mask: ``(H, W)`` integer or bool numpy array or torch tensor, values >= 0.

    Raises:
        ShapeError: not ``(H, W)``.
        DTypeError: neither a numpy array nor a tensor.
        ParameterError: a float dtype, negative values, values > 255 for PNG, or another suffix
            (JPEG is lossy and would change labels).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     write_mask(Path(d) / "m.png", torch.tensor([[0, 1], [1, 0]]))
        ...     Image.open(Path(d) / "m.png").getextrema()
        (0, 255)
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".png", ".tif", ".tiff"):
        raise ParameterError(f"{p}: masks are written as .png, .tif or .tiff (lossless); got {p.suffix!r}")
    arr = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else mask
    if not isinstance(arr, np.ndarray):
        raise DTypeError(f"`mask` must be a numpy array or torch tensor (H, W); got {type(mask).__name__}")
    if arr.ndim != 2:
        raise ShapeError(f"`mask` must be (H, W); got {arr.shape}")
    if arr.dtype != np.bool_ and not np.issubdtype(arr.dtype, np.integer):
        raise ParameterError(f"`mask` must hold integer labels; got {arr.dtype}")
    low = int(arr.min()) if arr.size else 0
    high = int(arr.max()) if arr.size else 0
    if low < 0:
        raise ParameterError(f"`mask` values must be >= 0; got a minimum of {low}")
    if suffix == ".png" and high > 255:
        raise ParameterError(f"{p}: PNG masks hold values up to 255; got a maximum of {high} (write a .tif)")
    with atomic_path(p) as tmp:
        if suffix != ".png":
            dtype = np.uint8 if high <= 255 else np.uint16 if high <= 65535 else np.uint32
            tifffile.imwrite(tmp, arr.astype(dtype), photometric="minisblack", compression="zlib")
        elif high <= 1:
            Image.fromarray(arr.astype(np.uint8) * 255).save(tmp, format="PNG")
        else:
            im = Image.fromarray(arr.astype(np.uint8))
            im.putpalette(_voc_palette().tobytes())
            im.save(tmp, format="PNG")


def check_pair(image: np.ndarray | torch.Tensor, mask: np.ndarray | torch.Tensor,
               image_path: str | os.PathLike, mask_path: str | os.PathLike) -> None:
    """Check that a mask has its image's height and width.

    Args:
        image: numpy ``(H, W)`` / ``(H, W, C)``, or a tensor ``(..., H, W)``.
        mask: numpy or tensor ``(H, W)``.
        image_path, mask_path: the files, for the message.

    Raises:
        DataError: "<mask path>: mask is 300 x 200 but its image <image path> is 256 x 256" (height x width).

    Example:
        >>> check_pair(np.zeros((4, 5, 3)), np.zeros((4, 5)), "a.png", "a_mask.png")
        >>> image, mask = np.zeros((4, 5)), np.zeros((5, 4))
        >>> check_pair(image, mask, "a.png", "a_mask.png")  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        ...
        mstool.errors.DataError: a_mask.png: mask is 5 x 4 but its image a.png is 4 x 5 (height x width)
    """
    ih, iw = tuple(image.shape[-2:]) if isinstance(image, torch.Tensor) else tuple(image.shape[:2])
    mh, mw = tuple(mask.shape[-2:])
    if (ih, iw) != (mh, mw):
        raise DataError(f"{mask_path}: mask is {mh} x {mw} but its image {image_path} is {ih} x {iw} "
                        "(height x width)")
