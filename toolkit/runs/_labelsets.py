"""Label sets on disk: make noisy copies with the label zoo, analyse them against the clean set, and audit them
before training. The library functions behind ``mstool labels make|analyze|audit``.

A label set is a dataset folder (any layout) or a plain folder of masks; a noisy copy mirrors its clean set file
for file.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .._fs import atomic_dir, check_output_dir, check_output_file
from .._version import __version__
from ..data import MaskEntry, collect_masks, find_counterparts, read_label_set, stack_labels
from ..device import make_generator
from ..errors import DataError, LayoutError, ParameterError
from ..io import read_mask, write_mask
from ..labels import MIN_SIGNAL, apply_spec, count_classes, label_info, parse_spec
from ..metastructure import ExpectedSimilarity, density, expected_density, expected_similarity, meta_similarity
from ..viz import plot_label_panel
from ._records import write_json

__all__ = ["make_label_set", "analyze_label_sets", "LabelSetReport", "audit_label_sets", "LabelAudit", "VERDICTS"]


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
    that keeps 255 = ignore exact). ``OUT/noise.json`` records the spec, seed, source (absolute), how it was read
    (layout, splits, mask suffix) and the mstool version. The folder appears only when complete.

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
    num_classes = max(count_classes(torch.from_numpy(a)) for a in labels_np)
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
            # absolute, and how it was read, so that the copy's masks are found from anywhere, split for split
            "source": os.path.abspath(clean),
            "layout": layout,
            "splits": list(splits) if splits else None,
            "mask_suffix": mask_suffix,
            "masks": len(entries),
            "num_classes": num_classes,
            "mstool_version": __version__,
        }
        write_json(tmp / "noise.json", meta, indent=2)
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
    json_path: str | os.PathLike | None = None,
    overwrite: bool = False,
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
        json_path: also write every statistic to this ``.json`` file (checked before any work).
        overwrite: replace an existing ``json_path``.

    Returns:
        One report per noisy set, in the order given.
    """
    if not noisy:
        raise ParameterError("`noisy` must name at least one label set")
    if json_path is not None:
        check_output_file(json_path, overwrite=overwrite, inputs=[clean, *noisy], suffixes=(".json",))
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
        k = max(count_classes(clean_labels), count_classes(noisy_labels))
        expected = expected_similarity(clean_labels, noisy_labels, k, bootstrap=0)
        info = label_info(clean_labels, noisy_labels, k, distance=distance, expected_score=expected.score,
                          expected_signal=expected.signal).as_dict()
        info["expected_score"] = _finite(expected.score)
        sim = meta_similarity(clean_labels, noisy_labels, k, bandwidths=bandwidths).mean()
        reports.append(LabelSetReport(str(root), info, {key: _finite(v) for key, v in sim.items()}))
    if json_path is not None:
        write_json(json_path, [r.as_dict() for r in reports], indent=2)
    return reports


VERDICTS = {
    "CL": "the clean labels themselves",
    "RCL": "keeps the meta-structure: expect near-clean training",
    "PCL": "moves the meta-structure: expect a loss",
    "RL": "carries no structure: expect the network to learn next to nothing",
}
"""The one-line verdict of :func:`audit_label_sets` for each taxonomy class."""


@dataclass(frozen=True)
class LabelAudit:
    """What training on one noisy label set should give, judged from the labels alone (:func:`audit_label_sets`).

    Attributes:
        name: the noisy set's folder.
        used: masks compared (those with a clean counterpart of the same size).
        available: masks in the noisy set.
        expected: the expected-density score with its interval and the one-draw similarity.
        taxonomy: ``CL``, ``RCL``, ``PCL`` or ``RL`` (:func:`mstool.labels.classify_label`, expected-density
            rule included).
        verdict: one line a person can act on.
        info: every statistic of :func:`mstool.labels.label_info`.
    """

    name: str
    used: int
    available: int
    expected: ExpectedSimilarity
    taxonomy: str
    verdict: str
    info: dict

    def as_dict(self) -> dict:
        return {"name": self.name, "used": self.used, "available": self.available, "taxonomy": self.taxonomy,
                "verdict": self.verdict, **{f"expected_{k}": v for k, v in self.expected.as_dict().items()},
                "label_info": self.info}


