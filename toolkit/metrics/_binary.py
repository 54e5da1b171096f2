"""Binary segmentation metrics: batched threshold sweeps, Dice/IoU/precision/recall/accuracy and rank AUC.

Legend: N batch · K thresholds · H, W pixels · P = H * W pixels per image.

Inputs follow one convention. Scores are ``(N, 1, H, W)`` floats: a foreground probability, or any score where
larger means "more foreground". Labels are ``(N, H, W)`` int64 holding 0 (background), 1 (foreground) or
``ignore_index`` (255); ignored pixels count nowhere, neither in the confusion counts nor in the AUC.

Conventions that bite:

- a pixel is predicted foreground when ``score >= threshold`` (the rule of ``sklearn.metrics.roc_curve``);
- polarity ``-1`` evaluates the inverted score ``1 - probs``, and the threshold is then read on that inverted
  score: ``polarity=-1, threshold=t`` predicts foreground where ``1 - probs >= t``, i.e. ``probs <= 1 - t``;
- every ratio whose denominator is 0 is NaN, never 0 or 1: Dice and IoU when the target and the prediction are
  both empty, precision when nothing is predicted, recall when the target is empty, accuracy and AUC when no
  pixel is labelled (AUC also when only one class is present). The AUC of polarity -1 is ``1 - AUC``, the
  AUC of the reversed ranking. NaN values are left out of means and standard
  deviations over images, which are reported with ``n`` = the number of images that had a value;
- per-image standard deviations are population standard deviations (``ddof = 0``), so one image gives 0;
- low-level functions (:func:`confusion_at_thresholds`, :func:`binary_scores`, :func:`roc_auc`) accept an
  empty batch ``N = 0`` and return empty (or, pooled, NaN) answers; :func:`binary_report` refuses it, since a
  report about nothing is a bug upstream.

Confusion counts are int64; ratios are float64 (float32 on Apple MPS, which has no float64).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .._check import check_in, check_int, check_labels, check_range, check_shape
from ..errors import DataError, DeviceMismatchError, DTypeError, ParameterError, ShapeError

__all__ = [
    "BINARY_METRICS",
    "threshold_grid",
    "confusion_at_thresholds",
    "binary_scores",
    "roc_auc",
    "binary_report",
]

BINARY_METRICS = ("dice", "iou", "precision", "recall", "accuracy")
"""Threshold-dependent metrics that :func:`binary_scores` returns (F1 is Dice)."""


# ----------------------------------------------------------------------------------------------- checks
def _check_binary(probs: torch.Tensor, labels: torch.Tensor, ignore_index: int, name: str = "probs",
                  labels_name: str = "labels") -> None:
    """``probs`` is a finite float ``(N, 1, H, W)`` batch, ``labels`` its ``(N, H, W)`` 0/1/ignore batch."""
    check_shape(probs, name, "N 1 H W", dtype="float")
    n, _, h, w = probs.shape
    check_shape(labels, labels_name, "N H W", dtype="int")
    # one fused pass instead of check_labels' masked copy; check_labels then words the error
    known = (labels == 0) | (labels == 1) | (labels == ignore_index)
    if labels.numel() and not bool(known.all()):
        check_labels(labels, labels_name, num_classes=2, ignore_index=ignore_index)
    if tuple(labels.shape) != (n, h, w):
        raise ShapeError(f"`{labels_name}` must be (N, H, W) = ({n}, {h}, {w}) to match `{name}`; "
                         f"got ({', '.join(map(str, labels.shape))})")
    if labels.device != probs.device:
        raise DeviceMismatchError(f"`{labels_name}` is on {labels.device} but `{name}` is on {probs.device}; "
                                  "move them to one device")
    if probs.numel() and not bool(torch.isfinite(probs).all()):
        raise DataError(f"`{name}` must hold finite scores; got NaN or infinite values")


def _check_polarity(polarity: int) -> int:
    p = check_int(polarity, "polarity", low=-1, high=1)
    if p == 0:
        raise ParameterError("`polarity` must be +1 or -1; got 0")
    return p


def _ratio_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


def _as_scores(probs: torch.Tensor, polarity: int = 1) -> torch.Tensor:
    """Half-precision scores are widened to float32 (bucketize and sort run on it); ``-1`` inverts them."""
    s = probs if probs.dtype in (torch.float32, torch.float64) else probs.float()
    return s if polarity == 1 else 1 - s


def _nan_mean_std(values: torch.Tensor) -> tuple[float, float, int]:
    """Mean, population std and count of the non-NaN entries of a 1-D tensor (NaN, NaN, 0 when none)."""
    kept = values[~torch.isnan(values)]
    if kept.numel() == 0:
        return math.nan, math.nan, 0
    return float(kept.mean()), float(kept.std(correction=0)), int(kept.numel())


# -------------------------------------------------------------------------------------------- functions
def threshold_grid(scores: torch.Tensor, num: int) -> torch.Tensor:
    """``num`` evenly spaced thresholds strictly between the smallest and the largest score.

    The levels are ``lo + (hi - lo) * k / (num + 1)`` for ``k = 1..num``: the endpoints are left out, because
    a threshold at ``lo`` predicts every pixel foreground and one above ``hi`` predicts none, and neither is a
    choice worth sweeping. A constant map (``lo == hi``) gives ``num`` copies of that value (every pixel is
    then predicted foreground). Ignored pixels take part in ``lo`` and ``hi``; that only moves the grid.

    Args:
        scores: any float tensor of scores, e.g. ``(N, 1, H, W)``.
        num: number of thresholds ``K >= 1``.

    Returns:
        ``(K,)`` ascending thresholds on the device and in the dtype of ``scores``.

    Raises:
        ShapeError: ``scores`` is empty.
        DTypeError: ``scores`` is not a float tensor.
        ParameterError: ``num < 1``.

    Example:
        >>> threshold_grid(torch.tensor([0.0, 1.0]), 3)
        tensor([0.2500, 0.5000, 0.7500])
    """
    if not isinstance(scores, torch.Tensor) or not scores.is_floating_point():
        got = getattr(scores, "dtype", type(scores).__name__)
        raise DTypeError(f"`scores` must be a float tensor; got {got}")
    if scores.numel() == 0:
        raise ShapeError("`scores` must hold at least one value to span a threshold grid; got an empty one")
    num = check_int(num, "num", low=1)
    wide = _ratio_dtype(scores.device)
    lo, hi = scores.min().to(wide), scores.max().to(wide)
    steps = torch.arange(1, num + 1, device=scores.device, dtype=wide) / (num + 1)
    return (lo + (hi - lo) * steps).to(scores.dtype)


def confusion_at_thresholds(
    probs: torch.Tensor,
    labels: torch.Tensor,
    thresholds: torch.Tensor | Sequence[float],
    *,
    ignore_index: int = 255,
) -> torch.Tensor:
    """Confusion counts of every image at every threshold, in one batched pass.

    Each score is bucketed once among the sorted thresholds (``O(P log K)``), the buckets are counted per
    image and class with one ``bincount``, and a cumulative sum over buckets turns the histogram into
    "predicted foreground at threshold k" counts. Memory is ``O(N P + N K)``, never ``O(N P K)``; there is no
    loop over thresholds. Pixel ``i`` is predicted foreground at threshold ``t`` when ``probs[i] >= t``.

    Args:
        probs: ``(N, 1, H, W)`` finite float scores (foreground probability or any score).
        labels: ``(N, H, W)`` int labels, 0 background, 1 foreground, ``ignore_index`` not counted.
        thresholds: ``(K,)`` thresholds in any order (a tensor or a sequence of floats).
        ignore_index: label value that marks unlabelled pixels.

    Returns:
        ``(N, K, 4)`` int64 counts ``[tp, fp, fn, tn]`` per image per threshold, on the device of ``probs``;
        ``(0, K, 4)`` for an empty batch.

    Raises:
        ShapeError: wrong shapes; ``thresholds`` not one-dimensional or empty.
        DTypeError: integer scores or float labels.
        DeviceMismatchError: ``probs`` and ``labels`` on different devices.
        ParameterError: labels other than 0, 1 and ``ignore_index``; a NaN threshold.
        DataError: NaN or infinite scores.

    Example:
        >>> probs = torch.tensor([0.1, 0.4, 0.6, 0.9]).view(1, 1, 2, 2)
        >>> labels = torch.tensor([[[0, 1], [0, 1]]])
        >>> confusion_at_thresholds(probs, labels, [0.5, 0.2])[0].tolist()
        [[1, 1, 1, 1], [2, 1, 0, 1]]
    """
    _check_binary(probs, labels, ignore_index)
    s = _as_scores(probs)
    t = torch.as_tensor(thresholds, device=s.device).to(s.dtype)
    if t.dim() != 1 or t.numel() == 0:
        raise ShapeError(f"`thresholds` must be a non-empty 1-D sequence (K,); got shape {tuple(t.shape)}")
    if bool(torch.isnan(t).any()):
        raise ParameterError("`thresholds` must not hold NaN")
    return _confusion(s, labels, t, ignore_index)


def binary_scores(counts: torch.Tensor) -> dict[str, torch.Tensor]:
    """Dice (F1), IoU, precision, recall and accuracy from confusion counts.

    ``dice = 2tp / (2tp + fp + fn)``, ``iou = tp / (tp + fp + fn)``, ``precision = tp / (tp + fp)``,
    ``recall = tp / (tp + fn)``, ``accuracy = (tp + tn) / (tp + fp + fn + tn)``. A 0/0 ratio is NaN: Dice and
    IoU when target and prediction are both empty, precision when nothing is predicted, recall when the target
    is empty, accuracy when no pixel is labelled. Pool over images by summing counts first.

    Args:
        counts: ``(..., 4)`` counts ``[tp, fp, fn, tn]``, e.g. the ``(N, K, 4)`` of
            :func:`confusion_at_thresholds`.

    Returns:
        A dict ``{name: (...) float64 tensor}`` with the keys of :data:`BINARY_METRICS`.

    Example:
        >>> out = binary_scores(torch.tensor([[3, 1, 1, 5], [0, 0, 0, 9]]))
        >>> [round(v, 3) for v in out["dice"].tolist()]
        [0.75, nan]
    """
    if not isinstance(counts, torch.Tensor):
        raise DTypeError(f"`counts` must be a torch.Tensor (..., 4) holding [tp, fp, fn, tn]; "
                         f"got {type(counts).__name__}")
    if counts.dim() < 1 or counts.shape[-1] != 4:
        raise ShapeError(f"`counts` must be (..., 4) holding [tp, fp, fn, tn]; got {tuple(counts.shape)}")
    c = counts.to(_ratio_dtype(counts.device))
    tp, fp, fn, tn = c.unbind(-1)
    return {
        "dice": 2 * tp / (2 * tp + fp + fn),
        "iou": tp / (tp + fp + fn),
        "precision": tp / (tp + fp),
        "recall": tp / (tp + fn),
        "accuracy": (tp + tn) / (tp + fp + fn + tn),
    }


def roc_auc(
    probs: torch.Tensor,
    labels: torch.Tensor,
    *,
    ignore_index: int = 255,
    reduction: str = "pooled",
) -> torch.Tensor:
    """Area under the ROC curve, from ranks (Mann-Whitney U), with tied scores counted one half.

    ``AUC = P(score of a foreground pixel > score of a background pixel) + 0.5 P(equal)``. Each row (an
    image, or the whole batch when pooled) is sorted once; the background counts below and within each run of
    tied scores then come from cumulative sums and running max / min scans, so ties are exact and the cost is
    ``O(P log P)`` with no pairwise comparison. A row without foreground or background has no AUC: NaN.

    Args:
        probs: ``(N, 1, H, W)`` finite float scores.
        labels: ``(N, H, W)`` int labels, 0, 1 or ``ignore_index``.
        ignore_index: label value that marks unlabelled pixels.
        reduction: ``"pooled"`` (one AUC over all labelled pixels of the batch, a 0-d tensor) or ``"none"``
            (one AUC per image, ``(N,)``).

    Returns:
        float64 AUC in [0, 1] (NaN where undefined), on the device of ``probs``.

    Example:
        >>> probs = torch.tensor([0.1, 0.4, 0.35, 0.8]).view(1, 1, 2, 2)
        >>> labels = torch.tensor([[[0, 0], [1, 1]]])
        >>> float(roc_auc(probs, labels))
        0.75
    """
    _check_binary(probs, labels, ignore_index)
    check_in(reduction, "reduction", ["pooled", "none"])
    auc = _auc(_as_scores(probs), labels, ignore_index, per_image=reduction == "none")
    return auc if reduction == "none" else auc[0]


def binary_report(
    probs: torch.Tensor,
    labels: torch.Tensor,
    *,
    threshold: float,
    polarity: int = 1,
    ignore_index: int = 255,
) -> dict[str, float | int]:
    """Every binary metric at one threshold, pooled over all pixels and per image (mean and std).

    Pooled metrics sum the confusion counts of all images first (a large object weighs more); per-image
    metrics average the images' own values, leaving out NaN ones (see the module notes).

    Args:
        probs: ``(N, 1, H, W)`` finite float scores, ``N >= 1``.
        labels: ``(N, H, W)`` int labels, 0, 1 or ``ignore_index``.
        threshold: foreground where ``score >= threshold``, the score being ``probs`` (polarity +1) or
            ``1 - probs`` (polarity -1).
        polarity: +1 evaluates ``probs``, -1 evaluates the inverted map ``1 - probs`` (its AUC is
            ``1 - AUC``, the AUC of the reversed ranking).
        ignore_index: label value that marks unlabelled pixels.

    Returns:
        A flat dict of Python numbers: for each metric ``m`` of :data:`BINARY_METRICS` and ``auc``: ``m``
        (pooled), ``m_img_mean``, ``m_img_std`` and ``m_img_n`` (images with a value); the pooled counts
        ``tp``, ``fp``, ``fn``, ``tn``; ``threshold``, ``polarity``, ``n_images`` and ``n_pixels`` (labelled).

    Raises:
        ShapeError: an empty batch or mismatched shapes.
        DTypeError, DeviceMismatchError: as for :func:`confusion_at_thresholds`.
        ParameterError: a polarity other than +1/-1, a NaN threshold, labels other than 0, 1, ignore.

    Example:
        >>> probs = torch.tensor([0.1, 0.4, 0.6, 0.9]).view(1, 1, 2, 2)
        >>> labels = torch.tensor([[[0, 1], [0, 1]]])
        >>> report = binary_report(probs, labels, threshold=0.5)
        >>> report["dice"], report["auc"], report["polarity"]
        (0.5, 0.75, 1)
    """
    _check_binary(probs, labels, ignore_index)
    _require_images(probs, "probs")
    polarity = _check_polarity(polarity)
    threshold = check_range(threshold, "threshold")
    plain = _as_scores(probs)
    s = plain if polarity == 1 else 1 - plain
    counts = _confusion(s, labels, torch.tensor([threshold], device=s.device, dtype=s.dtype), ignore_index)
    aucs = _auc_pair(plain, labels, ignore_index, polarity)
    return _summarise(counts[:, 0], aucs, threshold=threshold, polarity=polarity)


# ------------------------------------------------------------------------- unchecked cores and helpers
def _confusion(s: torch.Tensor, labels: torch.Tensor, t: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """:func:`confusion_at_thresholds` on checked ``(N, 1, H, W)`` scores and ``(K,)`` thresholds."""
    n, k = s.shape[0], t.numel()
    t_sorted, order = torch.sort(t)
    flat_s, flat_y = s.flatten(1), labels.flatten(1)
    # bucket b = number of thresholds <= score, so the pixel is foreground at sorted threshold j iff b > j;
    # the index adds (image, class) offsets so one bincount histograms every image and class at once.
    index = torch.bucketize(flat_s, t_sorted, right=True)
    index += (flat_y == 1) * (k + 1)
    index += torch.arange(n, device=s.device).unsqueeze(1) * (2 * (k + 1))
    trash = n * 2 * (k + 1)
    index.masked_fill_(flat_y == ignore_index, trash)
    hist = torch.bincount(index.reshape(-1), minlength=trash + 1)[:trash].view(n, 2, k + 1)
    at_or_above = hist.flip(-1).cumsum(-1).flip(-1)
    fp, tp = at_or_above[:, 0, 1:], at_or_above[:, 1, 1:]
    neg, pos = at_or_above[:, 0, :1], at_or_above[:, 1, :1]
    counts = torch.stack([tp, fp, pos - tp, neg - fp], dim=-1)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(k, device=order.device)
    return counts[:, inverse]


def _auc(s: torch.Tensor, labels: torch.Tensor, ignore_index: int, *, per_image: bool) -> torch.Tensor:
    """:func:`roc_auc` on checked scores: ``(N,)`` per image, or ``(1,)`` pooled over the batch.

    One sort per row; then, for every pixel, the background pixels strictly below its run of tied scores and
    those at or below it come from running max / min scans over the cumulative background count, so the cost
    after the sort is linear and ties count one half.
    """
    flat_s, flat_y = s.flatten(1), labels.flatten(1)
    if not per_image:
        flat_s, flat_y = flat_s.reshape(1, -1), flat_y.reshape(1, -1)
    rows, length = flat_s.shape
    wide = _ratio_dtype(s.device)
    if length == 0:
        return torch.full((rows,), torch.nan, dtype=wide, device=s.device)
    values, order = flat_s.sort(dim=1)
    y = flat_y.gather(1, order)
    pos, neg = y == 1, y == 0
    neg_upto = neg.cumsum(dim=1)
    tied = values[:, 1:] == values[:, :-1]
    edge = torch.ones(rows, 1, dtype=torch.bool, device=s.device)
    first, last = torch.cat([edge, ~tied], dim=1), torch.cat([~tied, edge], dim=1)
    # neg_upto never decreases, so the running max of its values at run starts is the one at this run's start
    below = torch.where(first, neg_upto - neg.long(), 0).cummax(dim=1).values
    at_or_below = torch.where(last, neg_upto, length).flip(1).cummin(dim=1).values.flip(1)
    twice_u = torch.where(pos, below + at_or_below, 0).sum(dim=1)
    return twice_u.to(wide) / (2 * pos.sum(dim=1).to(wide) * neg.sum(dim=1).to(wide))


def _auc_pair(probs: torch.Tensor, labels: torch.Tensor, ignore_index: int,
              polarity: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled AUC (0-d) and per-image AUC ``(N,)`` of checked scores; polarity -1 reverses the ranking, so
    its AUC is ``1 - AUC`` (exact even where ``1 - probs`` would round two scores together)."""
    pooled = _auc(probs, labels, ignore_index, per_image=False)[0]
    per_image = _auc(probs, labels, ignore_index, per_image=True)
    return (pooled, per_image) if polarity == 1 else (1 - pooled, 1 - per_image)


