"""Tests for mstool.metrics._multiclass: confusion matrices, per-class IoU / Dice, mIoU, pixel accuracy."""

from __future__ import annotations

import math

import pytest
import torch

from mstool.errors import DTypeError, ParameterError, ShapeError
from mstool.metrics import confusion_matrix, multiclass_report

IGNORE = 255


def _t(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.int64)


def _random_case(gen: torch.Generator, n=3, k=4, size=8):
    pred = torch.randint(0, k, (n, size, size), generator=gen)
    labels = torch.randint(0, k, (n, size, size), generator=gen)
    labels[:, :2] = IGNORE
    return pred, labels


# --------------------------------------------------------------------------------------- confusion_matrix
def test_confusion_matrix_hand_computed():
    pred = _t([[[0, 1, 2], [2, 2, 0]]])
    labels = _t([[[0, 1, 1], [2, IGNORE, 0]]])
    cm = confusion_matrix(pred, labels, 3)
    assert cm.dtype == torch.int64
    assert cm.tolist() == [[2, 0, 0], [0, 1, 1], [0, 0, 1]]  # rows = true class, columns = predicted


def test_confusion_matrix_per_image_sums_to_pooled(gen):
    pred, labels = _random_case(gen)
    per_image = confusion_matrix(pred, labels, 4, reduction="none")
    assert per_image.shape == (3, 4, 4)
    assert torch.equal(per_image.sum(0), confusion_matrix(pred, labels, 4))
    assert int(per_image.sum()) == int((labels != IGNORE).sum())
    for i in range(3):
        assert torch.equal(per_image[i], confusion_matrix(pred[i:i + 1], labels[i:i + 1], 4))


def test_confusion_matrix_matches_sklearn(gen):
    from sklearn.metrics import confusion_matrix as sk_confusion

    pred, labels = _random_case(gen)
    keep = labels != IGNORE
    ref = sk_confusion(labels[keep].numpy(), pred[keep].numpy(), labels=list(range(4)))
    assert confusion_matrix(pred, labels, 4).tolist() == ref.tolist()


def test_confusion_matrix_empty_batch():
    empty = torch.zeros(0, 4, 4, dtype=torch.long)
    assert confusion_matrix(empty, empty, 3).tolist() == [[0] * 3] * 3
    assert confusion_matrix(empty, empty, 3, reduction="none").shape == (0, 3, 3)


def test_confusion_matrix_on_device(device, gen):
    pred, labels = _random_case(gen)
    cm = confusion_matrix(pred.to(device), labels.to(device), 4, reduction="none")
    assert cm.device.type == device.type
    assert torch.equal(cm.cpu(), confusion_matrix(pred, labels, 4, reduction="none"))


def test_confusion_matrix_errors():
    pred, labels = _t([[[0, 1], [1, 0]]]), _t([[[0, 1], [1, IGNORE]]])
    with pytest.raises(ParameterError, match="`pred` must hold class indices in 0..1; got a maximum of 2"):
        confusion_matrix(pred * 2, labels, 2)
    with pytest.raises(ParameterError, match="`labels` must hold class indices in 0..1 or 255"):
        confusion_matrix(pred, _t([[[0, 3], [1, IGNORE]]]), 2)
    with pytest.raises(ShapeError, match=r"`labels` must be \(N, H, W\) = \(1, 2, 2\)"):
        confusion_matrix(pred, labels.view(1, 4, 1), 2)
    with pytest.raises(ParameterError, match="`num_classes` must be an integer >= 1; got 0"):
        confusion_matrix(pred, labels, 0)
    with pytest.raises(ParameterError, match="`reduction` must be one of pooled, none"):
        confusion_matrix(pred, labels, 2, reduction="sum")


