"""Masks of new images from a trained network (``mstool predict``): the counterpart of :func:`segment_folder` for
a network that :func:`train_run` trained on labels, written in the same layout so ``mstool score`` reads both.

Legend: C channels · K classes · H, W pixels.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._check import check_int
from .._fs import atomic_dir, check_output_dir
from .._types import Progress
from ..data import collect_images
from ..device import resolve_device
from ..engine import MODEL_NAME, load_model, predict
from ..errors import FileMissingError, MstoolError, MstoolWarning, ParameterError
from ..io import normalize_image, read_image, write_mask, write_score_map
from ._records import versions, write_json
from ._segment import _warn, overlay_panel
from ._train import EVALUATION_RECORD

__all__ = ["predict_folder", "AUTO_TILE"]

AUTO_TILE = 512
"""Images larger than this a side are predicted in tiles of this side unless a tile is given."""


def predict_folder(
    images: str | os.PathLike,
    out: str | os.PathLike,
    *,
    checkpoint: str | os.PathLike,
    threshold: float | None = None,
    tile: int | None = None,
    batch_size: int = 8,
    scores: bool = False,
    overlays: bool = True,
    mask_format: str = "png",
    layout: str = "auto",
    splits: tuple[str, ...] | None = None,
    page: int | None = None,
    device: str | torch.device = "cpu",
    overwrite: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Segment every image of a folder, a dataset folder or one image file with a trained network, and write
    the masks to ``out``.

    Each image is normalised as in training (:func:`mstool.io.normalize_image`: z-scored per image, to the
    network's channels) and predicted at its own size, in overlapping tiles when larger than ``tile``. A binary
    network's foreground probability becomes a mask at a threshold; a multi-class network's mask is the arg-max
    class. Images are read one at a time, so a folder of any length needs the memory of one image; one that
    cannot be read is skipped with a warning and recorded in ``run.json``. ``out`` appears only when complete.

    The threshold of a binary network, in this order:

    - ``threshold``, applied to the foreground probability;
    - the ``val`` protocol's threshold and polarity of the ``evaluation.json`` that ``mstool evaluate`` wrote
      beside the model after it (chosen on the validation split, never on test labels). This matters for
      networks trained on sparse labels, whose probabilities sit near the labels' sampling rate (the paper's
      Lemma 1), and for labels that swap the classes (polarity -1);
    - otherwise 0.5, with a warning that says how to choose one on validation.

    Args:
        images: a folder of images, a dataset folder (its images, never its masks) or one image file.
        out: the output folder: ``masks/NAME.png`` (or ``.tif``; 0/1, or class indices), ``scores/NAME.tif``
            with ``scores`` (the foreground probability, or the ``(K, H, W)`` softmax), ``overlays/NAME.png``
            (image | mask) with ``overlays``, and ``run.json``: the model, threshold and its source, versions,
            per-image foreground fraction, warnings and problems.
        checkpoint: a ``model.pt`` (or ``checkpoint.pt``) written by :func:`train_run`, or its run folder.
        threshold: the binary threshold in ``(0, 1)``; ``None`` chooses as above.
        tile: predict in windows of this side (``>= 16``); ``None``: whole images up to :data:`AUTO_TILE`
            pixels a side, windows of that side beyond.
        batch_size: windows per forward pass.
        layout, splits, page: how to read ``images`` (:func:`mstool.data.collect_images`, the TIFF page).
        device: where the network runs.
        overwrite: replace a non-empty ``out`` that mstool wrote, once the new results are complete.
        progress: ``{"event": "start", "images": count}`` once the inputs are checked, then
            ``{"event": "image", "name": name}`` per image done or skipped.

    Returns:
        The content of ``run.json``.

    Raises:
        FileMissingError: no model file (a folder without ``model.pt``).
        FileReadError: the model file is not one mstool wrote.
        ParameterError: a threshold outside ``(0, 1)`` or for a multi-class network, a bad format, tile or
            batch size, or no readable image.
        OutputError, OutputExistsError: as for :func:`segment_folder`.

    Warns:
        MstoolWarning: the fallback threshold 0.5, an ``evaluation.json`` older than the model (not used), a
            skipped image; each also lands in ``run.json``.
    """
    if mask_format not in ("png", "tif"):
        raise ParameterError(f"`mask_format` must be png or tif; got {mask_format!r}")
    tile = None if tile is None else check_int(tile, "tile", low=16)
    batch_size = check_int(batch_size, "batch_size", low=1)
    path = _model_file(checkpoint)
    check_output_dir(out, overwrite=overwrite, inputs=[images, path])
    dev = resolve_device(device)
    net, meta = load_model(path, device=dev)
    given: list[str] = []
    rule = _threshold(path, meta, threshold, given)
    entries = collect_images(images, layout=layout, splits=splits)
    emit = progress if progress is not None else (lambda event: None)
    per_image: dict[str, Any] = {}
    problems: list[str] = []
    started = time.perf_counter()
    with atomic_dir(out, overwrite=overwrite, inputs=[images, path], kind="predict") as tmp:
        emit({"event": "start", "images": len(entries)})
        for entry in entries:
            try:
                array = read_image(entry.path, page=page)
            except MstoolError as exc:
                problems.append(f"{entry.path}: {exc}")
                given.append(_warn(f"skipped {entry.path}: {exc}", stacklevel=3))
                emit({"event": "image", "name": entry.name})
                continue
            per_image[entry.name] = _predict_one(net, meta, rule, entry.name, entry.path, array, tmp, given,
                                                 tile=tile, batch_size=batch_size, scores=scores,
                                                 overlays=overlays, mask_format=mask_format)
            emit({"event": "image", "name": entry.name})
        if not per_image:
            raise ParameterError(f"{images}: no image could be read ({problems[0]})")
        made = versions(dev)
        run = {"mstool_version": made["mstool_version"], "torch_version": made["torch_version"],
               "checkpoint": str(path), "network": meta.get("model"), "num_classes": meta.get("num_classes"),
               "label_spec": (meta.get("config") or {}).get("label_spec"), "epochs": meta.get("epochs"),
               **rule, "tile": tile, "device": made["device"], "threads": made["threads"], "images": per_image,
               "warnings": list(dict.fromkeys(given)), "problems": problems,
               "seconds": round(time.perf_counter() - started, 3)}
        write_json(tmp / "run.json", run)
    return run


