"""What every run writes: JSON records (written whole or not at all), example arrays, log lines, versions."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._fs import atomic_path
from .._version import __version__

__all__ = ["json_value", "write_text", "write_json", "write_examples", "log_line", "versions"]


def json_value(v: Any) -> Any:
    """``v`` as JSON can hold it: NaN and infinity become ``None``, tensors lists, numpy scalars numbers, paths
    strings; anything else is returned as it is.

    Example:
        >>> json_value(float("nan")), json_value(np.float32(0.5)), json_value(torch.tensor([1, 2]))
        (None, 0.5, [1, 2])
    """
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, torch.Tensor):
        return v.tolist()
    if isinstance(v, (np.floating, np.integer)):
        return json_value(v.item())
    if isinstance(v, Path):
        return str(v)
    return v


def write_json(path: str | os.PathLike, value: Any, *, indent: int = 1) -> Any:
    """Write ``value`` as JSON to ``path`` atomically (a reader sees the old file or the whole new one); return
    ``value``. Values JSON cannot hold go through :func:`json_value`, then ``str``."""

    def default(v: Any) -> Any:
        out = json_value(v)
        return str(out) if out is v else out

    write_text(path, json.dumps(value, indent=indent, default=default) + "\n")
    return value


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically: a reader sees the old file or the whole new one."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_examples(path: str | os.PathLike, *, probs: torch.Tensor, images: torch.Tensor, labels: torch.Tensor,
                   names: list[str], **extra: torch.Tensor) -> None:
    """Write a few test predictions for the report's pictures as ``.npz``, atomically.

    Args:
        probs: score maps ``(N, C, H, W)`` (stored as float16).
        images: the images ``(N, H, W)`` (float16).
        labels: their clean labels ``(N, H, W)`` (uint8).
        names: their names.
        extra: more uint8 arrays (``masks``, ``train_label``).
    """
    arrays = {"probs": probs.float().cpu().numpy().astype(np.float16),
              "images": images.float().cpu().numpy().astype(np.float16),
              "labels": labels.cpu().numpy().astype(np.uint8), "names": np.array(names),
              **{key: value.cpu().numpy().astype(np.uint8) for key, value in extra.items()}}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)


def log_line(run_dir: str | os.PathLike, message: str) -> None:
    """Append a time-stamped line to ``run_dir/log.txt``."""
    with open(Path(run_dir) / "log.txt", "a") as fh:
        fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")


def versions(device: str | torch.device) -> dict[str, Any]:
    """Where and with what a result was computed: device, CPU threads, mstool and torch versions."""
    return {"device": str(device), "threads": torch.get_num_threads(), "mstool_version": __version__,
            "torch_version": torch.__version__}
