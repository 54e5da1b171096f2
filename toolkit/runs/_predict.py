"""Masks of new images from a trained network (``mstool predict``): the counterpart of :func:`segment_folder` for
a network that :func:`train_run` trained on labels, written in the same layout so ``mstool score`` reads both.

Legend: C channels · K classes · H, W pixels.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import time
from collections.abc import Iterator
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
from ..errors import FileMissingError, FileReadError, MstoolError, ParameterError
from ..io import normalize_image, read_image, write_mask, write_score_map
from ..metastructure import expected_threshold
from ..unsupervised import IGTT
from ._records import versions, write_json
from ._segment import _warn, overlay_panel, passed_on
from ._train import EVALUATION_RECORD

__all__ = ["predict_folder", "AUTO_TILE"]

AUTO_TILE = 512
"""Images larger than this a side are predicted in tiles of this side unless a tile is given."""


def predict_folder(
    images: str | os.PathLike,
    out: str | os.PathLike,
    *,
    checkpoint: str | os.PathLike,
    threshold: float | str = "auto",
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

    The threshold of a binary network (``threshold``):

    - ``"labels"``: the one its training labels imply (:func:`mstool.metastructure.expected_threshold`), halfway
      between the labels' foreground rate where the truth is background and where it is foreground, both read
      from the noise transition matrix that training recorded. A network learns the labels' density (the
      paper's Lemma 1), so one trained on a 10% sample of the foreground says about 0.1 on foreground and 0.5
      finds nothing; the midpoint, 0.05, needs no labelled image. Labels that swap the classes give polarity -1.
      Clean labels give 0.5, and so does a dataset of your own labels (measured against themselves, their
      matrix is the identity); a folder of them trained with ``mstool train --labels NAME=FOLDER`` is measured
      against the dataset's labels instead;
    - ``"val"``: the ``val`` protocol's threshold and polarity from the ``evaluation.json`` that ``mstool
      evaluate`` wrote beside the model after it (chosen on the validation split against its labels);
    - ``"auto"``: ``"val"`` when that file is there, else ``"labels"``. Measured (``README``): for labels that
      move the objects' outline (dilated, skeletons) a threshold chosen against clean validation labels is far
      better than the midpoint; for a 10% sample the two are close (0.903 and 0.892 over 7 sets);
    - a number in ``(0, 1)``, applied to the foreground probability.

    Args:
        images: a folder of images, a dataset folder (its images, never its masks) or one image file.
        out: the output folder: ``masks/NAME.png`` (or ``.tif``; 0/1, or class indices), ``scores/NAME.tif``
            with ``scores`` (the foreground probability, or the ``(K, H, W)`` softmax), ``overlays/NAME.png``
            (image | mask) with ``overlays``, and ``run.json``: the model, threshold and its source, versions,
            per-image foreground fraction, warnings and problems.
        checkpoint: a ``model.pt`` (or ``checkpoint.pt``) written by :func:`train_run`, or its run folder.
        threshold: ``"auto"``, ``"val"``, ``"labels"`` or a number, as above.
        tile: predict in windows of this side (``>= 16``); ``None``: whole images up to :data:`AUTO_TILE`
            pixels a side, windows of that side beyond.
        batch_size: windows per forward pass.
        layout, splits, page: how to read ``images`` (:func:`mstool.data.collect_images`, the TIFF page).
        device: where the network runs.
        overwrite: replace a non-empty ``out`` that mstool wrote, once the new results are complete.
        progress: ``{"event": "start", "images": count}`` once the inputs are checked, then
            ``{"event": "image", "name": name}`` per image done (without ``name`` for one skipped).

    Returns:
        The content of ``run.json``.

    Raises:
        FileMissingError: no model file (a folder without ``model.pt``); ``"val"`` without an ``evaluation.json``.
        FileReadError: the model file is not one ``mstool train`` wrote (an iGTT network is named so), or the
            ``evaluation.json`` is not JSON.
        ParameterError: a threshold outside ``(0, 1)`` or for a multi-class network; ``"val"`` with an
            ``evaluation.json`` older than the model or without a val threshold; a bad format, tile or batch
            size; no readable image.
        OutputError, OutputExistsError: as for :func:`segment_folder`.

    Warns:
        MstoolWarning: training labels that barely depend on the truth; with ``"auto"``, an ``evaluation.json``
            that cannot be used (older than the model, no val threshold); a constant or skipped image. Each also
            lands in ``run.json``.
    """
    if mask_format not in ("png", "tif"):
        raise ParameterError(f"`mask_format` must be png or tif; got {mask_format!r}")
    tile = None if tile is None else check_int(tile, "tile", low=16)
    batch_size = check_int(batch_size, "batch_size", low=1)
    path = _model_file(checkpoint)
    check_output_dir(out, overwrite=overwrite, inputs=[images, path])
    dev = resolve_device(device)
    net, meta = _load(path, dev)
    given: list[str] = []
    rule = _threshold(path, meta, threshold, given)
    entries = collect_images(images, layout=layout, splits=splits)
    problems: list[str] = []
    arrays = _read_each(entries, page, problems)
    first = next(arrays, None)  # an input error, such as no readable image, comes before any output
    if first is None:
        raise ParameterError(f"{images}: no image could be read ({problems[0]})")
    emit = progress if progress is not None else (lambda event: None)
    per_image: dict[str, Any] = {}
    started = time.perf_counter()
    with atomic_dir(out, overwrite=overwrite, inputs=[images, path], kind="predict") as tmp:
        emit({"event": "start", "images": len(entries)})
        reported = 0
        for entry, array in itertools.chain([first], arrays):
            for _ in range(reported, len(problems)):  # the images skipped since the last one done
                emit({"event": "image"})
            reported = len(problems)
            per_image[entry.name] = _predict_one(net, meta, rule, entry.name, entry.path, array, tmp, given,
                                                 tile=tile, batch_size=batch_size, scores=scores,
                                                 overlays=overlays, mask_format=mask_format)
            emit({"event": "image", "name": entry.name})
        for _ in range(reported, len(problems)):
            emit({"event": "image"})
        given.extend(_warn(f"skipped {problem}", stacklevel=3) for problem in problems)
        made = versions(dev)
        run = {"mstool_version": made["mstool_version"], "torch_version": made["torch_version"],
               "checkpoint": str(path), "network": meta.get("model"), "num_classes": meta.get("num_classes"),
               "label_spec": (meta.get("config") or {}).get("label_spec"), "epochs": meta.get("epochs"),
               **rule, "tile": tile, "device": made["device"], "threads": made["threads"], "images": per_image,
               "warnings": list(dict.fromkeys(given)), "problems": problems,
               "seconds": round(time.perf_counter() - started, 3)}
        write_json(tmp / "run.json", run)
    return run


