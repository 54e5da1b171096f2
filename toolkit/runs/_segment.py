"""Segment a folder of images with an unsupervised method: masks with the input names, optional score maps and
overlays, ``run.json`` with every setting, and the trained networks (iGTT). The library function behind
``mstool segment``.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import IGNORE_INDEX
from .._fs import atomic_dir, check_output_dir
from .._types import Progress
from ..data import read_images
from ..device import make_generator, resolve_device
from ..engine import load_model
from ..errors import DataError, FileMissingError, FileReadError, LayoutError, MstoolError, MstoolWarning, ParameterError
from ..io import normalize_image, read_mask, write_mask, write_score_map
from ..metastructure import load_prior
from ..unsupervised import build_method, check_loadable, check_takes_scribbles
from ..viz import plot_label_panel
from ._priors import check_unique_names, collect_labels
from ._records import versions, write_json

__all__ = ["segment_folder"]

_OVERLAY_SIDE = 1024  # overlays show at most this many pixels a side: a 4096 x 4096 panel would cost GBs to draw


def segment_folder(
    images: str | os.PathLike,
    out: str | os.PathLike,
    *,
    method: str = "otsu",
    options: dict[str, Any] | None = None,
    prior: str | os.PathLike | None = None,
    scribbles: str | os.PathLike | None = None,
    checkpoint: str | os.PathLike | None = None,
    save_checkpoint: bool = True,
    scores: bool = False,
    overlays: bool = True,
    mask_format: str = "png",
    layout: str = "auto",
    splits: tuple[str, ...] | None = None,
    page: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    overwrite: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Segment every image of a folder, a dataset folder or one image file, and write the results to ``out``.

    Images of one size are segmented together (a learned method trains one network on them, as the paper does);
    images of other sizes form their own groups. An image that cannot be read is skipped with a warning, recorded
    in ``run.json`` (and returned), and the others are still done. ``out`` appears only when complete, and is
    checked before any work: it may not be, contain or lie inside an input, and it replaces only a folder that
    mstool wrote (with ``overwrite``).

    Args:
        images: a folder of images, a dataset folder (paper, cellpose or VOC layout: its images, never its masks),
            or one image file.
        out: the output folder: ``masks/NAME.png`` (or ``.tif``), ``scores/NAME.tif`` with ``scores``,
            ``overlays/NAME.png`` (image | mask | prior | scribbles, at most 1024 pixels a side) with ``overlays``,
            ``run.json``, and, when the method has trained state (iGTT) and ``save_checkpoint``, the trained
            networks: ``model.pt`` when all images have one size, else ``model-<H>x<W>.pt`` per size (listed in
            ``run.json`` under ``checkpoints`` and in each image's ``checkpoint``).
        method: a name of :data:`mstool.unsupervised.METHODS`.
        options: the method's constructor options.
        prior: a ``density.npz`` whose entries match the image names (and sizes).
        scribbles: partial labels for a method that takes them (iGTT, DFC): a folder of masks, a dataset folder
            or a ``labels make`` copy, matched to the images by name (or one mask file, for the image of its name
            or the only image), each ``0`` background, ``1`` foreground and ``255`` not labelled (what ``labels
            make --spec region:0.25`` writes; binary 0/255 masks read as a full labelling). Images without a mask
            there get none (a warning says how many).
        checkpoint: segment with trained networks (iGTT) instead of training: a model file (used for every
            size), or the output folder of an earlier run, whose ``model-<H>x<W>.pt`` serves images of that size
            and whose ``model.pt`` any size.
        layout, splits: how to read a dataset folder (:func:`mstool.data.collect_images`).
        page: the page of multi-page TIFF images.
        seed: seed of every random draw. The same seed gives the same masks on the CPU at the same number of
            threads (recorded in ``run.json``); float sums in another order change a learned method's training
            (iGTT, 1 vs 2 threads on 128 x 128 images: the masks agree at Dice 0.97).
        device: where the method runs.
        overwrite: replace a non-empty ``out`` that mstool wrote, once the new results are complete.
        progress: called with events in this order: ``{"event": "start", "images": count, "groups": count}``
            once all inputs are checked; per size group ``{"event": "group", "size": [H, W], "images": count}``,
            the method's own events with ``"size"`` added (iGTT ``{"event": "round", "round", "rounds", ...}``
            per round, DFC the same per update with ``"index"``, the image in the group), then
            ``{"event": "image", "name": name}`` per image.

    Returns:
        The content of ``run.json``: settings, versions, per-image info, checkpoints, the warnings given and the
        problems found.

    Raises:
        ParameterError: a bad option, method or format, no readable image, scribbles for a method that takes
            none or with a checkpoint (it only predicts), or a scribble value other than 0, 1 and 255.
        DataError: a scribble mask whose size differs from its image's.
        LayoutError: a scribbles folder with no mask for any of the images.
        OutputError: ``out`` overlaps an input or is a non-empty folder mstool did not write.
        OutputExistsError: ``out`` is a non-empty mstool folder and ``overwrite`` is not set.
        FileMissingError: a ``checkpoint`` folder without a model for a size of the images.
        FileReadError: a ``checkpoint`` that is not the method's (one that ``mstool train`` wrote is named so).

    Warns:
        MstoolWarning: a skipped image, a constant image, a prior with almost no mass, a prior the method
            ignores; each also lands in ``run.json``.
    """
    if mask_format not in ("png", "tif"):
        raise ParameterError(f"`mask_format` must be png or tif; got {mask_format!r}")
    if scribbles is not None:
        check_takes_scribbles(method)
        if checkpoint is not None:
            raise ParameterError("scribbles train a network, and a checkpoint only predicts; leave one of "
                                 "them out")
    inputs = [images, prior, scribbles, checkpoint]
    check_output_dir(out, overwrite=overwrite, inputs=inputs)
    dev = resolve_device(device)
    job = _read_inputs(images, prior, layout=layout, splits=splits, page=page)
    if scribbles is not None:
        job.scribbles = _read_scribbles(scribbles, job)
    segmenters, used = _segmenters(method, options, checkpoint, list(job.groups), dev)
    emit = progress if progress is not None else (lambda event: None)
    generator = make_generator(seed)
    started = time.perf_counter()
    with atomic_dir(out, overwrite=overwrite, inputs=inputs, kind="segment") as tmp:
        emit({"event": "start", "images": len(job.loaded), "groups": len(job.groups)})
        for size, names in job.groups.items():
            emit({"event": "group", "size": list(size), "images": len(names)})
            file = None
            if save_checkpoint and checkpoint is None:
                # one network per size group: keep each, not only the last one trained
                file = "model.pt" if len(job.groups) == 1 else f"model-{size[0]}x{size[1]}.pt"
            _segment_group(job, tmp, size, names, segmenters[size], generator, dev, progress, model_file=file,
                           checkpoint=used[size], scores=scores, overlays=overlays, mask_format=mask_format,
                           title=method)
        made = versions(dev)
        run = {"mstool_version": made["mstool_version"], "torch_version": made["torch_version"], "method": method,
               "options": options or {}, "prior": None if prior is None else str(prior),
               "scribbles": None if scribbles is None else str(scribbles),
               "checkpoint": None if checkpoint is None else str(checkpoint), "checkpoints": job.saved,
               "seed": seed, "device": made["device"], "threads": made["threads"], "images": job.per_image,
               "warnings": list(dict.fromkeys(job.given)), "problems": job.problems,
               "seconds": round(time.perf_counter() - started, 3)}
        write_json(tmp / "run.json", run)
    return run


