"""Segment a folder of images with an unsupervised method: masks with the input names, optional score maps and
overlays, and ``run.json`` with every setting. The library function behind ``mstool segment``.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._fs import atomic_dir, atomic_path
from .._version import __version__
from ..device import resolve_device
from ..errors import MstoolError, MstoolWarning, ParameterError
from ..io import find_images, normalize_image, read_image, write_mask, write_score_map
from ._base import METHODS

__all__ = ["segment_folder", "build_method"]

Progress = Callable[[dict[str, Any]], None]


def build_method(name: str, options: dict[str, Any] | None = None, *, checkpoint: str | os.PathLike | None = None,
                 device: str | torch.device = "cpu"):
    """An unsupervised method by registry name, with options; ``checkpoint`` loads a trained one (iGTT)."""
    cls = METHODS.get(name)
    if checkpoint is not None:
        if not hasattr(cls, "load"):
            raise ParameterError(f"method {name!r} has no trained state to load; --checkpoint is for igtt")
        return cls.load(checkpoint, device=device)
    try:
        return cls(**(options or {}))
    except TypeError as exc:
        raise ParameterError(f"bad option for method {name!r}: {exc}") from None


def segment_folder(
    images: str | os.PathLike,
    out: str | os.PathLike,
    *,
    method: str = "otsu",
    options: dict[str, Any] | None = None,
    prior: str | os.PathLike | None = None,
    checkpoint: str | os.PathLike | None = None,
    save_checkpoint: bool = True,
    scores: bool = False,
    overlays: bool = True,
    mask_format: str = "png",
    seed: int = 0,
    device: str | torch.device = "cpu",
    overwrite: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Segment every image of a folder (or one image file) and write the results to ``out``.

    Images of one size are segmented together (a learned method trains one network on them, as the paper does);
    images of other sizes form their own groups. An image that cannot be read is reported in ``run.json`` (and
    returned) and the others are still done. ``out`` appears only when complete.

    Args:
        images: a folder of images, or one image file.
        out: the output folder: ``masks/NAME.png`` (or ``.tif``), ``scores/NAME.tif`` with ``scores``,
            ``overlays/NAME.png`` (image | mask | prior) with ``overlays``, ``run.json``, and ``model.pt`` when the
            method has trained state (iGTT) and ``save_checkpoint``.
        method: a name of :data:`mstool.unsupervised.METHODS`.
        options: the method's constructor options.
        prior: a ``density.npz`` whose entries match the image names (and sizes).
        checkpoint: a trained model to segment with (iGTT), instead of training.
        seed: seed of every random draw.
        device: where the method runs.
        overwrite: replace a non-empty ``out`` once the new results are complete.
        progress: called with ``{"event": "image"|"group", ...}`` and the method's own events.

    Returns:
        The content of ``run.json``: settings, versions, per-image info and the problems found.
    """
    from ..device import make_generator

    if mask_format not in ("png", "tif"):
        raise ParameterError(f"`mask_format` must be png or tif; got {mask_format!r}")
    src = Path(images)
    files = [src] if src.is_file() else find_images(src)
    dev = resolve_device(device)
    emit = progress if progress is not None else (lambda event: None)
    problems: list[str] = []
    loaded: dict[str, tuple[Path, np.ndarray]] = {}
    for path in files:
        try:
            loaded[path.stem] = (path, read_image(path))
        except MstoolError as exc:
            problems.append(str(exc))
    if not loaded:
        raise ParameterError(f"{src}: no readable image; problems: {'; '.join(problems)}")
    density = None
    if prior is not None:
        from ..metastructure import load_prior

        # match() returns the entries in the images' order, and fails naming the images it cannot match
        matched = load_prior(prior).match(list(loaded), [a.shape[:2] for _, a in loaded.values()]).foreground()
        density = {name: matched[i] for i, name in enumerate(loaded)}
    model = build_method(method, options, checkpoint=checkpoint, device=dev)
    groups: dict[tuple[int, int], list[str]] = defaultdict(list)
    for name, (_, array) in loaded.items():
        groups[array.shape[:2]].append(name)
    generator = make_generator(seed)
    per_image: dict[str, Any] = {}
    started = time.perf_counter()
    with atomic_dir(out, overwrite=overwrite) as tmp:
        for size, names in groups.items():
            emit({"event": "group", "size": list(size), "images": len(names)})
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", MstoolWarning)
                batch = torch.stack([normalize_image(loaded[n][1], channels=1, name=str(loaded[n][0]))
                                     for n in names]).to(dev)
                fg = None if density is None else torch.stack([density[n] for n in names]).to(dev)
                result = model.segment(batch, prior=fg, generator=generator)
            notes = [str(w.message) for w in caught]
            for i, name in enumerate(names):
                mask = result.masks[i].cpu().numpy()
                write_mask(tmp / "masks" / f"{name}.{mask_format}", mask)
                if scores:
                    write_score_map(tmp / "scores" / f"{name}.tif", result.scores[i].float().cpu())
                if overlays:
                    _overlay(tmp / "overlays" / f"{name}.png", loaded[name][1], mask,
                             None if fg is None else fg[i, 0].cpu().numpy(), f"{name}: {method}")
                per_image[name] = {"file": str(loaded[name][0]), "size": list(size),
                                   "foreground_fraction": float((mask > 0).mean()),
                                   "warnings": notes}
                emit({"event": "image", "name": name})
            per_image_info = {k: v for k, v in result.info.items() if k != "rounds"}
            for name in names:
                per_image[name]["method_info"] = per_image_info
            if "rounds" in result.info:
                per_image[names[0]]["rounds"] = result.info["rounds"]
        if save_checkpoint and hasattr(model, "save") and checkpoint is None:
            model.save(tmp / "model.pt")
        run = {
            "mstool_version": __version__,
            "torch_version": torch.__version__,
            "method": method,
            "options": options or {},
            "prior": None if prior is None else str(prior),
            "checkpoint": None if checkpoint is None else str(checkpoint),
            "seed": seed,
            "device": str(dev),
            "images": per_image,
            "problems": problems,
            "seconds": round(time.perf_counter() - started, 3),
        }
        with atomic_path(tmp / "run.json") as path:
            path.write_text(json.dumps(run, indent=1, default=str) + "\n")
    return run


def _overlay(path: Path, image: np.ndarray, mask: np.ndarray, prior: np.ndarray | None, title: str) -> None:
    from ..viz import plot_label_panel

    gray = image.astype(np.float32)
    gray = gray.mean(-1) if gray.ndim == 3 else gray
    columns = [("image", gray, "image"), ("mask", mask, "label")]
    if prior is not None:
        columns.append(("prior density", prior, "density"))
    plot_label_panel(path, columns, title=title, num_classes=max(int(mask.max()) + 1, 2))