def _require_images(probs: torch.Tensor, name: str) -> None:
    if probs.shape[0] == 0:
        raise ShapeError(f"`{name}` must hold at least one image to report on; got N=0")


def _summarise(counts: torch.Tensor, aucs: tuple[torch.Tensor, torch.Tensor], *, threshold: float,
               polarity: int) -> dict[str, float | int]:
    """Flat report from ``(N, 4)`` counts at one threshold and the (pooled, per-image) AUC."""
    auc, auc_img = aucs
    pooled_counts = counts.sum(dim=0)
    pooled = binary_scores(pooled_counts)
    per_image = binary_scores(counts)
    out: dict[str, float | int] = {"threshold": float(threshold), "polarity": int(polarity)}
    pooled["auc"], per_image["auc"] = auc, auc_img
    for name in (*BINARY_METRICS, "auc"):
        mean, std, kept = _nan_mean_std(per_image[name])
        out[name] = float(pooled[name])
        out[f"{name}_img_mean"], out[f"{name}_img_std"], out[f"{name}_img_n"] = mean, std, kept
    tp, fp, fn, tn = (int(v) for v in pooled_counts.tolist())
    out.update(tp=tp, fp=fp, fn=fn, tn=tn, n_images=int(counts.shape[0]), n_pixels=tp + fp + fn + tn)
    return out
