"""Tests for mstool.metrics._binary: threshold grid, batched confusion counts, scores, AUC, report."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from mstool.errors import DataError, DTypeError, ParameterError, ShapeError
from mstool.metrics import (
    BINARY_METRICS,
    binary_report,
    binary_scores,
    confusion_at_thresholds,
    roc_auc,
    threshold_grid,
)

IGNORE = 255


def _map(values, h=2, w=2) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).view(-1, 1, h, w)


def _labels(values, h=2, w=2) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int64).view(-1, h, w)


def _naive_counts(probs: torch.Tensor, labels: torch.Tensor, thresholds) -> torch.Tensor:
    """Reference: one threshold at a time, one image at a time."""
    out = torch.zeros(probs.shape[0], len(thresholds), 4, dtype=torch.int64)
    for i in range(probs.shape[0]):
        s, y = probs[i, 0].cpu(), labels[i].cpu()
        for j, t in enumerate(thresholds):
            pred = s >= float(t)
            fg, bg = y == 1, y == 0
            cells = [pred & fg, pred & bg, ~pred & fg, ~pred & bg]
            out[i, j] = torch.stack([c.sum() for c in cells])
    return out


def _random_case(gen: torch.Generator, n=3, size=8, ties=True):
    probs = torch.rand(n, 1, size, size, generator=gen)
    if ties:
        probs = (probs * 8).round() / 8
    labels = (torch.rand(n, size, size, generator=gen) < 0.4).long()
    labels[:, 0, :3] = IGNORE
    return probs, labels


# ----------------------------------------------------------------------------------------- threshold_grid
def test_threshold_grid_levels_strictly_inside():
    grid = threshold_grid(torch.tensor([0.2, 1.0, 0.6]), 3)
    assert torch.allclose(grid, torch.tensor([0.4, 0.6, 0.8]))
    assert grid.dtype == torch.float32
    grid = threshold_grid(torch.tensor([-1.0, 1.0], dtype=torch.float64), 1)
    assert grid.tolist() == [0.0] and grid.dtype == torch.float64


def test_threshold_grid_constant_map_repeats_the_value():
    assert threshold_grid(torch.full((4,), 0.3), 5).tolist() == pytest.approx([0.3] * 5)


def test_threshold_grid_follows_device(device):
    scores = torch.rand(2, 1, 8, 8, device=device)
    grid = threshold_grid(scores, 7)
    assert grid.device.type == device.type and grid.shape == (7,)
    assert bool((grid > scores.min()).all() and (grid < scores.max()).all())
    assert bool((grid[1:] > grid[:-1]).all())


def test_threshold_grid_errors():
    with pytest.raises(ParameterError, match="`num` must be an integer >= 1; got 0"):
        threshold_grid(torch.rand(4), 0)
    with pytest.raises(ShapeError, match="`scores` must hold at least one value"):
        threshold_grid(torch.zeros(0), 3)
    with pytest.raises(DTypeError, match="`scores` must be a float tensor; got torch.int64"):
        threshold_grid(torch.arange(4), 3)


# -------------------------------------------------------------------------------- confusion_at_thresholds
def test_confusion_hand_computed_2x2():
    # scores 0.1 (bg), 0.4 (fg), 0.6 (bg), 0.9 (fg)
    probs, labels = _map([0.1, 0.4, 0.6, 0.9]), _labels([0, 1, 0, 1])
    counts = confusion_at_thresholds(probs, labels, [0.05, 0.4, 0.5, 0.95])
    assert counts.dtype == torch.int64 and counts.shape == (1, 4, 4)
    assert counts[0].tolist() == [
        [2, 2, 0, 0],  # everything foreground
        [2, 1, 0, 1],  # 0.4 itself is foreground: the rule is score >= threshold
        [1, 1, 1, 1],
        [0, 0, 2, 2],  # nothing foreground
    ]


def test_confusion_hand_computed_4x4_with_ignore():
    probs = _map([0.9, 0.8, 0.1, 0.0,
                  0.7, 0.6, 0.2, 0.1,
                  0.3, 0.5, 0.4, 0.2,
                  0.9, 0.9, 0.9, 0.9], 4, 4)
    labels = _labels([1, 1, 0, 0,
                      1, 0, 0, 0,
                      0, 1, 0, 0,
                      IGNORE, IGNORE, IGNORE, IGNORE], 4, 4)
    counts = confusion_at_thresholds(probs, labels, [0.25, 0.55, 0.75])[0].tolist()
    # fg scores: 0.9 0.8 0.7 0.5; bg scores: 0.1 0.0 0.6 0.2 0.1 0.3 0.4 0.2; the last row is ignored
    assert counts[0] == [4, 3, 0, 5]  # >= 0.25: fg all four; bg 0.6, 0.3, 0.4
    assert counts[1] == [3, 1, 1, 7]  # >= 0.55: fg 0.9 0.8 0.7; bg 0.6
    assert counts[2] == [2, 0, 2, 8]  # >= 0.75: fg 0.9 0.8
    assert sum(counts[0]) == 12


def test_confusion_equals_naive_loop_and_keeps_threshold_order(gen):
    probs, labels = _random_case(gen)
    thresholds = [0.5, 0.125, 0.875, 0.5, 0.0, 1.0, 0.3]  # unsorted, repeated, on and off the score ties
    counts = confusion_at_thresholds(probs, labels, thresholds)
    assert torch.equal(counts, _naive_counts(probs, labels, thresholds))


def test_confusion_batched_equals_per_image(gen):
    probs, labels = _random_case(gen, n=4)
    grid = threshold_grid(probs, 9)
    batched = confusion_at_thresholds(probs, labels, grid)
    single = torch.cat([confusion_at_thresholds(probs[i:i + 1], labels[i:i + 1], grid) for i in range(4)])
    split = torch.cat([confusion_at_thresholds(probs[:1], labels[:1], grid),
                       confusion_at_thresholds(probs[1:], labels[1:], grid)])
    assert torch.equal(batched, single) and torch.equal(batched, split)


def test_confusion_ignored_pixels_count_nowhere(gen):
    probs, labels = _random_case(gen, n=2)
    counts = confusion_at_thresholds(probs, labels, [0.5])
    assert int(counts[..., :].sum()) == int((labels != IGNORE).sum())
    changed = probs.clone()
    changed[labels.unsqueeze(1) == IGNORE] = 0.99  # scores under ignored labels must not matter
    assert torch.equal(confusion_at_thresholds(changed, labels, [0.5]), counts)


def test_confusion_empty_batch_and_all_ignored():
    empty_labels = torch.zeros(0, 8, 8, dtype=torch.long)
    counts = confusion_at_thresholds(torch.zeros(0, 1, 8, 8), empty_labels, [0.5, 0.7])
    assert counts.shape == (0, 2, 4)
    counts = confusion_at_thresholds(torch.rand(1, 1, 8, 8), torch.full((1, 8, 8), IGNORE), [0.5])
    assert counts.tolist() == [[[0, 0, 0, 0]]]


def test_confusion_half_precision_scores():
    probs, labels = _map([0.1, 0.4, 0.6, 0.9]).half(), _labels([0, 1, 0, 1])
    assert confusion_at_thresholds(probs, labels, [0.5])[0, 0].tolist() == [1, 1, 1, 1]


def test_confusion_on_device(device, gen):
    probs, labels = _random_case(gen)
    grid = threshold_grid(probs, 5)
    counts = confusion_at_thresholds(probs.to(device), labels.to(device), grid.to(device))
    assert counts.device.type == device.type
    assert torch.equal(counts.cpu(), confusion_at_thresholds(probs, labels, grid))


def test_confusion_cpu_equals_accelerator(accel, gen):
    probs, labels = _random_case(gen, n=5, size=32)
    grid = threshold_grid(probs, 50)
    on_accel = confusion_at_thresholds(probs.to(accel), labels.to(accel), grid.to(accel)).cpu()
    assert torch.equal(on_accel, confusion_at_thresholds(probs, labels, grid))


def test_confusion_errors():
    probs, labels = _map([0.1, 0.4, 0.6, 0.9]), _labels([0, 1, 0, 1])
    with pytest.raises(ShapeError, match=r"`probs` must be \(N, 1, H, W\); got \(1, 2, 2\)"):
        confusion_at_thresholds(probs[:, 0], labels, [0.5])
    with pytest.raises(ShapeError, match=r"`labels` must be \(N, H, W\) = \(1, 2, 2\)"):
        confusion_at_thresholds(probs, labels.view(1, 4, 1), [0.5])
    with pytest.raises(ParameterError, match="`labels` must hold class indices in 0..1 or 255"):
        confusion_at_thresholds(probs, labels * 2, [0.5])
    with pytest.raises(DTypeError, match="`labels` must be an integer tensor"):
        confusion_at_thresholds(probs, labels.float(), [0.5])
    with pytest.raises(DataError, match="`probs` must hold finite scores"):
        confusion_at_thresholds(probs.masked_fill(probs > 0.8, math.nan), labels, [0.5])
    with pytest.raises(ShapeError, match="`thresholds` must be a non-empty 1-D"):
        confusion_at_thresholds(probs, labels, [[0.5]])
    with pytest.raises(ShapeError, match="`thresholds` must be a non-empty 1-D"):
        confusion_at_thresholds(probs, labels, [])
    with pytest.raises(ParameterError, match="`thresholds` must not hold NaN"):
        confusion_at_thresholds(probs, labels, [0.5, math.nan])


# ------------------------------------------------------------------------------------------ binary_scores
def test_binary_scores_known_values():
    out = binary_scores(torch.tensor([3, 1, 2, 4]))
    assert set(out) == set(BINARY_METRICS)
    assert out["dice"].item() == pytest.approx(6 / 9)
    assert out["iou"].item() == pytest.approx(3 / 6)
    assert out["precision"].item() == pytest.approx(3 / 4)
    assert out["recall"].item() == pytest.approx(3 / 5)
    assert out["accuracy"].item() == pytest.approx(7 / 10)
    assert out["dice"].dtype == torch.float64


def test_binary_scores_zero_over_zero_is_nan():
    out = binary_scores(torch.tensor([
        [0, 0, 0, 9],  # empty target, empty prediction
        [0, 0, 4, 5],  # empty prediction
        [0, 3, 0, 6],  # empty target
        [0, 0, 0, 0],  # nothing labelled
    ]))
    nan = math.nan
    assert np.allclose(out["dice"].numpy(), [nan, 0, 0, nan], equal_nan=True)
    assert np.allclose(out["iou"].numpy(), [nan, 0, 0, nan], equal_nan=True)
    assert np.allclose(out["precision"].numpy(), [nan, nan, 0, nan], equal_nan=True)
    assert np.allclose(out["recall"].numpy(), [nan, 0, nan, nan], equal_nan=True)
    assert np.allclose(out["accuracy"].numpy(), [1, 5 / 9, 6 / 9, nan], equal_nan=True)


def test_binary_scores_keeps_leading_shape():
    out = binary_scores(torch.ones(2, 5, 4, dtype=torch.long))
    assert all(v.shape == (2, 5) for v in out.values())


def test_binary_scores_errors():
    with pytest.raises(ShapeError, match=r"`counts` must be \(\.\.\., 4\)"):
        binary_scores(torch.ones(3, 3))
    with pytest.raises(DTypeError, match=r"`counts` must be a torch.Tensor \(\.\.\., 4\) .*; got list"):
        binary_scores([[1, 0, 0, 1]])


# ------------------------------------------------------------------------------------------------ roc_auc
def test_auc_perfect_inverted_and_tied():
    labels = _labels([0, 0, 1, 1])
    assert roc_auc(_map([0.1, 0.2, 0.8, 0.9]), labels).item() == 1.0
    assert roc_auc(_map([0.9, 0.8, 0.2, 0.1]), labels).item() == 0.0
    assert roc_auc(_map([0.5, 0.5, 0.5, 0.5]), labels).item() == 0.5
    # one fg tied with one bg: 3 pairs won, 1 tied -> (3 + 0.5) / 4
    assert roc_auc(_map([0.1, 0.8, 0.8, 0.9]), labels).item() == pytest.approx(0.875)


def test_auc_random_scores_near_half(gen):
    probs = torch.rand(2, 1, 64, 64, generator=gen)
    labels = (torch.rand(2, 64, 64, generator=gen) < 0.3).long()
    assert abs(roc_auc(probs, labels).item() - 0.5) < 0.03


def test_auc_matches_sklearn_with_ties_and_ignore(gen):
    probs, labels = _random_case(gen, n=3, size=16)
    keep = labels != IGNORE
    pooled = roc_auc(probs, labels).item()
    assert pooled == pytest.approx(roc_auc_score(labels[keep].numpy(), probs[:, 0][keep].numpy()))
    per_image = roc_auc(probs, labels, reduction="none")
    assert per_image.shape == (3,)
    for i in range(3):
        ref = roc_auc_score(labels[i][keep[i]].numpy(), probs[i, 0][keep[i]].numpy())
        assert per_image[i].item() == pytest.approx(ref)


def test_auc_undefined_without_both_classes():
    probs = _map([0.1, 0.2, 0.3, 0.4, 0.1, 0.2, 0.8, 0.9])
    labels = _labels([0, 0, 0, IGNORE, 0, 0, 1, 1])
    per_image = roc_auc(probs, labels, reduction="none")
    assert math.isnan(per_image[0].item()) and per_image[1].item() == 1.0
    assert roc_auc(probs, labels).item() == 1.0


def test_auc_empty_batch():
    probs, labels = torch.zeros(0, 1, 4, 4), torch.zeros(0, 4, 4, dtype=torch.long)
    assert roc_auc(probs, labels, reduction="none").shape == (0,)
    assert math.isnan(roc_auc(probs, labels).item())


def test_auc_on_device(device, gen):
    probs, labels = _random_case(gen)
    auc = roc_auc(probs.to(device), labels.to(device), reduction="none")
    assert auc.device.type == device.type
    assert torch.allclose(auc.cpu(), roc_auc(probs, labels, reduction="none"), equal_nan=True)


def test_auc_errors():
    with pytest.raises(ParameterError, match="`reduction` must be one of pooled, none; got 'mean'"):
        roc_auc(_map([0.1, 0.2, 0.8, 0.9]), _labels([0, 0, 1, 1]), reduction="mean")


# ------------------------------------------------------------------------------------------ binary_report
def test_report_perfect_map_any_threshold_between_classes():
    probs, labels = _map([0.1, 0.3, 0.7, 0.9]), _labels([0, 0, 1, 1])
    for t in (0.31, 0.5, 0.69):
        report = binary_report(probs, labels, threshold=t)
        assert report["dice"] == report["iou"] == report["accuracy"] == report["auc"] == 1.0
    assert binary_report(probs, labels, threshold=0.8)["dice"] == pytest.approx(2 / 3)


def test_report_keys_and_types():
    report = binary_report(_map([0.1, 0.4, 0.6, 0.9]), _labels([0, 1, 0, 1]), threshold=0.5)
    for name in (*BINARY_METRICS, "auc"):
        for key in (name, f"{name}_img_mean", f"{name}_img_std", f"{name}_img_n"):
            assert key in report
    assert (report["tp"], report["fp"], report["fn"], report["tn"]) == (1, 1, 1, 1)
    assert report["n_images"] == 1 and report["n_pixels"] == 4
    assert report["threshold"] == 0.5 and report["polarity"] == 1
    assert all(isinstance(v, (int, float)) for v in report.values())


def test_report_pooled_versus_per_image():
    # image 0: 1 fg pixel, predicted right; image 1: 3 fg pixels, none predicted
    probs = _map([0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    labels = _labels([1, 0, 0, 0, 1, 1, 1, 0])
    report = binary_report(probs, labels, threshold=0.5)
    assert report["dice"] == pytest.approx(2 / 5)  # pooled tp 1, fn 3
    assert report["dice_img_mean"] == pytest.approx(0.5)  # (1 + 0) / 2
    assert report["dice_img_std"] == pytest.approx(0.5)  # population std of [1, 0]
    assert report["recall"] == pytest.approx(0.25)
    # image 1 predicts nothing: its precision is NaN and left out
    assert report["precision"] == 1.0 and report["precision_img_n"] == 1
    assert report["precision_img_mean"] == 1.0


def test_report_nan_images_left_out_of_means():
    # image 1 has neither target nor prediction: its Dice is NaN and the mean is over image 0 only
    probs = _map([0.9, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    labels = _labels([1, 0, 0, 0, 0, 0, 0, 0])
    report = binary_report(probs, labels, threshold=0.5)
    assert report["dice_img_n"] == 1 and report["dice_img_mean"] == pytest.approx(2 / 3)
    assert report["dice_img_std"] == 0.0
    assert report["auc_img_n"] == 1


def test_report_inverted_polarity():
    probs, labels = _map([0.9, 0.7, 0.3, 0.1]), _labels([0, 0, 1, 1])
    plain = binary_report(probs, labels, threshold=0.5)
    inverted = binary_report(probs, labels, threshold=0.6, polarity=-1)  # 1 - p >= 0.6  <=>  p <= 0.4
    assert plain["dice"] == 0.0 and plain["auc"] == 0.0
    assert inverted["dice"] == 1.0 and inverted["auc"] == 1.0 and inverted["polarity"] == -1


def test_report_on_device(device, gen):
    probs, labels = _random_case(gen)
    on_device = binary_report(probs.to(device), labels.to(device), threshold=0.5)
    on_cpu = binary_report(probs, labels, threshold=0.5)
    assert on_device.keys() == on_cpu.keys()
    for key, value in on_cpu.items():
        assert on_device[key] == pytest.approx(value, nan_ok=True)


def test_report_errors():
    probs, labels = _map([0.1, 0.4, 0.6, 0.9]), _labels([0, 1, 0, 1])
    with pytest.raises(ShapeError, match="`probs` must hold at least one image to report on; got N=0"):
        binary_report(probs[:0], labels[:0], threshold=0.5)
    with pytest.raises(ParameterError, match="`polarity` must be \\+1 or -1; got 0"):
        binary_report(probs, labels, threshold=0.5, polarity=0)
    with pytest.raises(ParameterError, match="`threshold` must be in"):
        binary_report(probs, labels, threshold=math.nan)