def audit_label_sets(
    clean: str | os.PathLike,
    noisy: list[str | os.PathLike],
    *,
    layout: str = "auto",
    splits: tuple[str, ...] | None = None,
    mask_suffix: str = "_masks",
    mask_mode: str | None = None,
    bandwidth: int = 1,
    bootstrap: int = 1000,
    seed: int = 0,
    pictures: str | os.PathLike | None = None,
    json_path: str | os.PathLike | None = None,
    overwrite: bool = False,
    device: str | torch.device = "cpu",
) -> list[LabelAudit]:
    """Judge noisy label sets before training on them: the expected-density score, its class and a verdict.

    The clean set may cover only some of a noisy set's images (a few expert masks beside many cheap ones): every
    noisy mask with a clean counterpart is used, and :attr:`LabelAudit.used` says how many.

    Args:
        clean: the clean label set (a dataset folder or a folder of masks).
        noisy: noisy label sets mirroring its file names (one mask per image; extra masks are counted, not used).
        layout, splits, mask_suffix, mask_mode: how to read the clean set, as in :func:`analyze_label_sets`.
        bandwidth: box half-width of the densities (:func:`mstool.metastructure.expected_similarity`).
        bootstrap: resamples of the images for the score's 95% interval.
        seed: seed of the resamples.
        pictures: a folder to draw one picture per noisy set into (clean density | one noisy draw | the
            expected-density estimate | its difference from the clean density, rescaled), or ``None``.
        json_path: also write every statistic to this ``.json`` file (checked before any work).
        overwrite: replace a pictures folder mstool wrote, and an existing ``json_path``.
        device: where the statistics are computed.

    Returns:
        One :class:`LabelAudit` per noisy set, in the order given.

    Raises:
        LayoutError: a noisy set shares no mask name with the clean set.
        DataError: a noisy mask whose size differs from its clean counterpart's (both files named).
    """
    if not noisy:
        raise ParameterError("`noisy` must name at least one label set")
    if pictures is not None:
        check_output_dir(pictures, overwrite=overwrite, inputs=[clean, *noisy])
    if json_path is not None:
        check_output_file(json_path, overwrite=overwrite, inputs=[clean, *noisy], suffixes=(".json",))
    entries, mode = collect_masks(clean, layout=layout, splits=splits, mask_suffix=mask_suffix)
    clean_arrays = read_label_set(entries, mode=mask_mode or mode)
    pairs = [_audit_pair(clean, entries, clean_arrays, root, mask_mode) for root in noisy]
    out = []
    drawings = []
    for root, clean_list, noisy_list, available in pairs:
        clean_labels = stack_labels(clean_list)[0].to(device)
        noisy_labels = stack_labels(noisy_list)[0].to(device)
        k = max(count_classes(clean_labels), count_classes(noisy_labels))
        expected = expected_similarity(clean_labels, noisy_labels, k, bandwidth=bandwidth, bootstrap=bootstrap,
                                       generator=make_generator(seed))
        info = label_info(clean_labels, noisy_labels, k, expected_score=expected.score,
                          expected_signal=expected.signal).as_dict()
        taxonomy = info.pop("taxonomy")
        verdict = VERDICTS[taxonomy]
        if taxonomy == "RCL" and expected.signal < MIN_SIGNAL:
            verdict += (f", but slowly: only {expected.signal:.0%} of its density's variance is structure, so "
                        "training needs many more steps to converge")
        if expected.polarity < 0 and taxonomy in ("RCL", "PCL"):
            verdict += " (the classes are inverted: choose the polarity on validation data)"
        out.append(LabelAudit(str(root), len(clean_list), max(available, len(clean_list)), expected, taxonomy,
                              verdict, info))
        if pictures is not None:
            drawings.append((k, _audit_columns(clean_labels, noisy_labels, k, bandwidth, expected)))
    if pictures is not None:
        with atomic_dir(pictures, overwrite=overwrite, inputs=[clean, *noisy], kind="audit") as tmp:
            for audit, file, (k, columns) in zip(out, _picture_names([a.name for a in out]), drawings, strict=True):
                plot_label_panel(tmp / f"{file}.png", columns, num_classes=k,
                                 title=f"{Path(audit.name).name}: {audit.taxonomy}, expected-density score "
                                       f"{audit.expected.score:.3f} (one draw {audit.expected.one_draw:.3f})")
    if json_path is not None:
        write_json(json_path, [a.as_dict() for a in out], indent=2)
    return out