# -------------------------------------------------------------------------------------- multiclass_report
def test_report_absent_class_is_nan_and_left_out_of_the_mean():
    pred = _t([[[0, 0], [1, 1]]])
    labels = _t([[[0, 0], [1, 0]]])
    report = multiclass_report(pred, labels, 3)
    assert report["iou_c0"] == pytest.approx(2 / 3)
    assert report["iou_c1"] == pytest.approx(1 / 2)
    assert math.isnan(report["iou_c2"]) and math.isnan(report["dice_c2"])
    assert report["miou"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert report["dice_c0"] == pytest.approx(4 / 5) and report["dice_c1"] == pytest.approx(2 / 3)
    assert report["mdice"] == pytest.approx((4 / 5 + 2 / 3) / 2)
    assert report["pixel_accuracy"] == pytest.approx(3 / 4)
    assert report["num_classes"] == 3 and report["n_pixels"] == 4 and report["n_images"] == 1


def test_report_class_in_target_but_never_predicted_scores_zero():
    pred = _t([[[0, 0], [0, 0]]])
    labels = _t([[[0, 0], [0, 1]]])
    report = multiclass_report(pred, labels, 2)
    assert report["iou_c1"] == 0.0 and report["miou"] == pytest.approx((3 / 4 + 0) / 2)


def test_report_per_image_versus_pooled():
    # image 0 perfect (mIoU 1); image 1: class 0 IoU 1/2, class 1 IoU 2/3 -> mIoU 7/12
    pred = _t([[[0, 1], [1, 1]], [[0, 1], [1, 1]]])
    labels = _t([[[0, 1], [1, 1]], [[0, 0], [1, 1]]])
    report = multiclass_report(pred, labels, 2)
    assert report["miou_img_mean"] == pytest.approx((1 + 7 / 12) / 2)
    assert report["miou_img_std"] == pytest.approx((1 - 7 / 12) / 2)
    assert report["pixel_accuracy_img_mean"] == pytest.approx((1 + 3 / 4) / 2)
    # pooled: class 0 tp 2, truth 3, predicted 2 -> 2/3; class 1 tp 5, truth 5, predicted 6 -> 5/6
    assert report["miou"] == pytest.approx((2 / 3 + 5 / 6) / 2)
    assert report["pixel_accuracy"] == pytest.approx(7 / 8)


def test_report_fully_ignored_image_is_left_out():
    pred = _t([[[0, 1], [1, 0]], [[0, 1], [1, 0]]])
    labels = _t([[[0, 1], [1, 0]], [[IGNORE] * 2] * 2])
    report = multiclass_report(pred, labels, 2)
    assert report["miou_img_n"] == 1 and report["miou_img_mean"] == 1.0
    assert report["pixel_accuracy_img_n"] == 1 and report["n_pixels"] == 4


def test_report_scores_equal_argmax_predictions(gen):
    scores = torch.rand(2, 3, 8, 8, generator=gen).softmax(dim=1)
    labels = torch.randint(0, 3, (2, 8, 8), generator=gen)
    from_scores = multiclass_report(scores, labels, 3)
    from_pred = multiclass_report(scores.argmax(dim=1), labels, 3)
    assert from_scores == pytest.approx(from_pred, nan_ok=True)


def test_report_on_device(device, gen):
    pred, labels = _random_case(gen)
    on_device = multiclass_report(pred.to(device), labels.to(device), 4)
    assert on_device == pytest.approx(multiclass_report(pred, labels, 4), nan_ok=True)


def test_report_errors():
    pred, labels = _t([[[0, 1], [1, 0]]]), _t([[[0, 1], [1, 0]]])
    with pytest.raises(ShapeError, match="`probs_or_pred` must hold at least one image to report on"):
        multiclass_report(pred[:0], labels[:0], 2)
    with pytest.raises(ShapeError, match="`probs_or_pred` must have num_classes = 3 channels; got 2"):
        multiclass_report(torch.rand(1, 2, 2, 2), labels, 3)
    with pytest.raises(DTypeError, match=r"`probs_or_pred` must be \(N, K, H, W\) float scores or"):
        multiclass_report(pred.float(), labels, 2)
    with pytest.raises(ShapeError, match=r"`probs_or_pred` must be \(N, K, H, W\) float scores or .*; got \(2, 2\)"):
        multiclass_report(pred[0], labels, 2)
