"""Multi-class segmentation metrics: confusion matrices, per-class IoU and Dice, mIoU, pixel accuracy.

Legend: N batch · K classes · H, W pixels.

Conventions that bite:

- confusion matrices are indexed ``cm[true, predicted]`` (rows are the label, as in scikit-learn);
- pixels whose label is ``ignore_index`` (255) count nowhere; predictions must be real classes ``0..K-1``;
- the IoU (and Dice) of a class absent from both the prediction and the target is 0/0 = NaN and is left out of
  mIoU (and mean Dice); a class present in the target but never predicted scores 0 and stays in;
- per-image means and standard deviations (population, ``ddof = 0``) are over the images that have a value.
"""

from __future__ import annotations

import torch

from .._check import check_in, check_int, check_labels
from ..errors import DeviceMismatchError, DTypeError, ShapeError
from ._binary import _nan_mean_std, _ratio_dtype, _require_images

__all__ = ["confusion_matrix", "multiclass_report", "multiclass_report_from_confusion"]


def confusion_matrix(
    pred: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    *,
    ignore_index: int = 255,
    reduction: str = "pooled",
) -> torch.Tensor:
    """Pixel confusion matrix ``cm[true, predicted]``, pooled or per image, in one ``bincount``.

    Args:
        pred: ``(N, H, W)`` int predicted classes in ``0..K-1``.
        labels: ``(N, H, W)`` int labels in ``0..K-1`` or ``ignore_index``.
        num_classes: ``K >= 1``.
        ignore_index: label value that marks unlabelled pixels.
        reduction: ``"pooled"`` for one ``(K, K)`` matrix, ``"none"`` for ``(N, K, K)`` per image.

    Returns:
        int64 counts on the device of ``pred``.

    Raises:
        ShapeError: wrong shapes.
        DTypeError: float predictions or labels.
        DeviceMismatchError: ``pred`` and ``labels`` on different devices.
        ParameterError: a class index outside ``0..K-1`` (or ``ignore_index`` in labels); a bad
            ``num_classes``.

    Example:
        >>> pred = torch.tensor([[[0, 1], [1, 1]]])
        >>> labels = torch.tensor([[[0, 0], [1, 255]]])
        >>> confusion_matrix(pred, labels, 2).tolist()
        [[1, 1], [0, 1]]
    """
    num_classes = _check_pair(pred, labels, num_classes, ignore_index)
    check_in(reduction, "reduction", ["pooled", "none"])
    cm = _confusion_matrix(pred, labels, num_classes, ignore_index)
    return cm.sum(dim=0) if reduction == "pooled" else cm


def multiclass_report(
    probs_or_pred: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    *,
    ignore_index: int = 255,
) -> dict[str, float | int]:
    """mIoU, per-class IoU and Dice, and pixel accuracy, pooled over all pixels and per image.

    Args:
        probs_or_pred: ``(N, K, H, W)`` float scores (the arg-max over ``K`` is the prediction) or
            ``(N, H, W)`` int predicted classes; ``N >= 1``.
        labels: ``(N, H, W)`` int labels in ``0..K-1`` or ``ignore_index``.
        num_classes: ``K >= 1``; must equal the channel count of scores.
        ignore_index: label value that marks unlabelled pixels.

    Returns:
        A flat dict of Python numbers: ``miou``, ``mdice``, ``pixel_accuracy`` (pooled); ``iou_c{k}`` and
        ``dice_c{k}`` per class (pooled; NaN for a class absent from both prediction and target, left out of
        ``miou`` and ``mdice``); ``miou_img_mean``/``_std``/``_n`` and
        ``pixel_accuracy_img_mean``/``_std``/``_n`` over images; ``n_images``, ``n_pixels`` (labelled) and
        ``num_classes``.

    Raises:
        ShapeError: an empty batch, wrong shapes, or ``K`` not matching the scores.
        DTypeError: integer scores, float predictions or labels.
        DeviceMismatchError: the prediction and ``labels`` on different devices.
        ParameterError: class indices outside ``0..K-1``; a bad ``num_classes``.

    Example:
        >>> pred = torch.tensor([[[0, 0], [1, 1]]])
        >>> labels = torch.tensor([[[0, 0], [1, 0]]])
        >>> report = multiclass_report(pred, labels, 3)
        >>> report["iou_c0"], report["iou_c1"], report["iou_c2"], report["miou"]
        (0.6666666666666666, 0.5, nan, 0.5833333333333333)
    """
    num_classes = check_int(num_classes, "num_classes", low=1)
    pred = _to_pred(probs_or_pred, num_classes)
    _check_pair(pred, labels, num_classes, ignore_index)
    _require_images(pred, "probs_or_pred")
    return multiclass_report_from_confusion(_confusion_matrix(pred, labels, num_classes, ignore_index))


