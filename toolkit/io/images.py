"""Read, normalise, write and list image files (TIFF, PNG, JPEG).

Legend: C channels · H, W pixels.

Files are read as numpy arrays ``(H, W)`` or ``(H, W, 3)`` (RGB order) in the file's dtype; networks get
``(C, H, W)`` float32 tensors, z-scored per image and channel. Every failure names the file and the problem.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import tifffile
import torch
from PIL import Image, UnidentifiedImageError

from .._check import check_int
from .._fs import atomic_path
from ..errors import (
    DataError,
    DTypeError,
    FileMissingError,
    FileReadError,
    LayoutError,
    MstoolError,
    MstoolWarning,
    ParameterError,
    ShapeError,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "image_size",
    "read_image",
    "normalize_image",
    "load_image",
    "write_image",
    "find_images",
]

IMAGE_SUFFIXES: tuple[str, ...] = (".tif", ".tiff", ".png", ".jpg", ".jpeg")
"""Image file suffixes mstool reads, lower-case; suffixes are compared case-insensitively."""

_TIFF = (".tif", ".tiff")
_JPEG = (".jpg", ".jpeg")
_SUFFIX_LIST = ", ".join(IMAGE_SUFFIXES)
# ITU-R BT.601 luma weights, the ones OpenCV and Pillow use for RGB -> gray.
_LUMA = (0.299, 0.587, 0.114)
# TIFF ExtraSamples values that mean alpha (associated, unassociated); other extra samples are data.
_ALPHA_SAMPLES = (1, 2)


def _existing_file(path: str | os.PathLike) -> Path:
    """Return ``path`` as a Path after checking that it is an existing file with a supported suffix."""
    p = Path(path)
    if not p.exists():
        raise FileMissingError(f"{p}: file not found")
    if p.is_dir():
        raise FileReadError(f"{p}: is a folder, not an image file")
    if p.suffix.lower() not in IMAGE_SUFFIXES:
        raise FileReadError(f"{p}: unsupported file type {p.suffix or '(no suffix)'!r}; "
                            f"supported: {_SUFFIX_LIST}")
    return p


def _read_pixels(path: str | os.PathLike, *, page: int | None = None,
                 keep_palette: bool = False) -> tuple[np.ndarray, bool]:
    """Decode one image plane as ``(H, W)`` or ``(H, W, 3)`` RGB in the file's dtype.

    Alpha is dropped, ``(H, W, 1)`` is squeezed, planar TIFF is made channel-last. With ``keep_palette`` a
    palette PNG gives its indices instead of colours. Returns the array and whether it came from a palette.
    """
    p = _existing_file(path)
    if page is not None:
        page = check_int(page, "page", note="or None")
    suffix = p.suffix.lower()
    try:
        if suffix in _TIFF:
            arr, palette = _read_tiff(p, page), False
        else:
            if page not in (None, 0):
                raise ParameterError(f"`page` must be 0 or None for {p} (a {suffix} file has 1 page); "
                                     f"got {page}")
            arr, palette = _read_pil_or_cv2(p, keep_palette)
    except MstoolError:
        raise
    except Exception as e:  # decoders raise anything from ValueError to zlib.error on a damaged file
        raise FileReadError(f"{p}: cannot read image ({type(e).__name__}: {e}); the file may be truncated "
                            "or not an image") from e
    return _channels_last(arr, p), palette


@contextlib.contextmanager
def _tifffile_log() -> Iterator[list[str]]:
    """What tifffile logs while a file is read, kept for the error message instead of printed: a damaged file
    would otherwise put a second line on stderr beside mstool's one."""
    logged: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            logged.append(record.getMessage())

    log = logging.getLogger("tifffile")
    handler, propagate = Keep(), log.propagate
    log.addHandler(handler)
    log.propagate = False
    try:
        yield logged
    finally:
        log.removeHandler(handler)
        log.propagate = propagate