def _read_each(entries: list, page: int | None, problems: list[str]) -> Iterator[tuple[Any, np.ndarray]]:
    """``(entry, image)`` of each image that can be read, one at a time; why each other one could not goes into
    ``problems``."""
    for entry in entries:
        try:
            yield entry, read_image(entry.path, page=page)
        except MstoolError as exc:
            problems.append(str(exc))


def _load(path: Path, device: torch.device) -> tuple[torch.nn.Module, dict[str, Any]]:
    """:func:`mstool.engine.load_model`, with a pointer to ``mstool segment`` for an iGTT network."""
    try:
        return load_model(path, device=device)
    except FileReadError as exc:
        try:
            IGTT.load(path)  # only on the error path: is it the other kind of network mstool writes?
        except MstoolError:
            raise exc from None
        raise FileReadError(f"{path}: an iGTT network, which `mstool segment IMAGES --method igtt --checkpoint "
                            f"{path}` applies to new images; `mstool predict` takes a network that `mstool train` "
                            "trained") from None


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


def _threshold(model: Path, meta: dict[str, Any], threshold: float | str | None,
               given: list[str]) -> dict[str, Any]:
    """How probabilities become masks: ``threshold``, ``polarity`` and ``threshold_source`` (for ``run.json``)."""
    k = int(meta.get("num_classes") or 2)
    if k > 2:
        if threshold not in (None, "auto"):
            raise ParameterError(f"a threshold applies to binary networks; {model} has {k} classes, whose masks "
                                 "are the most probable class")
        return {"threshold": None, "polarity": None, "threshold_source": "arg-max of the classes"}
    if threshold is None or threshold == "auto":
        record = model.parent / EVALUATION_RECORD
        if not record.is_file():
            return _labels_threshold(model, meta, given)
        try:
            return _val_threshold(model)
        except MstoolError as exc:
            given.append(_warn(f"{exc}; the threshold comes from the training labels instead"))
            return _labels_threshold(model, meta, given)
    if threshold == "val":
        return _val_threshold(model)
    if threshold == "labels":
        return _labels_threshold(model, meta, given)
    if isinstance(threshold, str) or not 0 < threshold < 1 or math.isnan(threshold):
        raise ParameterError(f"`threshold` must be auto, val, labels or a number strictly between 0 and 1; got "
                             f"{threshold!r}")
    return {"threshold": float(threshold), "polarity": 1, "threshold_source": "given"}