def _model_file(model: str | os.PathLike) -> Path:
    """The model file: ``model`` itself, or a run folder's ``model.pt``."""
    path = Path(model)
    if path.is_dir():
        if not (path / MODEL_NAME).is_file():
            raise FileMissingError(f"{path}: no {MODEL_NAME} in this folder; give a training run folder of "
                                   "`mstool train` or a model file")
        return path / MODEL_NAME
    if not path.is_file():
        raise FileMissingError(f"{path}: model file does not exist")
    return path


def _threshold(model: Path, meta: dict[str, Any], threshold: float | None, given: list[str]) -> dict[str, Any]:
    """How probabilities become masks: ``threshold``, ``polarity`` and ``threshold_source`` (for ``run.json``)."""
    k = int(meta.get("num_classes") or 2)
    if k > 2:
        if threshold is not None:
            raise ParameterError(f"a threshold applies to binary networks; {model} has {k} classes, whose masks "
                                 "are the most probable class")
        return {"threshold": None, "polarity": None, "threshold_source": "arg-max of the classes"}
    if threshold is not None:
        if not 0 < threshold < 1 or math.isnan(threshold):
            raise ParameterError(f"`threshold` must lie strictly between 0 and 1; got {threshold}")
        return {"threshold": float(threshold), "polarity": 1, "threshold_source": "given"}
    record = model.parent / EVALUATION_RECORD
    hint = f"run `mstool evaluate --checkpoint {model}` first to choose one on the validation split"
    if record.is_file():
        try:
            values = json.loads(record.read_text())
        except (OSError, ValueError):
            values = {}
        chosen = values.get("val/threshold"), values.get("val/polarity")
        if record.stat().st_mtime < model.stat().st_mtime:
            given.append(_warn(f"{record} is older than {model.name}, so its threshold may not fit this network; "
                               f"threshold 0.5 instead ({hint})"))
        elif all(isinstance(v, (int, float)) for v in chosen):
            return {"threshold": float(chosen[0]), "polarity": int(chosen[1]),
                    "threshold_source": f"{record} (val protocol: chosen on the validation split)"}
        else:
            given.append(_warn(f"{record} holds no val threshold ({values.get('val/absent', 'no val entry')}); "
                               f"threshold 0.5 instead"))
        return {"threshold": 0.5, "polarity": 1, "threshold_source": "fixed 0.5"}
    given.append(_warn(f"no {EVALUATION_RECORD} beside {model}: threshold 0.5, which suits dense labels but can "
                       f"leave the masks of a network trained on sparse labels almost empty; {hint}, or give "
                       "--threshold"))
    return {"threshold": 0.5, "polarity": 1, "threshold_source": "fixed 0.5"}


def _predict_one(net: torch.nn.Module, meta: dict[str, Any], rule: dict[str, Any], name: str, file: Path,
                 array: np.ndarray, out: Path, given: list[str], *, tile: int | None, batch_size: int, scores: bool,
                 overlays: bool, mask_format: str) -> dict[str, Any]:
    """Predict one image and write its mask (and score map and overlay); its ``run.json`` entry."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MstoolWarning)
        x = normalize_image(array, channels=int(meta["in_channels"]), name=str(file))[None]
    for w in caught:  # a constant image, say: recorded, then passed on
        given.append(str(w.message))
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    side = tile if tile is not None else (AUTO_TILE if max(x.shape[-2:]) > AUTO_TILE else None)
    probs = predict(net, x, batch_size=batch_size, tile=side)[0]  # (1 | K, H, W), on the CPU
    if rule["threshold"] is None:
        mask = probs.argmax(0).to(torch.uint8)
    else:
        probs = probs if rule["polarity"] == 1 else 1 - probs
        mask = (probs[0] >= rule["threshold"]).to(torch.uint8)
    mask = mask.numpy()
    write_mask(out / "masks" / f"{name}.{mask_format}", mask)
    if scores:
        write_score_map(out / "scores" / f"{name}.tif", probs if rule["threshold"] is None else probs[0])
    if overlays:
        overlay_panel(out / "overlays" / f"{name}.png", array, mask, None, f"{name}: {meta.get('model')}",
                      num_classes=int(meta.get("num_classes") or 2))
    return {"file": str(file), "size": list(mask.shape), "tile": side,
            "foreground_fraction": float((mask > 0).mean())}