def _read_tiff(p: Path, page: int | None) -> np.ndarray:
    with _tifffile_log() as logged, tifffile.TiffFile(p) as tf:
        pages = list(tf.pages)
        if len(pages) > 1:  # thumbnails stored as extra pages are not part of the image
            pages = [pg for pg in pages if not getattr(pg, "is_reduced", False)] or pages
        n = len(pages)
        if n == 0:
            why = f" ({logged[0].split('> ', 1)[-1]})" if logged else ""
            raise FileReadError(f"{p}: cannot read image: a TIFF file without a readable page{why}; the file may be "
                                "truncated or not an image")
        if page is None and n > 1:
            raise DataError(f"{p}: a TIFF stack of {n} pages, and mstool reads one image per file; save each page as "
                            f"its own file (mstool segment and prior estimate read one with --page K, Python with "
                            f"page=K, K in 0..{n - 1})")
        index = 0 if page is None else int(page)
        if not 0 <= index < n:
            raise ParameterError(f"`page` (--page) must be in [0, {n - 1}] for {p} ({n} pages); got {page}")
        pg = pages[index]
        try:
            arr = pg.asarray()
        except (ValueError, KeyError) as e:
            if "imagecodecs" not in str(e):
                raise
            arr = _read_tiff_with_pillow(p, index, e)
        samples = int(getattr(pg, "samplesperpixel", 1))
        extras = tuple(int(x) for x in getattr(pg, "extrasamples", ()) or ())
        planar = samples > 1 and int(getattr(pg, "planarconfig", 1)) == 2
    if planar and arr.ndim == 3 and arr.shape[0] == samples:
        arr = np.moveaxis(arr, 0, -1)
    if samples > 1 and arr.ndim == 3 and arr.shape[-1] == samples and extras:
        # keep the colour samples, drop alpha; unspecified extra samples are data and stay (then rejected)
        colour = samples - len(extras)
        if all(x in _ALPHA_SAMPLES for x in extras) and colour in (1, 3):
            arr = arr[..., :colour]
    return arr


def _read_tiff_with_pillow(p: Path, index: int, cause: Exception) -> np.ndarray:
    """Pillow decodes LZW and PackBits TIFFs, which tifffile leaves to the optional imagecodecs package."""
    try:
        with Image.open(p) as im:
            im.seek(index)
            im.load()
            return np.asarray(im).copy()
    except Exception:
        raise FileReadError(f"{p}: TIFF compression needs the imagecodecs package ({cause}); "
                            "install it with `pip install imagecodecs`") from cause


def _read_pil_or_cv2(p: Path, keep_palette: bool) -> tuple[np.ndarray, bool]:
    try:
        im = Image.open(p)
    except UnidentifiedImageError as e:
        raise FileReadError(f"{p}: not a readable {p.suffix.lower()} image") from e
    with im:
        mode = im.mode
        if mode in ("P", "PA") and keep_palette:
            im.load()
            idx = np.asarray(im)
            return (idx[..., 0] if idx.ndim == 3 else idx).copy(), True
        if p.suffix.lower() in _JPEG or mode in ("P", "PA", "1", "LA", "La", "CMYK", "YCbCr"):
            im.load()
            target = "RGB" if mode in ("P", "PA", "CMYK", "YCbCr", "RGBA", "RGB") else "L"
            return np.asarray(im.convert(target) if mode != target else im).copy(), False
    # PNG in gray/RGB(A), 8 or 16 bit: OpenCV keeps 16-bit colour, which Pillow would cut to 8 bits
    arr = cv2.imdecode(np.fromfile(p, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise FileReadError(f"{p}: cannot decode PNG; the file is truncated or corrupt")
    if arr.ndim == 3 and arr.shape[-1] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    elif arr.ndim == 3 and arr.shape[-1] == 4:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGB)
    return arr, False


def _channels_last(arr: np.ndarray, p: Path) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3 and arr.shape[-1] == 4:  # RGBA from Pillow's TIFF fallback
        arr = arr[..., :3]
    if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] == 3):
        return arr
    raise DataError(f"{p}: expected a gray (H, W) or RGB (H, W, 3) image; got an array of shape {arr.shape}")


