"""Read and write score maps: per-pixel probabilities, ``(H, W)`` or ``(C, H, W)`` float32.

Legend: C channels (1 foreground probability, or K class probabilities) · H, W pixels.

Two formats: float32 TIFF (``.tif``/``.tiff``, opens in image viewers) and ``.npz`` (key ``"probs"``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import tifffile
import torch

from .._fs import atomic_path
from ..errors import DataError, DTypeError, FileMissingError, FileReadError, ParameterError, ShapeError

__all__ = ["MAP_SUFFIXES", "write_score_map", "read_score_map"]

MAP_SUFFIXES: tuple[str, ...] = (".tif", ".tiff", ".npz")
"""Score-map file suffixes, lower-case; compared case-insensitively."""

_KEY = "probs"


def _map_suffix(p: Path, error: type[Exception]) -> str:
    suffix = p.suffix.lower()
    if suffix not in MAP_SUFFIXES:
        raise error(f"{p}: score maps are .tif, .tiff or .npz files; got {p.suffix or '(no suffix)'!r}")
    return suffix


def write_score_map(path: str | os.PathLike, probs: np.ndarray | torch.Tensor) -> None:
    """Write a score map atomically as float32, keeping its shape.

    A ``(C, H, W)`` map becomes a ``C``-page TIFF; tifffile's shape record lets :func:`read_score_map`
    give back ``(1, H, W)`` as ``(1, H, W)``. float16/float64 are stored as float32.

    Args:
        path: ``.tif``, ``.tiff`` or ``.npz`` file; its folder is created.
        probs: ``(H, W)`` or ``(C, H, W)`` float numpy array or tensor, e.g. one item of a
            ``(N, C, H, W)`` batch of probabilities.

    Raises:
        ShapeError: not 2-D or 3-D.
        DTypeError: neither a numpy array nor a tensor.
        ParameterError: an integer or bool dtype, or an unsupported suffix.

    Example:
        >>> import tempfile
        >>> probs = torch.softmax(torch.randn(3, 4, 5), dim=0)
        >>> with tempfile.TemporaryDirectory() as d:
        ...     write_score_map(Path(d) / "p.npz", probs)
        ...     back = read_score_map(Path(d) / "p.npz")
        >>> back.shape, back.dtype, bool(np.allclose(back, probs.numpy()))
        ((3, 4, 5), dtype('float32'), True)
    """
    p = Path(path)
    suffix = _map_suffix(p, ParameterError)
    arr = probs.detach().cpu().numpy() if isinstance(probs, torch.Tensor) else probs
    if not isinstance(arr, np.ndarray):
        raise DTypeError(f"`probs` must be a numpy array or torch tensor; got {type(probs).__name__}")
    if arr.ndim not in (2, 3):
        raise ShapeError(f"`probs` must be (H, W) or (C, H, W); got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ParameterError(f"`probs` must be a float array; got {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    with atomic_path(p) as tmp:
        if suffix == ".npz":
            with open(tmp, "wb") as f:
                np.savez_compressed(f, **{_KEY: arr})
        else:
            tifffile.imwrite(tmp, arr, photometric="minisblack", compression="zlib")


def read_score_map(path: str | os.PathLike) -> np.ndarray:
    """Read a score map written by :func:`write_score_map` (or any float TIFF / ``.npz`` with ``"probs"``).

    Args:
        path: ``.tif``, ``.tiff`` or ``.npz`` file.

    Returns:
        float32 array of the shape written, ``(H, W)`` or ``(C, H, W)``.

    Raises:
        FileMissingError: the file does not exist.
        FileReadError: an unsupported suffix, or the file cannot be decoded (truncated, wrong format).
        DataError: no ``"probs"`` array in an ``.npz``, a non-float map, or not 2-D / 3-D.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     write_score_map(Path(d) / "p.tif", np.full((1, 2, 3), 0.25))
        ...     read_score_map(Path(d) / "p.tif").shape
        (1, 2, 3)
    """
    p = Path(path)
    if not p.exists():
        raise FileMissingError(f"{p}: file not found")
    suffix = _map_suffix(p, FileReadError)
    try:
        if suffix == ".npz":
            # our own handle: np.load leaks the one it opens when the zip is damaged
            with open(p, "rb") as f:
                data = np.load(f, allow_pickle=False)
                if not isinstance(data, np.lib.npyio.NpzFile):
                    raise DataError(f"{p}: not an .npz archive (a single .npy array?); write it with "
                                    f"write_score_map or np.savez(path, {_KEY}=array)")
                with data:
                    if _KEY not in data.files:
                        keys = ", ".join(data.files) or "none"
                        raise DataError(f"{p}: no {_KEY!r} array in the .npz file (keys: {keys})")
                    arr = data[_KEY]
        else:
            arr = tifffile.imread(p)
    except DataError:
        raise
    except Exception as e:  # zipfile, zlib and tifffile each raise their own types on a damaged file
        raise FileReadError(f"{p}: cannot read score map ({type(e).__name__}: {e}); the file may be "
                            "truncated or not a score map") from e
    if not np.issubdtype(arr.dtype, np.floating):
        raise DataError(f"{p}: score map must hold floats (probabilities); got {arr.dtype}")
    if arr.ndim not in (2, 3):
        raise DataError(f"{p}: score map must be (H, W) or (C, H, W); got shape {arr.shape}")
    return arr.astype(np.float32, copy=False)
