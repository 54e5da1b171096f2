"""Density priors on disk: estimate one from labels or bootstrap one from images without labels, and draw it.
The library functions behind ``mstool prior estimate|show``.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from .._fs import atomic_path, check_output_file
from ..data import (
    MaskEntry,
    collect_images,
    collect_masks,
    find_counterparts,
    find_masks_by_stem,
    read_images,
    read_label_set,
)
from ..device import make_generator
from ..errors import DataError, LayoutError
from ..io import normalize_image, read_image
from ..labels import apply_spec, count_classes, parse_spec
from ..metastructure import Prior, estimate_prior, load_prior, save_prior
from ..unsupervised import BOOTSTRAP_BANDWIDTH, bootstrap_prior, parse_bootstrap
from ..viz import plot_prior

__all__ = ["estimate_prior_from_labels", "estimate_prior_from_images", "show_prior", "PICTURE_SUFFIXES"]

PICTURE_SUFFIXES = (".png", ".pdf", ".svg")
"""Files a drawing may be written to."""


def estimate_prior_from_labels(
    labels: str | os.PathLike,
    *,
    ems: str | None = None,
    kernel: str = "box",
    bandwidth: float = 5,
    seed: int = 0,
    layout: str = "auto",
    splits: tuple[str, ...] | None = None,
    mask_suffix: str = "_masks",
    mask_mode: str | None = None,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    device: str | torch.device = "cpu",
) -> Prior:
    """Estimate a meta-structure density prior from a folder of (rough, sparse or noisy) labels.

    Args:
        labels: a label set: a dataset folder, a folder of masks, or a noisy copy written by
            :func:`mstool.runs.make_label_set` (every split, unless ``splits`` says which). All masks must have one
            size (a prior is one ``(N, C, H, W)`` array).
        ems: a label spec applied before the density, e.g. the paper's EMS ``skeleton+shift:1+sample:0.1``.
        kernel, bandwidth: the Parzen window (see :func:`mstool.metastructure.density`).
        seed: seed of the ``ems`` draw.
        mask_mode: how to read the masks (:func:`mstool.io.read_mask`); ``None``: the layout's default.
        out: also save the prior to this ``.npz`` file (checked before any work, written atomically).
        overwrite: replace an existing ``out``.

    Returns:
        The prior, named by image (mask suffixes removed), with ``source`` saying where it came from.

    Raises:
        DataError: masks of several sizes, or a mask whose size differs from its image's.
        LayoutError: no masks; two masks for one image name (in different splits: choose with ``splits``).
    """
    _check_out(out, overwrite, [labels])
    entries, mode = collect_labels(labels, layout=layout, splits=splits, mask_suffix=mask_suffix)
    arrays = read_label_set(entries, mode=mask_mode or mode)
    shapes = sorted({a.shape for a in arrays})
    if len(shapes) > 1:
        raise DataError(
            f"{labels}: a prior needs masks of one size; found {', '.join(f'{h} x {w}' for h, w in shapes)} "
            "(estimate one prior per size)"
        )
    check_unique_names(entries)
    batch = torch.from_numpy(np.stack(arrays)).to(device)
    num_classes = count_classes(batch)
    source = f"labels:{Path(labels)}"
    reference = batch
    if ems:
        batch = apply_spec(batch, ems, generator=make_generator(seed), num_classes=num_classes)
        source += f" ems:{parse_spec(ems)} seed:{seed}"
    class_names = ("background", "foreground") if num_classes == 2 else tuple(f"class{i}" for i in range(num_classes))
    # the fractions of the labels before EMS calibrate the prior (Prior.foreground)
    prior = estimate_prior(batch, [e.name for e in entries], num_classes=num_classes, class_names=class_names,
                           kernel=kernel, bandwidth=bandwidth, source=source, reference=reference)
    return _saved(prior, out)


def estimate_prior_from_images(
    images: str | os.PathLike,
    *,
    method: str | list[str] = "otsu",
    options: dict | None = None,
    ems: str | None = None,
    kernel: str = "box",
    bandwidth: float = BOOTSTRAP_BANDWIDTH,
    seed: int = 0,
    layout: str = "auto",
    splits: tuple[str, ...] | None = None,
    page: int | None = None,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    device: str | torch.device = "cpu",
) -> Prior:
    """A bootstrapped prior with no labels at all: segment the images with an unsupervised method (or several, for
    a consensus prior), optionally pass the masks through a label spec (EMS), and take their density
    (:func:`mstool.unsupervised.bootstrap_prior`).

    Args:
        images: images of one size: one image file, a folder of images, or a dataset folder (its images, never
            its masks; see :func:`mstool.data.collect_images`).
        method: an unsupervised method of :data:`mstool.unsupervised.METHODS` (``otsu``, ``local``, ``dfc`` ...),
            or several (``"otsu,local,kmeans,dfc"``) for the consensus prior.
        options: options for every method; ``foreground`` (``auto``, ``bright``, ``dark``) is read here and
            applied to all of them.
        ems: a label spec applied to the masks before the density (``skeleton+shift:1+sample:0.1``, ``sample:0.1``).
        kernel, bandwidth: the Parzen window (by default a pixel-level one,
            :data:`mstool.unsupervised.BOOTSTRAP_BANDWIDTH`).
        seed: seed of the methods and of the ``ems`` draw.
        layout, splits: how to read a dataset folder.
        page: the page of multi-page TIFF images.
        out: also save the prior to this ``.npz`` file (checked before any work, written atomically).
        overwrite: replace an existing ``out``.
    """
    chosen = parse_bootstrap(method)
    _check_out(out, overwrite, [images])
    options = dict(options or {})
    foreground = options.pop("foreground", "auto")
    loaded, _ = read_images(images, layout=layout, splits=splits, page=page)
    shapes = sorted({a.shape[:2] for _, a in loaded.values()})
    if len(shapes) > 1:
        raise DataError(
            f"{images}: a prior needs images of one size; found {', '.join(f'{h} x {w}' for h, w in shapes)}"
        )
    batch = torch.stack([normalize_image(a, channels=1, name=str(p)) for p, a in loaded.values()]).to(device)
    prior = bootstrap_prior(batch, list(loaded), chosen, foreground=foreground,
                            options={name: options for name in chosen} if options else None, ems=ems,
                            kernel=kernel, bandwidth=bandwidth, generator=make_generator(seed))
    return _saved(replace(prior, source=f"{prior.source} images:{Path(images)} seed:{seed}"), out)


def _check_out(out: str | os.PathLike | None, overwrite: bool, inputs: list) -> None:
    if out is not None:
        check_output_file(out, overwrite=overwrite, inputs=inputs, suffixes=(".npz",))


def _saved(prior: Prior, out: str | os.PathLike | None) -> Prior:
    if out is not None:
        save_prior(out, prior)
    return prior


def check_unique_names(entries: list[MaskEntry], needs: str = "a prior") -> None:
    seen: dict[str, MaskEntry] = {}
    for e in entries:
        if e.name in seen:
            raise LayoutError(
                f"{e.path}: image name {e.name!r} also names {seen[e.name].path}; {needs} needs one mask per name "
                "(choose a split with --split)"
            )
        seen[e.name] = e


def show_prior(
    prior_path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    images: str | os.PathLike | None = None,
    labels: str | os.PathLike | None = None,
    names: list[str] | None = None,
    max_rows: int = 4,
    splits: tuple[str, ...] | None = None,
    overwrite: bool = False,
) -> list[str]:
    """Draw a prior: one row per image with the image and label (when given) and the density of every class.
    Returns the names drawn.

    Args:
        images: an image file, a folder of images or a dataset folder (as :func:`estimate_prior_from_images`).
        labels: a label set (as :func:`estimate_prior_from_labels`).
        splits: the splits of dataset folders (or of a noisy copy's clean set) to look in (default: all).

    Raises:
        OutputExistsError: ``out`` exists and ``overwrite`` is not set.
        OutputError: ``out`` is not a picture file (``.png``, ``.pdf``, ``.svg``), or is one of the inputs.
        DataError: an image or mask whose size is not the prior's (the message names the file and both sizes).
        LayoutError: an entry drawn has no image or mask in the folders given.
    """
    check_output_file(out, overwrite=overwrite, inputs=[prior_path, images, labels], suffixes=PICTURE_SUFFIXES)
    prior = load_prior(prior_path)
    chosen = list(names) if names else list(prior.names[:max_rows])
    sub = prior.for_names(chosen)
    image_files, image_arrays = _images_to_draw(sub, images, chosen, splits) if images else (None, None)
    label_arrays = _labels_to_draw(sub, labels, chosen, splits, image_files) if labels else None
    with atomic_path(out) as tmp:
        plot_prior(
            tmp, sub.density, names=chosen, classes=sub.classes, images=image_arrays, labels=label_arrays,
            title=f"{Path(prior_path).name}: {sub.kernel} window, bandwidth {sub.bandwidth:g}; source {sub.source}",
        )
    return chosen


def _images_to_draw(prior: Prior, root: str | os.PathLike, names: list[str],
                    splits: tuple[str, ...] | None) -> tuple[list[Path], list[np.ndarray]]:
    """The images of ``names`` (found as the estimate finds them), each checked to be the size of its entry."""
    by_name = {e.name: e.path for e in collect_images(root, splits=splits)}
    files = _pick(by_name, names, root, "image")
    arrays = [read_image(p) for p in files]
    prior.match([str(p) for p in files], [a.shape[:2] for a in arrays])
    return files, arrays


def _labels_to_draw(prior: Prior, root: str | os.PathLike, names: list[str], splits: tuple[str, ...] | None,
                    image_files: list[Path] | None) -> list[np.ndarray]:
    """The masks of ``names`` (found as the estimate finds them), each checked against what it is drawn beside."""
    entries, mode = collect_labels(root, splits=splits)
    check_unique_names(entries)
    chosen = _pick({e.name: e for e in entries}, names, root, "label")
    arrays = read_label_set(chosen, mode=mode)
    h, w = prior.size
    for i, (entry, mask) in enumerate(zip(chosen, arrays)):
        if mask.shape != (h, w):
            # the images, when given, already match the prior, so its size is theirs too
            against = f"its image {image_files[i]}" if image_files else f"entry '{names[i]}' of prior {prior.path}"
            raise DataError(f"{entry.path}: mask is {mask.shape[0]} x {mask.shape[1]} but {against} is {h} x {w}")
    return arrays


def _pick(by_name: dict, names: list[str], root: str | os.PathLike, what: str) -> list:
    missing = [n for n in names if n not in by_name]
    if missing:
        raise LayoutError(f"{root}: no {what} named {', '.join(missing[:3])}")
    return [by_name[n] for n in names]


def collect_labels(labels: str | os.PathLike, *, layout: str = "auto", splits: tuple[str, ...] | None = None,
                   mask_suffix: str = "_masks") -> tuple[list[MaskEntry], str]:
    """The masks of a dataset folder, a folder of masks, or a noisy copy from ``mstool labels make``.

    A noisy copy holds masks only, at its clean set's relative paths, so no layout matches it; its masks are found
    as ``labels audit`` finds a noisy set's: the clean set named in its ``noise.json`` lists them, with their
    names, splits and images (whose sizes are checked).
    """
    try:
        return collect_masks(labels, layout=layout, splits=splits, mask_suffix=mask_suffix)
    except LayoutError:
        record = _recorded_copy(Path(labels))
        if record is None:
            raise
    # what the copy was made from, read as it was read then, unless the caller says otherwise
    clean = record["source"]
    layout = record["layout"] if layout == "auto" else layout
    splits = record["splits"] if splits is None else splits
    mask_suffix = record["mask_suffix"] if mask_suffix == "_masks" else mask_suffix
    try:
        entries, _ = collect_masks(clean, layout=layout, splits=splits, mask_suffix=mask_suffix)
    except LayoutError as exc:
        raise LayoutError(f"{labels} (a noisy copy of {clean}): {exc}") from None
    paths = find_counterparts(entries, labels)
    # a copy is written as 0/255 or palette PNGs whatever the clean layout's mode; `labels audit` reads it so too
    return [replace(e, path=p, rel=p.relative_to(labels)) for e, p in zip(entries, paths)], "auto"


def _recorded_copy(labels: Path) -> dict | None:
    """How a ``labels make`` copy was made (``source`` as a Path, ``layout``, ``splits``, ``mask_suffix``; older
    copies recorded only the source), or ``None`` for a folder with no ``noise.json``."""
    record = labels / "noise.json"
    if not record.is_file():
        return None
    try:
        meta = json.loads(record.read_text())
        source = meta["source"]
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{record}: not a noise.json written by `mstool labels make` ({exc})") from None
    clean = Path(source)
    if not clean.is_dir():
        folders = sorted({str(p.parent) for files in find_masks_by_stem(labels).values() for p in files})
        more = f" and {len(folders) - 3} more" if len(folders) > 3 else ""
        raise LayoutError(f"{labels}: a noisy copy of {source}, which is not found from here (its noise.json); run "
                          f"from where it was made, or pass one mask folder: {', '.join(folders[:3])}{more}")
    splits = meta.get("splits")
    return {"source": clean, "layout": meta.get("layout", "auto"),
            "splits": tuple(splits) if splits else None, "mask_suffix": meta.get("mask_suffix", "_masks")}