def _audit_pair(clean: str | os.PathLike, entries: list[MaskEntry], clean_arrays: list[np.ndarray],
                root: str | os.PathLike, mask_mode: str | None = None) -> tuple:
    """The masks of one noisy set that have a clean counterpart, with those counterparts, all checked for size;
    the noisy masks are read as ``mask_mode`` says (``None``: ``auto``), as :func:`analyze_label_sets` reads them."""
    paths = find_counterparts(entries, root, allow_missing=True)
    used = [(e, a, p) for e, a, p in zip(entries, clean_arrays, paths) if p is not None]
    if not used:
        raise LayoutError(f"{root}: no mask shares a name with the clean labels in {clean} "
                          f"(the first clean mask is {entries[0].rel})")
    noisy_arrays = [read_mask(p, mode=mask_mode or "auto") for _, _, p in used]
    wrong = [(p, b.shape, e.path, a.shape) for (e, a, p), b in zip(used, noisy_arrays) if a.shape != b.shape]
    if wrong:
        p, b, c, a = wrong[0]
        more = f" ({len(wrong) - 1} more masks differ)" if len(wrong) > 1 else ""
        raise DataError(f"{p}: noisy mask is {b[0]} x {b[1]} but the clean mask {c} is {a[0]} x {a[1]}{more}")
    return root, [a for _, a, _ in used], noisy_arrays, _count_masks(root)


def _count_masks(root: str | os.PathLike) -> int:
    try:
        return len(collect_masks(root)[0])
    except (LayoutError, DataError):
        return 0


def _picture_names(names: list[str]) -> list[str]:
    """One file name per label set: its folder's name, with as many parent folders as make the names differ
    (``a/set`` and ``b/set`` give ``a_set`` and ``b_set``), then a count for a set given twice."""
    parts = [Path(n).resolve().parts for n in names]
    for depth in range(1, max(len(p) for p in parts) + 1):
        files = ["_".join(p[-depth:]) for p in parts]
        if len(set(files)) == len(set(parts)):  # a set given twice cannot differ by its path
            break
    files = ["".join(c if c.isalnum() or c in "-_." else "_" for c in f) or "labels" for f in files]
    seen: dict[str, int] = {}
    for i, f in enumerate(files):
        seen[f] = seen.get(f, 0) + 1
        files[i] = f if seen[f] == 1 else f"{f}-{seen[f]}"
    return files


def _audit_columns(clean: torch.Tensor, noisy: torch.Tensor, k: int, bandwidth: int,
                   expected: ExpectedSimilarity) -> list[tuple[str, np.ndarray, str]]:
    """The picture of one set, drawn on its first image: densities of foreground class 1."""
    c, y = clean[:1], noisy[:1]
    d_clean = density(c, k, bandwidth=bandwidth, normalize_ignored=False)[0, 1]
    d_draw = density(y, k, bandwidth=bandwidth, normalize_ignored=False)[0, 1]
    d_expected = expected_density(clean, noisy, k, bandwidth=bandwidth)[0, 0]
    # Lemma 1: a sampled label's density is a scaled clean density; compare shapes, not scales.
    x = torch.stack([d_clean.flatten(), torch.ones_like(d_clean.flatten())], 1).double()
    coef = torch.linalg.lstsq(x, d_expected.flatten().double()[:, None]).solution
    fitted = (x @ coef).view_as(d_clean).float()
    span = (fitted.max() - fitted.min()).clamp(min=1e-12)
    return [("clean label", c[0].cpu().numpy(), "label"),
            ("clean density", d_clean.cpu().numpy(), "density"),
            ("noisy label (one draw)", y[0].cpu().numpy(), "label"),
            (f"its density (r {expected.one_draw:.2f})", d_draw.cpu().numpy(), "density"),
            (f"expected density (score {expected.score:.2f})", d_expected.cpu().numpy(), "density"),
            ("expected - rescaled clean (/ its range)", ((d_expected - fitted) / span).cpu().numpy(), "difference")]


def _finite(v: float) -> float | None:
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else float(v)