def multiclass_report_from_confusion(confusion: torch.Tensor) -> dict[str, float | int]:
    """:func:`multiclass_report` from per-image confusion matrices, for sets counted batch by batch.

    Args:
        confusion: ``(N, K, K)`` integer counts ``cm[true, predicted]`` per image (:func:`confusion_matrix`
            with ``reduction="none"``), ``N >= 1``.

    Returns:
        The dict of :func:`multiclass_report`.

    Raises:
        ShapeError: not ``(N, K, K)`` with ``N >= 1``.
        DTypeError: float counts.

    Example:
        >>> pred = torch.tensor([[[0, 0], [1, 1]]])
        >>> labels = torch.tensor([[[0, 0], [1, 0]]])
        >>> cm = confusion_matrix(pred, labels, 2, reduction="none")
        >>> multiclass_report_from_confusion(cm)["miou"] == multiclass_report(pred, labels, 2)["miou"]
        True
    """
    if not isinstance(confusion, torch.Tensor) or confusion.dim() != 3 or confusion.shape[1] != confusion.shape[2]:
        got = f"({', '.join(map(str, confusion.shape))})" if isinstance(confusion, torch.Tensor) else \
            type(confusion).__name__
        raise ShapeError(f"`confusion` must be (N, K, K) per-image counts; got {got}")
    if confusion.is_floating_point():
        raise DTypeError(f"`confusion` must hold integer counts; got {confusion.dtype}")
    _require_images(confusion, "confusion")
    per_image, num_classes = confusion, confusion.shape[1]
    pooled = per_image.sum(dim=0)
    iou, dice, accuracy = _class_scores(pooled)
    img_iou, _, img_accuracy = _class_scores(per_image)
    out: dict[str, float | int] = {
        "miou": float(iou.nanmean()),
        "mdice": float(dice.nanmean()),
        "pixel_accuracy": float(accuracy),
    }
    out.update({f"iou_c{k}": float(v) for k, v in enumerate(iou.tolist())})
    out.update({f"dice_c{k}": float(v) for k, v in enumerate(dice.tolist())})
    for name, values in (("miou", img_iou.nanmean(dim=-1)), ("pixel_accuracy", img_accuracy)):
        out[f"{name}_img_mean"], out[f"{name}_img_std"], out[f"{name}_img_n"] = _nan_mean_std(values)
    out.update(n_images=int(per_image.shape[0]), n_pixels=int(pooled.sum()), num_classes=int(num_classes))
    return out


# -------------------------------------------------------------------------------------------- helpers
def _check_pair(pred: torch.Tensor, labels: torch.Tensor, num_classes: int, ignore_index: int) -> int:
    """Check a prediction and its labels; return ``num_classes`` as a Python int."""
    num_classes = check_int(num_classes, "num_classes", low=1)
    check_labels(pred, "pred", num_classes=num_classes, ignore_index=None)
    check_labels(labels, "labels", num_classes=num_classes, ignore_index=ignore_index)
    if pred.shape != labels.shape:
        raise ShapeError(f"`labels` must be (N, H, W) = ({', '.join(map(str, pred.shape))}) to match the "
                         f"prediction; got ({', '.join(map(str, labels.shape))})")
    if labels.device != pred.device:
        raise DeviceMismatchError(f"`labels` is on {labels.device} but the prediction is on {pred.device}; "
                                  "move them to one device")
    return num_classes


def _to_pred(probs_or_pred: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(N, K, H, W)`` float scores -> arg-max classes; ``(N, H, W)`` int predictions pass through."""
    x = probs_or_pred
    if isinstance(x, torch.Tensor) and x.dim() == 4 and x.is_floating_point():
        if x.shape[1] != num_classes:
            raise ShapeError(f"`probs_or_pred` must have num_classes = {num_classes} channels; "
                             f"got {x.shape[1]} in ({', '.join(map(str, x.shape))})")
        return x.argmax(dim=1)
    if isinstance(x, torch.Tensor) and x.dim() == 3 and not x.is_floating_point():
        return x
    shape = f"({', '.join(map(str, x.shape))}) {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
    # with 3 or 4 dims only the dtype is wrong (float (N, H, W), integer (N, K, H, W))
    error = ShapeError if isinstance(x, torch.Tensor) and x.dim() not in (3, 4) else DTypeError
    raise error("`probs_or_pred` must be (N, K, H, W) float scores or (N, H, W) integer predictions; "
                f"got {shape}")


def _confusion_matrix(pred: torch.Tensor, labels: torch.Tensor, k: int, ignore_index: int) -> torch.Tensor:
    """``(N, K, K)`` per-image ``cm[true, predicted]`` of checked inputs."""
    n = pred.shape[0]
    flat_p, flat_y = pred.flatten(1).long(), labels.flatten(1).long()
    image = torch.arange(n, device=pred.device).unsqueeze(1)
    index = (image * k + flat_y) * k + flat_p
    trash = n * k * k
    index = torch.where(flat_y != ignore_index, index, trash)
    return torch.bincount(index.reshape(-1), minlength=trash + 1)[:trash].view(n, k, k)


def _class_scores(cm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-class IoU ``(..., K)``, Dice ``(..., K)``, pixel accuracy ``(...)`` from ``(..., K, K)`` counts."""
    c = cm.to(_ratio_dtype(cm.device))
    tp = c.diagonal(dim1=-2, dim2=-1)
    truth, predicted = c.sum(dim=-1), c.sum(dim=-2)
    iou = tp / (truth + predicted - tp)
    dice = 2 * tp / (truth + predicted)
    accuracy = tp.sum(dim=-1) / c.sum(dim=(-2, -1))
    return iou, dice, accuracy