@dataclass
class _Job:
    """The inputs of a segmentation, read and checked, and what the groups have produced so far."""

    loaded: dict[str, tuple[Path, np.ndarray]]
    groups: dict[tuple[int, int], list[str]]
    density: dict[str, torch.Tensor] | None
    problems: list[str]
    given: list[str]  # every warning, for run.json
    scribbles: dict[str, torch.Tensor] | None = None  # (H, W) uint8 partial labels by image name
    per_image: dict[str, Any] = field(default_factory=dict)
    saved: dict[str, str] = field(default_factory=dict)


def _read_inputs(images: str | os.PathLike, prior: str | os.PathLike | None, *, layout: str,
                 splits: tuple[str, ...] | None, page: int | None) -> _Job:
    """Read every image (skipping, with a warning, those that cannot be read), match the prior to them and group
    them by size."""
    loaded, problems = read_images(images, layout=layout, splits=splits, page=page, skip_unreadable=True)
    given = [_warn(f"skipped {problem}") for problem in problems]
    density = None
    if prior is not None:
        # match() returns the entries in the images' order, and fails naming the images it cannot match
        matched = load_prior(prior).match(list(loaded), [a.shape[:2] for _, a in loaded.values()]).foreground()
        density = {name: matched[i] for i, name in enumerate(loaded)}
        given.extend(_check_mass(prior, density))
    groups: dict[tuple[int, int], list[str]] = defaultdict(list)
    for name, (_, array) in loaded.items():
        groups[array.shape[:2]].append(name)
    return _Job(loaded, dict(groups), density, problems, given)


