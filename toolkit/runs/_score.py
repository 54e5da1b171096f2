"""Score predicted masks against ground truth, image by image and pooled. The library function behind
``mstool score``.

Legend: H, W pixels.

Masks pair up by image name: the file name without its extension and without a ``_mask`` or ``_masks`` suffix
(``cell1_mask.png`` is the truth of ``cell1.png``), as :func:`mstool.data.collect_masks` names the masks of a
dataset folder. Scoring is binary: foreground (1, or any object id) against background (0); 255 is ignored on
either side. Images may differ in size: each is counted on its own and the pooled figures sum the counts.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .. import IGNORE_INDEX
from .._fs import check_output_file, is_mstool_folder
from ..data import MASK_NAME_SUFFIXES, mask_image_name
from ..errors import DataError, LayoutError, MstoolWarning
from ..io import read_mask
from ..metrics import binary_scores, confusion_at_thresholds
from ._priors import collect_labels
from ._records import json_value, write_json

__all__ = ["score_masks", "ScoreReport", "MaskScore", "MASK_NAME_SUFFIXES"]

"""Suffixes of a mask's file stem that its image's name lacks; at most one is removed."""


@dataclass(frozen=True)
class MaskScore:
    """Predicted against true foreground: the ratios and the confusion counts they come from.

    A 0/0 ratio is NaN (:func:`mstool.metrics.binary_scores`): Dice and IoU when both masks are empty, precision
    when nothing is predicted, recall when the truth is empty. Ignored pixels count nowhere.

    Attributes:
        name: the image name (``"pooled"`` for the sum over images).
        mask, truth: the two files (``None`` for the pooled score).
        predicted, true: foreground pixels predicted (``tp + fp``) and true (``tp + fn``).
    """

    name: str
    mask: Path | None
    truth: Path | None
    dice: float
    iou: float
    precision: float
    recall: float
    predicted: int
    true: int
    tp: int
    fp: int
    fn: int
    tn: int


@dataclass(frozen=True)
class ScoreReport:
    """The scores of every pair of masks, their pooled score, and the masks that found no partner.

    Attributes:
        images: one :class:`MaskScore` per pair, in the order of the predicted masks.
        pooled: the ratios of the confusion counts summed over the images (a large object weighs more).
        mean_dice: the mean of the images' own Dice, NaN ones left out (NaN when none has a value).
        mean_dice_n: how many images have a Dice.
        unpaired_masks, unpaired_truth: predicted masks without truth, truth masks without a prediction.
    """

    masks: Path
    truth: Path
    images: tuple[MaskScore, ...]
    pooled: MaskScore
    mean_dice: float
    mean_dice_n: int
    unpaired_masks: tuple[Path, ...]
    unpaired_truth: tuple[Path, ...]

    def as_dict(self) -> dict:
        """Plain JSON values: NaN as ``None``, paths as strings."""

        def plain(score: MaskScore) -> dict:
            return {k: json_value(v) for k, v in asdict(score).items()}

        return {"masks": str(self.masks), "truth": str(self.truth), "images": [plain(s) for s in self.images],
                "pooled": plain(self.pooled), "mean_dice": json_value(self.mean_dice),
                "mean_dice_n": self.mean_dice_n, "unpaired_masks": [str(p) for p in self.unpaired_masks],
                "unpaired_truth": [str(p) for p in self.unpaired_truth]}


def score_masks(
    masks: str | os.PathLike,
    truth: str | os.PathLike,
    *,
    mask_mode: str | None = None,
    json_path: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> ScoreReport:
    """Score predicted masks against ground truth: Dice, IoU, precision and recall per image and pooled.

    Every mask is read with :func:`mstool.io.read_mask`: a 0/1 or 0/255 mask is binary, an instance mask (object
    ids) counts its objects as foreground, 255 is ignored. A predicted pixel of 255 is ignored too. A mask on
    either side that holds class indices (a palette mask of several classes) is refused: scoring is binary.

    Args:
        masks: predicted ``(H, W)`` masks: one mask file, a folder of masks, or an ``mstool segment`` or
            ``mstool predict`` output folder (its ``masks/``).
        truth: ground truth: one mask file, a folder of masks, a dataset folder of any layout (its masks), or a
            noisy copy from ``mstool labels make``.
        mask_mode: how to read the truth (:data:`mstool.io.MASK_MODES`); ``None``: the layout's default (``auto``
            for a folder of masks). Predicted masks are read in ``auto`` mode.
        json_path: also write :meth:`ScoreReport.as_dict` to this ``.json`` file (checked before any work).
        overwrite: replace an existing ``json_path``.

    Returns:
        The scores. A file named on one side pairs with the only mask on the other whatever their names;
        otherwise masks pair by image name.

    Raises:
        LayoutError: no pair at all (the message counts the masks of each side), or two masks of one side with
            one image name.
        DataError: a mask whose size differs from its truth's (both files and sizes named), a mask with class
            indices, or an unreadable mask value.
        FileReadError, FileMissingError: a file that cannot be read.
        OutputError, OutputExistsError: ``json_path`` is an input, not ``.json``, or exists without ``overwrite``.

    Warns:
        MstoolWarning: masks of one side with no partner on the other (they are left out).

    Example:
        >>> import tempfile
        >>> from mstool.io import write_mask
        >>> with tempfile.TemporaryDirectory() as d:
        ...     square = np.zeros((8, 8), dtype=np.int64)
        ...     square[2:6, 2:6] = 1
        ...     write_mask(Path(d) / "pred" / "a.png", square)
        ...     write_mask(Path(d) / "truth" / "a_mask.png", np.roll(square, 2, axis=1))
        ...     report = score_masks(Path(d) / "pred", Path(d) / "truth")
        >>> [(s.name, s.dice, s.predicted, s.true) for s in report.images]
        [('a', 0.5, 16, 16)]
    """
    if json_path is not None:
        check_output_file(json_path, overwrite=overwrite, inputs=[masks, truth], suffixes=(".json",))
    predicted, _ = _named_masks(_mask_root(masks))
    expected, layout_mode = _named_masks(Path(truth))
    pairs, lone_masks, lone_truth = _pair(predicted, expected, masks, truth)
    counts = torch.stack([_counts(p, t, mask_mode or layout_mode) for _, p, t in pairs])
    per_image = binary_scores(counts)
    images = tuple(_score(name, p, t, counts[i], {k: v[i] for k, v in per_image.items()})
                   for i, (name, p, t) in enumerate(pairs))
    pooled_counts = counts.sum(dim=0)
    dice = per_image["dice"][~torch.isnan(per_image["dice"])]
    report = ScoreReport(
        Path(masks), Path(truth), images, _score("pooled", None, None, pooled_counts, binary_scores(pooled_counts)),
        float(dice.mean()) if dice.numel() else float("nan"), int(dice.numel()), lone_masks, lone_truth)
    _warn_unpaired(report)
    if json_path is not None:
        write_json(json_path, report.as_dict(), indent=2)
    return report


def _mask_root(masks: str | os.PathLike) -> Path:
    """An ``mstool segment`` or ``mstool predict`` output keeps its masks in ``masks/`` beside overlays, scores
    and ``run.json``."""
    root = Path(masks)
    if root.is_dir() and (root / "masks").is_dir() and any(is_mstool_folder(root, kind=kind)
                                                           for kind in ("segment", "predict")):
        return root / "masks"
    return root


def _named_masks(root: Path) -> tuple[dict[str, Path], str]:
    """``{image name: mask file}`` of one file or of a label set, and the mode its layout reads masks in."""
    if root.is_file():
        return {mask_image_name(root.stem): root}, "auto"
    entries, mode = collect_labels(root)
    named: dict[str, Path] = {}
    for entry in entries:
        name = mask_image_name(entry.name)
        if name in named:
            raise LayoutError(f"{entry.path}: image name {name!r} also names {named[name]}; keep one mask per "
                              "image name")
        named[name] = entry.path
    return named, mode


def _pair(predicted: dict[str, Path], truth: dict[str, Path], masks: str | os.PathLike,
          truth_root: str | os.PathLike) -> tuple[list[tuple[str, Path, Path]], tuple[Path, ...], tuple[Path, ...]]:
    """``(name, mask, truth)`` pairs, then the predicted and the truth masks left without a partner."""
    if (Path(masks).is_file() or Path(truth_root).is_file()) and len(predicted) == len(truth) == 1:
        # one file named on the command line means "this mask against that one", whatever the names
        (name, mask), (truth_file,) = next(iter(predicted.items())), truth.values()
        return [(name, mask, truth_file)], (), ()
    pairs = [(name, path, truth[name]) for name, path in predicted.items() if name in truth]
    lone_masks = tuple(p for n, p in predicted.items() if n not in truth)
    lone_truth = tuple(p for n, p in truth.items() if n not in predicted)
    if not pairs:
        raise LayoutError(f"{masks}: no mask shares an image name with the truth in {truth_root} "
                          f"({len(predicted)} masks: {_few(predicted)}; {len(truth)} truth masks: {_few(truth)}); "
                          f"names are file names without extension and without {' or '.join(MASK_NAME_SUFFIXES)}")
    return pairs, lone_masks, lone_truth


def _counts(mask: Path, truth: Path, truth_mode: str) -> torch.Tensor:
    """``(4,)`` counts ``[tp, fp, fn, tn]`` of one predicted mask against its truth."""
    pred = _binary(read_mask(mask), mask, "mask")
    true = _binary(read_mask(truth, mode=truth_mode), truth, "truth mask")
    if pred.shape != true.shape:
        raise DataError(f"{mask}: mask is {pred.shape[0]} x {pred.shape[1]} but its truth {truth} is "
                        f"{true.shape[0]} x {true.shape[1]} (height x width)")
    labels = torch.from_numpy(np.where(pred == IGNORE_INDEX, IGNORE_INDEX, true))[None]
    probs = torch.from_numpy(pred == 1)[None, None].float()
    return confusion_at_thresholds(probs, labels, [0.5])[0, 0]


def _binary(labels: np.ndarray, path: Path, what: str) -> np.ndarray:
    values = np.unique(labels)
    classes = values[(values != IGNORE_INDEX)]
    if classes.size and classes.max() > 1:
        shown = ", ".join(str(v) for v in classes[:6].tolist()) + (", ..." if classes.size > 6 else "")
        raise DataError(f"{path}: {what} holds class indices {shown} ({classes.size} classes); scoring is binary "
                        "(foreground against background): score one class at a time, or read object ids with "
                        "--mask-mode instance (mode='instance')")
    return labels


def _score(name: str, mask: Path | None, truth: Path | None, counts: torch.Tensor,
           ratios: dict[str, torch.Tensor]) -> MaskScore:
    tp, fp, fn, tn = (int(v) for v in counts.tolist())
    return MaskScore(name, mask, truth, float(ratios["dice"]), float(ratios["iou"]), float(ratios["precision"]),
                     float(ratios["recall"]), tp + fp, tp + fn, tp, fp, fn, tn)


def _warn_unpaired(report: ScoreReport) -> None:
    if report.unpaired_masks:
        warnings.warn(f"{report.masks}: {len(report.unpaired_masks)} mask(s) without truth in {report.truth} are "
                      f"not scored: {_few(report.unpaired_masks)}", MstoolWarning, stacklevel=3)
    if report.unpaired_truth:
        warnings.warn(f"{report.truth}: {len(report.unpaired_truth)} truth mask(s) without a predicted mask in "
                      f"{report.masks} are not scored: {_few(report.unpaired_truth)}", MstoolWarning, stacklevel=3)


def _few(items, shown: int = 3) -> str:
    names = [Path(i).name if isinstance(i, Path) else str(i) for i in items]
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")
