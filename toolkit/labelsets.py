"""Label sets on disk: make noisy copies, analyse them against the clean set, estimate and draw density priors.

These are the library functions behind ``mstool labels make|analyze`` and ``mstool prior estimate|show``. A label
set is a dataset folder (any layout) or a plain folder of masks; a noisy copy mirrors its clean set file for file.
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ._fs import atomic_dir, atomic_path, check_output_dir, check_output_file
from ._version import __version__
from .data import discover_layout
from .data._collect import MaskEntry, collect_images, collect_masks, find_counterparts, read_label_set, stack_labels
from .device import make_generator
from .errors import DataError, LayoutError, ParameterError
from .io import find_images, read_image, read_mask, write_mask
from .labels import apply_spec, label_info, parse_spec
from .metastructure import Prior, estimate_prior, load_prior, meta_similarity

__all__ = [
    "make_label_set",
    "analyze_label_sets",
    "LabelSetReport",
    "estimate_prior_from_labels",
    "estimate_prior_from_images",
    "show_prior",
]


PICTURE_SUFFIXES = (".png", ".pdf", ".svg")
"""Files a drawing may be written to."""


def _num_classes(labels: torch.Tensor) -> int:
    valid = labels[labels != 255]
    return max(int(valid.max()) + 1 if valid.numel() else 2, 2)


def make_label_set(
    clean: str | os.PathLike,
    spec: str,
    out: str | os.PathLike,
    *,
    seed: int = 0,
    layout: str = "auto",
    splits: tuple[str, ...] | None = None,
    mask_suffix: str = "_masks",
    mask_mode: str | None = None,
    device: str | torch.device = "cpu",
    overwrite: bool = False,
) -> dict:
    """Write a noisy copy of a label set: every clean mask passed through the label spec ``spec``.

    Masks of one size are noised as one batch on ``device`` (so ``sample``/``flip`` counts are exact per image);
    each noisy mask is written as PNG at the clean mask's relative path (binary: 0/255; otherwise a VOC palette PNG
    that keeps 255 = ignore exact). ``OUT/noise.json`` records the spec, seed, source and mstool version. The
    folder appears only when complete.

    Args:
        clean: the clean label set (dataset folder or mask folder).
        spec: a label spec such as ``sample:0.1`` or ``skeleton+shift:1+sample:0.1``.
        out: output folder.
        seed: seed of the noise draw.
        layout, splits, mask_suffix: how to read ``clean`` (see :func:`mstool.data.discover_layout`).
        mask_mode: how to read the masks (:func:`mstool.io.read_mask`); ``None``: the layout's default.
        device: where the noise is computed.
        overwrite: replace a non-empty ``out`` that mstool wrote, once the new one is complete.

    Returns:
        The content of ``noise.json`` (with the number of masks written).

    Raises:
        OutputError: ``out`` is, contains or lies inside ``clean``, or is a non-empty folder mstool did not write.
    """
    label_spec = parse_spec(spec)
    check_output_dir(out, overwrite=overwrite, inputs=[clean])
    entries, mode = collect_masks(clean, layout=layout, splits=splits, mask_suffix=mask_suffix)
    labels_np = read_label_set(entries, mode=mask_mode or mode)
    num_classes = max(_num_classes(torch.from_numpy(a)) for a in labels_np)
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, a in enumerate(labels_np):
        groups[a.shape].append(i)
    generator = make_generator(seed)
    with atomic_dir(out, overwrite=overwrite, inputs=[clean], kind="labels") as tmp:
        for idx in groups.values():
            batch = torch.from_numpy(np.stack([labels_np[i] for i in idx])).to(device)
            noisy = apply_spec(batch, label_spec, generator=generator, num_classes=num_classes).cpu().numpy()
            for j, i in enumerate(idx):
                write_mask(tmp / entries[i].rel.with_suffix(".png"), noisy[j])
        meta = {
            "spec": str(label_spec),
            "seed": seed,
            "source": str(Path(clean)),
            "masks": len(entries),
            "num_classes": num_classes,
            "mstool_version": __version__,
        }
        (tmp / "noise.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


@dataclass(frozen=True)
class LabelSetReport:
    """How one noisy label set relates to the clean one (pooled over all its masks)."""

    name: str
    info: dict
    similarity: dict

    def as_dict(self) -> dict:
        return {"name": self.name, **self.info, **{f"similarity_{k}": v for k, v in self.similarity.items()}}


def analyze_label_sets(
    clean: str | os.PathLike,
    noisy: list[str | os.PathLike],
    *,
    layout: str = "auto",
    splits: tuple[str, ...] | None = None,
    mask_suffix: str = "_masks",
    mask_mode: str | None = None,
    distance: int = 2,
    bandwidths: tuple[float, ...] = (2, 4, 8),
    device: str | torch.device = "cpu",
) -> list[LabelSetReport]:
    """Compare noisy label sets with their clean set: NTM, rank, det, MI, boundary fraction, meta-structure
    similarity and the taxonomy class (CL / RCL / PCL / RL), pooled over every mask.

    Masks of different sizes are padded with the ignore index, which every statistic leaves out.

    Args:
        clean: the clean label set.
        noisy: noisy label sets mirroring ``clean`` (as written by :func:`make_label_set`, or by hand).
        mask_mode: how to read the clean masks, and the noisy ones (``None``: the layout's default for the clean
            masks, ``auto`` for the noisy ones).
        distance: boundary band half-width for the boundary fraction (chessboard pixels).
        bandwidths: box-window half-widths of the meta-structure similarity.

    Returns:
        One report per noisy set, in the order given.
    """
    if not noisy:
        raise ParameterError("`noisy` must name at least one label set")
    entries, mode = collect_masks(clean, layout=layout, splits=splits, mask_suffix=mask_suffix)
    clean_labels, sizes = stack_labels(read_label_set(entries, mode=mask_mode or mode))
    clean_labels = clean_labels.to(device)
    reports = []
    for root in noisy:
        paths = find_counterparts(entries, root)
        noisy_labels, noisy_sizes = stack_labels([read_mask(p, mode=mask_mode or "auto") for p in paths])
        for e, a, b, p in zip(entries, sizes, noisy_sizes, paths):
            if a != b:
                raise DataError(f"{p}: noisy mask is {b[0]} x {b[1]} but the clean mask {e.path} is {a[0]} x {a[1]}")
        noisy_labels = noisy_labels.to(device)
        k = max(_num_classes(clean_labels), _num_classes(noisy_labels))
        info = label_info(clean_labels, noisy_labels, k, distance=distance).as_dict()
        sim = meta_similarity(clean_labels, noisy_labels, k, bandwidths=bandwidths).mean()
        reports.append(LabelSetReport(str(root), info, {key: _finite(v) for key, v in sim.items()}))
    return reports


def _finite(v: float) -> float | None:
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else float(v)


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
    device: str | torch.device = "cpu",
) -> Prior:
    """Estimate a meta-structure density prior from a folder of (rough, sparse or noisy) labels.

    Args:
        labels: a label set (dataset folder or mask folder). All masks must have one size (a prior is one
            ``(N, C, H, W)`` array).
        ems: a label spec applied before the density, e.g. the paper's EMS ``skeleton+shift:1+sample:0.1``.
        kernel, bandwidth: the Parzen window (see :func:`mstool.metastructure.density`).
        seed: seed of the ``ems`` draw.
        mask_mode: how to read the masks (:func:`mstool.io.read_mask`); ``None``: the layout's default.

    Returns:
        The prior, named by image (mask suffixes removed), with ``source`` saying where it came from.

    Raises:
        DataError: masks of several sizes, or a mask whose size differs from its image's.
    """
    entries, mode = collect_masks(labels, layout=layout, splits=splits, mask_suffix=mask_suffix)
    arrays = read_label_set(entries, mode=mask_mode or mode)
    shapes = sorted({a.shape for a in arrays})
    if len(shapes) > 1:
        raise DataError(
            f"{labels}: a prior needs masks of one size; found {', '.join(f'{h} x {w}' for h, w in shapes)} "
            "(estimate one prior per size)"
        )
    _check_unique_names(entries)
    batch = torch.from_numpy(np.stack(arrays)).to(device)
    num_classes = _num_classes(batch)
    source = f"labels:{Path(labels)}"
    reference = batch
    if ems:
        batch = apply_spec(batch, ems, generator=make_generator(seed), num_classes=num_classes)
        source += f" ems:{parse_spec(ems)} seed:{seed}"
    class_names = ("background", "foreground") if num_classes == 2 else tuple(f"class{i}" for i in range(num_classes))
    # the fractions of the labels before EMS calibrate the prior (Prior.foreground)
    return estimate_prior(batch, [e.name for e in entries], num_classes=num_classes, class_names=class_names,
                          kernel=kernel, bandwidth=bandwidth, source=source, reference=reference)


def estimate_prior_from_images(
    images: str | os.PathLike,
    *,
    method: str | list[str] = "otsu",
    options: dict | None = None,
    ems: str | None = None,
    kernel: str = "box",
    bandwidth: float = 5,
    seed: int = 0,
    layout: str = "auto",
    splits: tuple[str, ...] | None = None,
    page: int | None = None,
    device: str | torch.device = "cpu",
) -> Prior:
    """A bootstrapped prior with no labels at all: segment the images with an unsupervised method (or several, for
    a consensus prior), optionally pass the masks through a label spec (EMS), and take their density
    (:func:`mstool.unsupervised.bootstrap_prior`).

    Args:
        images: images of one size: a folder of images, or a dataset folder (its images, never its masks; see
            :func:`mstool.data.collect_images`).
        method: an unsupervised method of :data:`mstool.unsupervised.METHODS` (``otsu``, ``local``, ``dfc`` ...),
            or several (``"otsu,local,kmeans,dfc"``) for the consensus prior.
        options: options for every method; ``foreground`` (``auto``, ``bright``, ``dark``) is read here and
            applied to all of them.
        ems: a label spec applied to the masks before the density (``skeleton+shift:1+sample:0.1``, ``sample:0.1``).
        kernel, bandwidth: the Parzen window.
        seed: seed of the methods and of the ``ems`` draw.
        layout, splits: how to read a dataset folder.
        page: the page of multi-page TIFF images.
    """
    from .io import normalize_image
    from .unsupervised import bootstrap_prior, parse_bootstrap

    chosen = parse_bootstrap(method)
    options = dict(options or {})
    foreground = options.pop("foreground", "auto")
    entries = collect_images(images, layout=layout, splits=splits)
    files = [e.path for e in entries]
    arrays = [read_image(p, page=page) for p in files]
    shapes = sorted({a.shape[:2] for a in arrays})
    if len(shapes) > 1:
        raise DataError(
            f"{images}: a prior needs images of one size; found {', '.join(f'{h} x {w}' for h, w in shapes)}"
        )
    batch = torch.stack([normalize_image(a, channels=1, name=str(p)) for p, a in zip(files, arrays)]).to(device)
    prior = bootstrap_prior(batch, [e.name for e in entries], chosen, foreground=foreground,
                            options={name: options for name in chosen} if options else None, ems=ems,
                            kernel=kernel, bandwidth=bandwidth, generator=make_generator(seed))
    return replace(prior, source=f"{prior.source} images:{Path(images)} seed:{seed}")


def _check_unique_names(entries: list[MaskEntry]) -> None:
    seen: dict[str, MaskEntry] = {}
    for e in entries:
        if e.name in seen:
            raise LayoutError(
                f"{e.path}: image name {e.name!r} also names {seen[e.name].path}; a prior needs one mask per name "
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
    overwrite: bool = False,
) -> list[str]:
    """Draw a prior: one row per image with the image and label (when their folders are given) and the density of
    every class. Returns the names drawn.

    Raises:
        OutputExistsError: ``out`` exists and ``overwrite`` is not set.
        OutputError: ``out`` is not a picture file (``.png``, ``.pdf``, ``.svg``), or is one of the inputs.
    """
    check_output_file(out, overwrite=overwrite, inputs=[prior_path, images, labels], suffixes=PICTURE_SUFFIXES)
    prior = load_prior(prior_path)
    chosen = list(names) if names else list(prior.names[:max_rows])
    sub = prior.for_names(chosen)
    image_list = _lookup_files(images, chosen, "image") if images else None
    label_list = _lookup_files(labels, chosen, "label") if labels else None
    from .viz import plot_prior

    with atomic_path(out) as tmp:
        plot_prior(
            tmp, sub.density, names=chosen, classes=sub.classes,
            images=[read_image(p) for p in image_list] if image_list else None,
            labels=[read_mask(p) for p in label_list] if label_list else None,
            title=f"{Path(prior_path).name}: {sub.kernel} window, bandwidth {sub.bandwidth:g}; source {sub.source}",
        )
    return chosen


def _lookup_files(root: str | os.PathLike, names: list[str], what: str) -> list[Path]:
    """Files of a dataset folder (any layout) or a plain folder, by image name."""
    root = Path(root)
    try:
        found = discover_layout(root)
    except LayoutError:
        by_name = {p.stem: p for p in find_images(root)}
    else:
        by_name = {}
        for split in found.splits:
            for s in found.scan(split)[0]:
                path = s.image if what == "image" else s.mask
                if path is not None:
                    by_name.setdefault(s.name, path)
    missing = [n for n in names if n not in by_name]
    if missing:
        raise LayoutError(f"{root}: no {what} named {', '.join(missing[:3])}")
    return [by_name[n] for n in names]