def _read_scribbles(root: str | os.PathLike, job: _Job) -> dict[str, torch.Tensor]:
    """The partial labels of the images, by name: each checked for its image's size and for 0/1/255 values.
    ``root`` is a label set (:func:`collect_labels`), or one mask file for the image of its name or, when one
    image is segmented, for that image."""
    mode = "auto"
    if Path(root).is_file():
        only = next(iter(job.loaded)) if len(job.loaded) == 1 else Path(root).stem
        found = [(only, Path(root))]
    else:
        entries, mode = collect_labels(root)
        check_unique_names(entries, needs="--scribbles")
        found = [(e.name, e.path) for e in entries]
    found = [item for item in found if item[0] in job.loaded]
    if not found:
        raise LayoutError(f"{root}: no scribble mask is named like an image ({', '.join(list(job.loaded)[:3])} "
                          "...); scribbles pair with images by name")
    out = {}
    for name, path in found:
        # the stored values first: read as object ids, a {0, 2, 255} mask would be foreground everywhere
        bad = sorted(set(np.unique(read_mask(path, mode="multiclass")).tolist()) - {0, 1, IGNORE_INDEX})
        if bad:
            raise ParameterError(f"{path}: scribbles hold 0 (background), 1 (foreground) and 255 (not "
                                 f"labelled); found {', '.join(map(str, bad[:5]))}")
        mask = read_mask(path, mode=mode)  # a plain 0/255 mask is a binary mask, labelled everywhere
        image_path, image = job.loaded[name]
        if mask.shape != image.shape[:2]:
            raise DataError(f"{path}: scribbles are {mask.shape[0]} x {mask.shape[1]} but image {image_path} "
                            f"is {image.shape[0]} x {image.shape[1]} (height x width)")
        out[name] = torch.from_numpy(mask.astype(np.uint8))  # a byte a pixel: large images are held whole
    missing = len(job.loaded) - len(out)
    if missing:
        job.given.append(_warn(f"scribbles {root}: no mask for {missing} of {len(job.loaded)} images; they are "
                               "segmented with none"))
    return out


def _scribbled(scribbles: dict[str, torch.Tensor] | None, name: str) -> int | None:
    """How many pixels of an image were given a label (``None``: no scribbles were given at all)."""
    if scribbles is None:
        return None
    return int((scribbles[name] != IGNORE_INDEX).sum()) if name in scribbles else 0


def _segmenters(method: str, options: dict[str, Any] | None, checkpoint: str | os.PathLike | None,
                sizes: list[tuple[int, int]], device: torch.device) -> tuple[dict, dict]:
    """The method for each size group (one instance serves all: a trained network comes back in each group's
    result), or the trained ones a checkpoint holds; and the model file each group uses (``None``: trained here)."""
    if checkpoint is None:
        segmenter = build_method(method, options, device=device)
        return dict.fromkeys(sizes, segmenter), dict.fromkeys(sizes)
    check_loadable(method)
    used = _checkpoint_files(checkpoint, sizes)
    cache = {path: _load(method, options, path, device) for path in set(used.values())}
    return {size: cache[used[size]] for size in sizes}, used


def _load(method: str, options: dict[str, Any] | None, path: Path, device: torch.device) -> Any:
    """A trained method from its file, with a pointer to ``mstool predict`` for a network that training wrote."""
    try:
        return build_method(method, options, checkpoint=path, device=device)
    except FileReadError as exc:
        try:
            load_model(path)  # only on the error path: is it the other kind of network mstool writes?
        except MstoolError:
            raise exc from None
        raise FileReadError(f"{path}: a network that `mstool train` trained, which `mstool predict IMAGES "
                            f"--checkpoint {path}` applies to new images; --checkpoint here takes one that "
                            f"`mstool segment --method {method}` wrote") from None


def _segment_group(job: _Job, out: Path, size: tuple[int, int], names: list[str], segmenter: Any,
                   generator: torch.Generator, device: torch.device, progress: Progress | None, *,
                   model_file: str | None, checkpoint: Path | None, scores: bool, overlays: bool, mask_format: str,
                   title: str) -> None:
    """Segment the images of one size together, and write their masks, score maps, overlays and network."""
    forward = None if progress is None else (lambda event, size=list(size): progress({**event, "size": size}))
    with passed_on() as notes:
        batch = torch.stack([normalize_image(job.loaded[n][1], channels=1, name=str(job.loaded[n][0]))
                             for n in names]).to(device)
        fg = None if job.density is None else torch.stack([job.density[n] for n in names]).to(device)
        extra = {}
        if job.scribbles is not None:
            extra["scribbles"] = torch.stack([job.scribbles[n] if n in job.scribbles
                                              else torch.full(size, IGNORE_INDEX, dtype=torch.uint8)
                                              for n in names]).to(device).long()
        result = segmenter.segment(batch, prior=fg, generator=generator, progress=forward, **extra)
    job.given.extend(notes)
    key = f"{size[0]}x{size[1]}"
    if model_file is not None and result.trained is not None:
        result.trained.save(out / model_file)
        job.saved[key] = model_file
    info = {k: v for k, v in result.info.items() if k != "rounds"}
    for i, name in enumerate(names):
        mask = result.masks[i].cpu().numpy()
        write_mask(out / "masks" / f"{name}.{mask_format}", mask)
        if scores:
            write_score_map(out / "scores" / f"{name}.tif", result.scores[i].float().cpu())
        if overlays:
            drawn = None if "scribbles" not in extra else extra["scribbles"][i].cpu().numpy()
            overlay_panel(out / "overlays" / f"{name}.png", job.loaded[name][1], mask,
                     None if fg is None else fg[i, 0].cpu().numpy(), f"{name}: {title}", drawn)
        job.per_image[name] = {"file": str(job.loaded[name][0]), "size": list(size),
                               "scribbled": _scribbled(job.scribbles, name),
                               "foreground_fraction": float((mask > 0).mean()),
                               "checkpoint": job.saved.get(key, None if checkpoint is None else str(checkpoint)),
                               "warnings": notes, "method_info": info}
        if progress is not None:
            progress({"event": "image", "name": name})
    if "rounds" in result.info:
        job.per_image[names[0]]["rounds"] = result.info["rounds"]