def read_image(path: str | os.PathLike, *, page: int | None = None) -> np.ndarray:
    """Read an image file as ``(H, W)`` or ``(H, W, 3)`` RGB in the file's dtype.

    uint8, uint16, float32 and bool (1-bit TIFF) come back as stored; other integer and float dtypes
    (int16, uint32, float64, ...) are converted to float32. ``(H, W, 1)`` is squeezed, alpha is dropped,
    planar ``(3, H, W)`` TIFF becomes ``(H, W, 3)``, a palette PNG gives its RGB colours. JPEG orientation
    tags are not applied.

    Args:
        path: a ``.tif``, ``.tiff``, ``.png``, ``.jpg`` or ``.jpeg`` file (suffix in any case).
        page: for a multi-page TIFF, the page to read (0-based). ``None`` reads a single-page file.

    Returns:
        ``(H, W)`` or ``(H, W, 3)`` array.

    Raises:
        FileMissingError: the file does not exist.
        FileReadError: unknown suffix, or the file cannot be decoded (truncated, not an image).
        DataError: a multi-page TIFF without ``page``, or an array that is not gray or RGB.
        ParameterError: ``page`` out of range.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     write_image(Path(d) / "a.png", np.full((4, 6), 7, np.uint8))
        ...     image = read_image(Path(d) / "a.png")
        >>> image.shape, image.dtype, int(image.max())
        ((4, 6), dtype('uint8'), 7)
    """
    arr, _ = _read_pixels(path, page=page)
    if arr.dtype in (np.uint8, np.uint16, np.float32, np.bool_):
        return arr
    if np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating):
        return arr.astype(np.float32)
    raise DataError(f"{Path(path)}: unsupported pixel type {arr.dtype}; expected integer or float pixels")


def image_size(path: str | os.PathLike, *, page: int | None = None) -> tuple[int, int]:
    """The ``(H, W)`` of an image file, from its header when the format allows (no pixels decoded).

    Raises:
        as :func:`read_image`, when the header cannot be read and the pixels are read instead.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     write_image(Path(d) / "a.png", np.zeros((3, 5), np.uint8))
        ...     image_size(Path(d) / "a.png")
        (3, 5)
    """
    p = _existing_file(path)
    try:
        if p.suffix.lower() in (".tif", ".tiff"):
            with _tifffile_log(), tifffile.TiffFile(p) as tf:
                pages = [pg for pg in tf.pages if not getattr(pg, "is_reduced", False)] or list(tf.pages)
                if len(pages) == 1 or page is not None:
                    pg = pages[page or 0]
                    return int(pg.imagelength), int(pg.imagewidth)
        else:
            with Image.open(p) as im:
                if page in (None, 0):
                    return int(im.size[1]), int(im.size[0])
    except Exception:  # any header trouble: the full reader below reports it properly
        pass
    return tuple(read_image(p, page=page).shape[:2])


def normalize_image(image: np.ndarray, *, channels: int | None = None, name: str = "image") -> torch.Tensor:
    """Scale an image to [0, 1] by its dtype's maximum, then z-score it per image and channel.

    Integers are divided by their dtype's maximum (uint8 255, uint16 65535), bool by 1, floats are left as
    they are; then each channel gets ``(x - mean) / std`` with the population std over its ``H x W`` pixels.
    Because of the z-score, the same content stored as uint8 or uint16 gives the same result.

    A constant channel (every pixel equal) has no spread: it becomes zeros and a
    :class:`~mstool.errors.MstoolWarning` names it as constant.

    Args:
        image: ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)`` array, as :func:`read_image` returns.
        channels: ``1`` converts RGB to luminance (BT.601 weights), ``3`` repeats a gray image three
            times, ``None`` keeps the image's channels.
        name: how the image is called in warnings and errors (a file name, say).

    Returns:
        ``(C, H, W)`` float32 tensor, each channel of mean 0 and std 1 (or all zeros).

    Raises:
        ShapeError: ``image`` is not of one of the shapes above, or is empty.
        DTypeError: ``image`` is not a numpy array.
        ParameterError: ``channels`` is not 1, 3 or None, or the dtype is not numeric.
        DataError: a float image holds NaN or infinite values.

    References:
        Luo et al., arXiv 2205.00160: each image is z-score normalised before training.

    Example:
        >>> x = normalize_image(np.array([[0, 255], [255, 0]], np.uint8))
        >>> x
        tensor([[[-1.,  1.],
                 [ 1., -1.]]])
        >>> normalize_image(np.eye(2, dtype=np.uint16), channels=3).shape
        torch.Size([3, 2, 2])
    """
    return _normalize(image, channels, name, stacklevel=3)