def _labels_threshold(model: Path, meta: dict[str, Any], given: list[str]) -> dict[str, Any]:
    """The threshold and polarity the training labels' noise transition matrix implies (0.5 without one)."""
    ntm = (meta.get("label_stats") or {}).get("ntm")
    if not isinstance(ntm, list) or len(ntm) != 2:
        return {"threshold": 0.5, "polarity": 1, "threshold_source": "0.5 (the model records no noise transition "
                "matrix of its training labels)"}
    value, polarity = expected_threshold(ntm)
    if abs(ntm[1][1] - ntm[0][1]) < _NO_SIGNAL:
        given.append(_warn(f"{model}: its training labels barely depend on the true classes (noise transition "
                           f"matrix {_rounded(ntm)}), so the network has little to tell them apart by; its masks "
                           "are mostly noise"))
    return {"threshold": value, "polarity": polarity,
            "threshold_source": f"halfway between the training labels' foreground rates on background and on "
                                f"foreground (noise transition matrix {_rounded(ntm)})"}


_NO_SIGNAL = 0.05
"""Training labels whose foreground rate differs by less than this between the true classes separate nothing."""


def _rounded(ntm: list[list[float]]) -> list[list[float]]:
    return [[round(float(v), 3) for v in row] for row in ntm]


def _val_threshold(model: Path) -> dict[str, Any]:
    """The ``val`` protocol's threshold and polarity of the ``evaluation.json`` beside ``model``, written after it."""
    record = model.parent / EVALUATION_RECORD
    hint = f"run `mstool evaluate --checkpoint {model}` first"
    if not record.is_file():
        raise FileMissingError(f"{record}: no such file, so there is no val threshold to take; {hint}")
    if record.stat().st_mtime < model.stat().st_mtime:
        raise ParameterError(f"{record} is older than {model.name}, so its threshold may belong to another "
                             f"network; {hint}")
    try:
        values = json.loads(record.read_text())
    except (OSError, ValueError) as exc:
        raise FileReadError(f"{record}: cannot be read as JSON ({exc})") from None
    chosen = values.get("val/threshold"), values.get("val/polarity")
    if not all(isinstance(v, (int, float)) for v in chosen):
        reason = values.get("val/absent", "no val entry")
        raise ParameterError(f"{record} holds no val threshold ({reason})")
    return {"threshold": float(chosen[0]), "polarity": int(chosen[1]),
            "threshold_source": f"{record} (the val protocol: chosen on the validation split)"}


def _predict_one(net: torch.nn.Module, meta: dict[str, Any], rule: dict[str, Any], name: str, file: Path,
                 array: np.ndarray, out: Path, given: list[str], *, tile: int | None, batch_size: int, scores: bool,
                 overlays: bool, mask_format: str) -> dict[str, Any]:
    """Predict one image and write its mask (and score map and overlay); its ``run.json`` entry."""
    with passed_on() as notes:  # a constant image, say
        x = normalize_image(array, channels=int(meta["in_channels"]), name=str(file))[None]
    given.extend(notes)
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