@contextlib.contextmanager
def passed_on() -> Iterator[list[str]]:
    """Record the mstool warnings given inside the block, then pass them on to the caller (the CLI prints them);
    the yielded list holds their messages once the block ends, for ``run.json``."""
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MstoolWarning)
        yield notes
    notes.extend(str(w.message) for w in caught)
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


_LIGHT_PRIOR = 1e-3
"""A prior entry whose foreground density averages below this carries almost no foreground."""


def _warn(message: str, stacklevel: int = 4) -> str:
    """Warn (pointing at the caller of :func:`segment_folder`) and return the message, for ``run.json``."""
    warnings.warn(message, MstoolWarning, stacklevel=stacklevel)
    return message


def _check_mass(prior: str | os.PathLike, density: dict[str, torch.Tensor]) -> list[str]:
    """Warn when entries of the prior carry almost no foreground (a prior of empty or nearly empty masks)."""
    # the mean over the known pixels; an entry known nowhere (NaN) is no prior at all, not a light one
    light = [name for name, d in density.items() if float(d.float().nanmean()) < _LIGHT_PRIOR]
    if not light:
        return []
    return [_warn(stacklevel=5, message=f"prior {prior}: the foreground density of {len(light)} of {len(density)} "
                  f"entries (e.g. {light[0]!r}) averages below {_LIGHT_PRIOR:g}, almost no mass; the methods that "
                  "read a prior will find (almost) no foreground there. Was it made from empty masks?")]


def _checkpoint_files(checkpoint: str | os.PathLike,
                      sizes: list[tuple[int, int]]) -> dict[tuple[int, int], Path]:
    """The model file for each image size: ``checkpoint`` itself, or from a folder ``model-<H>x<W>.pt`` of that
    size, else ``model.pt``."""
    path = Path(checkpoint)
    if not path.is_dir():
        return dict.fromkeys(sizes, path)
    files = {}
    for h, w in sizes:
        for name in (f"model-{h}x{w}.pt", "model.pt"):
            if (path / name).is_file():
                files[(h, w)] = path / name
                break
        else:
            have = sorted(p.name for p in path.glob("model*.pt"))
            hint = (f"it holds {', '.join(have)}: pass one of them to use it for every size" if have
                    else "it holds no model*.pt file")
            raise FileMissingError(f"{path}: no model-{h}x{w}.pt or model.pt for the images of {h} x {w}; {hint}")
    return files


def overlay_panel(path: Path, image: np.ndarray, mask: np.ndarray, prior: np.ndarray | None, title: str,
                  scribbles: np.ndarray | None = None, *, num_classes: int | None = None) -> None:
    """image | mask [| prior] [| scribbles], at most :data:`_OVERLAY_SIDE` pixels a side (``mstool segment`` and
    ``mstool predict``); ``num_classes`` fixes the mask's colours (default: from its values)."""
    step = max(1, math.ceil(max(mask.shape) / _OVERLAY_SIDE))
    image, mask = image[::step, ::step], mask[::step, ::step]
    gray = image.astype(np.float32)
    gray = gray.mean(-1) if gray.ndim == 3 else gray
    columns = [("image", gray, "image"), ("mask", mask, "label")]
    if prior is not None:
        columns.append(("prior density", prior[::step, ::step], "density"))
    if scribbles is not None:
        columns.append(("scribbles (grey: not labelled)", scribbles[::step, ::step], "label"))
    k = num_classes if num_classes is not None else max(int(mask.max()) + 1, 2)
    plot_label_panel(path, columns, title=title, num_classes=k)