def _normalize(image: np.ndarray, channels: int | None, name: str, *, stacklevel: int) -> torch.Tensor:
    if channels is not None:
        try:  # check_int's rule for an integer (not True, not 3.0); then the two channel counts
            count = check_int(channels, "channels", low=1, high=3)
        except ParameterError:
            count = 2
        if count == 2:
            raise ParameterError(f"`channels` must be 1, 3 or None; got {channels!r}")
        channels = count
    if not isinstance(image, np.ndarray):
        raise DTypeError(f"`image` must be a numpy array (H, W) or (H, W, 3); got {type(image).__name__}")
    arr = image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] == 3)):
        raise ShapeError(f"`image` must be (H, W) or (H, W, 3); got {image.shape}")
    if arr.size == 0:
        raise ShapeError(f"`image` must not be empty; got shape {image.shape}")
    if arr.dtype == np.bool_:
        scale = 1.0
    elif np.issubdtype(arr.dtype, np.integer):
        scale = float(np.iinfo(arr.dtype).max)
    elif np.issubdtype(arr.dtype, np.floating):
        scale = 1.0
    else:
        raise ParameterError(f"`image` must hold integer, bool or float pixels; got {arr.dtype}")
    x = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    x = (x.unsqueeze(0) if x.dim() == 2 else x.permute(2, 0, 1)) / scale  # (C, H, W)
    if not torch.isfinite(x).all():
        raise DataError(f"{name}: image contains NaN or infinite values")
    if channels == 1 and x.shape[0] == 3:
        x = torch.tensordot(torch.tensor(_LUMA, dtype=x.dtype), x, dims=1).unsqueeze(0)
    elif channels == 3 and x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    flat = x.reshape(x.shape[0], -1)
    # exact min == max, not std == 0: float rounding in the mean makes a constant image's std tiny but nonzero
    constant = flat.amin(dim=1) == flat.amax(dim=1)
    mean = flat.mean(dim=1)
    std = torch.where(constant, torch.ones_like(mean), flat.std(dim=1, correction=0))
    z = (x - mean[:, None, None]) / std[:, None, None]
    z = torch.where(constant[:, None, None], torch.zeros_like(z), z)
    if bool(constant.all()):
        warnings.warn(f"{name} is constant (every pixel {flat[0, 0].item() * scale:g}); normalised to zeros",
                      MstoolWarning, stacklevel=stacklevel)
    elif bool(constant.any()):
        which = ", ".join(str(i) for i in torch.nonzero(constant).flatten().tolist())
        warnings.warn(f"{name}: channel {which} is constant; set to zeros", MstoolWarning,
                      stacklevel=stacklevel)
    return z.contiguous()


def load_image(path: str | os.PathLike, *, page: int | None = None,
               channels: int | None = None) -> torch.Tensor:
    """Read an image file and normalise it: :func:`read_image` then :func:`normalize_image`.

    Args:
        path: image file (see :data:`IMAGE_SUFFIXES`).
        page: page of a multi-page TIFF.
        channels: 1 (luminance), 3 (RGB) or None (as stored).

    Returns:
        ``(C, H, W)`` float32 tensor, z-scored per channel.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     write_image(Path(d) / "a.tif", np.arange(12, dtype=np.uint16).reshape(3, 4))
        ...     x = load_image(Path(d) / "a.tif", channels=3)
        >>> x.shape, bool(x.mean().abs() < 1e-6), round(x.std(correction=0).item(), 4)
        (torch.Size([3, 3, 4]), True, 1.0)
    """
    return _normalize(read_image(path, page=page), channels, str(path), stacklevel=3)


def write_image(path: str | os.PathLike, image: np.ndarray | torch.Tensor) -> None:
    """Write an image atomically; the suffix picks the format.

    ========== ================================
    dtype      formats
    ========== ================================
    uint8      ``.tif``/``.tiff``, ``.png``, ``.jpg``/``.jpeg``
    uint16     ``.tif``/``.tiff``, ``.png``
    float32    ``.tif``/``.tiff`` (float16/float64 are stored as float32)
    ========== ================================

    TIFFs are zlib-compressed (lossless); JPEG is lossy (quality 95).

    Args:
        path: output file; its folder is created.
        image: numpy ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)`` RGB, or a torch tensor ``(H, W)``,
            ``(1, H, W)`` or ``(3, H, W)`` (channels first, as tensors are).

    Raises:
        ShapeError: an array or tensor of another shape.
        DTypeError: neither a numpy array nor a tensor.
        ParameterError: an unsupported suffix, dtype, or dtype/format combination.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     write_image(Path(d) / "x.tif", torch.rand(1, 4, 4))
        ...     read_image(Path(d) / "x.tif").dtype
        dtype('float32')
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ParameterError(f"{p}: cannot write {p.suffix or '(no suffix)'!r} images; "
                             f"supported: {_SUFFIX_LIST}")
    arr = _as_hwc(image)
    if arr.dtype in (np.float16, np.float64):
        arr = arr.astype(np.float32)
    if arr.dtype not in (np.uint8, np.uint16, np.float32):
        raise ParameterError(f"{p}: cannot write {arr.dtype} images; use uint8, uint16 or float32 "
                             "(masks: write_mask)")
    if arr.dtype == np.float32 and suffix not in _TIFF:
        raise ParameterError(f"{p}: float32 images can only be written as .tif/.tiff; got {suffix}")
    if arr.dtype == np.uint16 and suffix in _JPEG:
        raise ParameterError(f"{p}: JPEG holds 8-bit images only; write uint16 as .png or .tif")
    with atomic_path(p) as tmp:
        if suffix in _TIFF:
            photometric = "rgb" if arr.ndim == 3 else "minisblack"
            tifffile.imwrite(tmp, arr, photometric=photometric, compression="zlib")
        else:
            bgr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR) if arr.ndim == 3 else arr
            params = [cv2.IMWRITE_JPEG_QUALITY, 95] if suffix in _JPEG else []
            ok, buf = cv2.imencode(suffix, np.ascontiguousarray(bgr), params)
            if not ok:
                raise ParameterError(f"{p}: OpenCV could not encode a {arr.dtype} {arr.shape} image "
                                     f"as {suffix}")
            tmp.write_bytes(buf.tobytes())


def _as_hwc(image: np.ndarray | torch.Tensor) -> np.ndarray:
    """Turn a numpy ``(H, W[, 1|3])`` array or a tensor ``([1|3,] H, W)`` into numpy ``(H, W[, 3])``."""
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.dim() == 3 and t.shape[0] in (1, 3):
            t = t[0] if t.shape[0] == 1 else t.permute(1, 2, 0)
        if t.dim() != 2 and not (t.dim() == 3 and t.shape[-1] == 3):
            raise ShapeError(f"`image` tensor must be (H, W), (1, H, W) or (3, H, W); "
                             f"got {tuple(image.shape)}")
        return t.contiguous().numpy()
    if not isinstance(image, np.ndarray):
        raise DTypeError(f"`image` must be a numpy array or torch tensor; got {type(image).__name__}")
    arr = image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image
    if arr.ndim != 2 and not (arr.ndim == 3 and arr.shape[-1] == 3):
        raise ShapeError(f"`image` array must be (H, W) or (H, W, 3); got {image.shape}")
    return arr


def find_images(folder: str | os.PathLike, *, exclude_suffix: str | None = None) -> list[Path]:
    """List the image files in a folder (not its subfolders), sorted by name.

    Files count when their suffix is in :data:`IMAGE_SUFFIXES` (any case); hidden files (``.name``) are
    skipped, so are the temporary files of an unfinished atomic write.

    Args:
        folder: folder to list.
        exclude_suffix: leave out files whose stem ends with this text, e.g. ``"_mask"`` when masks
            (``cell1_mask.png``) sit beside their images (``cell1.png``).

    Returns:
        Sorted list of paths.

    Raises:
        FileMissingError: ``folder`` does not exist.
        LayoutError: ``folder`` is a file, or holds no images.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     for name in ["b.png", "a.TIF", "a_mask.png", "notes.txt"]:
        ...         (Path(d) / name).touch()
        ...     [p.name for p in find_images(d, exclude_suffix="_mask")]
        ['a.TIF', 'b.png']
    """
    root = Path(folder)
    if not root.exists():
        raise FileMissingError(f"{root}: folder not found")
    if not root.is_dir():
        raise LayoutError(f"{root}: expected a folder of images; got a file")
    found = sorted(
        f for f in root.iterdir()
        if f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".") and f.is_file()
        and not (exclude_suffix and f.stem.endswith(exclude_suffix))
    )
    if not found:
        also = f" (leaving out *{exclude_suffix} files)" if exclude_suffix else ""
        raise LayoutError(f"{root}: no images ({_SUFFIX_LIST}) found{also}")
    return found
