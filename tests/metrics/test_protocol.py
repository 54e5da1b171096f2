"""Tests for mstool.metrics._protocol: threshold selection, polarity, the val / oracle / fixed protocols."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from mstool.errors import DataError, MstoolWarning, ParameterError, ShapeError
from mstool.metrics import PROTOCOLS, Choice, ProtocolResult, evaluate_binary, select_threshold

IGNORE = 255


def _separable(fg_lo: float, fg_hi: float, bg_lo: float, bg_hi: float, n: int = 2, size: int = 8):
    """``n`` images: foreground (top half) scored in [fg_lo, fg_hi], background in [bg_lo, bg_hi]."""
    labels = torch.zeros(n, size, size, dtype=torch.long)
    labels[:, : size // 2] = 1
    ramp = torch.linspace(0, 1, n * size * size).view(n, 1, size, size)
    fg, bg = fg_lo + (fg_hi - fg_lo) * ramp, bg_lo + (bg_hi - bg_lo) * ramp
    probs = torch.where(labels.unsqueeze(1) == 1, fg, bg)
    return probs, labels


# --------------------------------------------------------------------------------------- select_threshold
def test_select_perfect_map_picks_the_middle_of_the_gap():
    probs, labels = _separable(0.8, 0.9, 0.1, 0.2)
    choice = select_threshold(probs, labels, num_thresholds=49)
    assert isinstance(choice, Choice)
    assert choice.score == 1.0 and choice.polarity == 1 and choice.metric == "dice"
    assert choice.chosen_on == "validation"
    assert 0.2 < choice.threshold <= 0.8
    assert choice.threshold == pytest.approx(0.5, abs=0.02)  # median of the plateau between 0.2 and 0.8


def test_select_inverted_map_needs_inversion():
    probs, labels = _separable(0.1, 0.2, 0.8, 0.9)
    plain = select_threshold(probs, labels, num_thresholds=20)
    assert plain.polarity == 1 and plain.score < 1.0
    inverted = select_threshold(probs, labels, num_thresholds=20, allow_inversion=True, chosen_on="val set")
    assert inverted.polarity == -1 and inverted.score == 1.0 and inverted.chosen_on == "val set"
    assert 0.2 < inverted.threshold < 0.8  # on the inverted score 1 - p, whose gap is (0.1, 0.2)..(0.8, 0.9)


def test_select_keeps_plus_one_on_a_tie():
    # both pixels foreground: either polarity predicts one of them at best, Dice 2/3 both ways
    probs = torch.tensor([0.2, 0.8]).view(1, 1, 1, 2)
    labels = torch.ones(1, 1, 2, dtype=torch.long)
    choice = select_threshold(probs, labels, num_thresholds=5, allow_inversion=True)
    assert choice.polarity == 1 and choice.score == pytest.approx(2 / 3)


def test_select_ignores_unlabelled_pixels():
    probs, labels = _separable(0.8, 0.9, 0.1, 0.2)
    probs[:, :, 0, 0] = 0.0  # a foreground-region pixel with a background score ...
    labels[:, 0, 0] = IGNORE  # ... that is not labelled
    assert select_threshold(probs, labels, num_thresholds=20).score == 1.0


def test_select_metrics():
    probs, labels = _separable(0.8, 0.9, 0.1, 0.2)
    for metric in ("dice", "iou", "accuracy"):
        assert select_threshold(probs, labels, metric=metric).score == 1.0


def test_select_warns_on_degenerate_sets():
    probs, labels = _separable(0.8, 0.9, 0.1, 0.2)
    with pytest.warns(MstoolWarning, match="the scores are constant"):
        select_threshold(torch.full_like(probs, 0.3), labels)
    with pytest.warns(MstoolWarning, match="`labels` hold no foreground pixel"):
        select_threshold(probs, torch.zeros_like(labels))


def test_select_errors():
    probs, labels = _separable(0.8, 0.9, 0.1, 0.2)
    with pytest.raises(DataError, match="`labels` must hold at least one labelled pixel"):
        select_threshold(probs, torch.full_like(labels, IGNORE))
    with pytest.raises(ShapeError, match="`probs` must hold at least one image to report on; got N=0"):
        select_threshold(probs[:0], labels[:0])
    with pytest.raises(ParameterError, match="`metric` must be one of dice, iou, accuracy; got 'recall'"):
        select_threshold(probs, labels, metric="recall")
    with pytest.raises(ParameterError, match="`num_thresholds` must be an integer >= 1; got 0"):
        select_threshold(probs, labels, num_thresholds=0)


def test_choice_is_frozen():
    choice = Choice(0.5, 1, 1.0, "dice", "validation")
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'threshold'"):
        choice.threshold = 0.3


# ----------------------------------------------------------------------------------------- evaluate_binary
def test_three_protocols_when_validation_and_test_disagree():
    val_probs, val_labels = _separable(0.7, 0.9, 0.1, 0.2)  # val gap (0.2, 0.7): the val threshold is ~0.45
    test_probs, test_labels = _separable(0.3, 0.35, 0.05, 0.1)  # test foreground sits below 0.45
    result = evaluate_binary(test_probs, test_labels, val_probs=val_probs, val_labels=val_labels)
    assert isinstance(result, ProtocolResult) and list(result.entries) == list(PROTOCOLS)
    val, oracle, fixed = (result.entries[name] for name in PROTOCOLS)
    assert 0.2 < val.threshold < 0.7 and val.threshold_source == "validation"
    assert 0.1 < oracle.threshold < 0.3 and oracle.threshold_source == "test"
    assert fixed.threshold == 0.5 and fixed.threshold_source == "fixed"
    assert oracle.metrics["dice"] == 1.0 and val.metrics["dice"] == 0.0 and fixed.metrics["dice"] == 0.0
    assert oracle.metrics["dice"] >= val.metrics["dice"]
    assert (val.uses_test_labels, oracle.uses_test_labels, fixed.uses_test_labels) == (False, True, False)
    assert all(e.polarity == 1 and e.polarity_source == "default" for e in result.entries.values())
    assert val.metrics["auc"] == oracle.metrics["auc"] == 1.0
    assert result.absent == {}


def test_oracle_is_never_below_val_on_test(gen):
    test_probs = torch.rand(3, 1, 16, 16, generator=gen)
    test_labels = (test_probs[:, 0] + 0.5 * torch.rand(3, 16, 16, generator=gen) > 0.8).long()
    val_probs = torch.rand(2, 1, 16, 16, generator=gen)
    val_labels = (val_probs[:, 0] + 0.5 * torch.rand(2, 16, 16, generator=gen) > 0.6).long()
    result = evaluate_binary(test_probs, test_labels, val_probs=val_probs, val_labels=val_labels,
                             num_thresholds=30)
    oracle = result.entries["oracle"].metrics["dice"]
    assert oracle >= result.entries["val"].metrics["dice"]
    assert oracle >= result.entries["fixed"].metrics["dice"]


def test_inverted_map_chosen_on_validation_gives_perfect_test():
    val_probs, val_labels = _separable(0.1, 0.2, 0.8, 0.9)
    test_probs, test_labels = _separable(0.15, 0.25, 0.7, 0.95)
    result = evaluate_binary(test_probs, test_labels, val_probs=val_probs, val_labels=val_labels,
                             allow_inversion=True)
    for name in PROTOCOLS:
        entry = result.entries[name]
        assert entry.polarity == -1 and entry.polarity_source == "validation"
        assert entry.metrics["polarity"] == -1
        assert entry.metrics["auc"] == 1.0
    assert result.entries["val"].metrics["dice"] == 1.0
    assert result.entries["oracle"].metrics["dice"] == 1.0
    assert result.entries["fixed"].metrics["dice"] == 1.0  # 1 - p >= 0.5 separates these maps too


def test_inversion_not_allowed_keeps_polarity_plus_one():
    val_probs, val_labels = _separable(0.1, 0.2, 0.8, 0.9)
    result = evaluate_binary(val_probs, val_labels, val_probs=val_probs, val_labels=val_labels)
    assert all(e.polarity == 1 and e.polarity_source == "default" for e in result.entries.values())
    assert result.entries["val"].metrics["dice"] < 1.0
    assert result.entries["val"].metrics["auc"] == 0.0


def test_without_validation_val_is_absent_and_test_polarity_is_flagged():
    test_probs, test_labels = _separable(0.1, 0.2, 0.8, 0.9)
    result = evaluate_binary(test_probs, test_labels, allow_inversion=True)
    assert "val" not in result.entries and "no validation set" in result.absent["val"]
    oracle, fixed = result.entries["oracle"], result.entries["fixed"]
    assert oracle.polarity == -1 and oracle.polarity_source == "test" and oracle.metrics["dice"] == 1.0
    assert fixed.polarity == 1 and fixed.polarity_source == "default"
    flat = result.as_dict()
    assert flat["val/absent"] == result.absent["val"]
    assert flat["oracle/polarity_source"] == "test" and flat["oracle/uses_test_labels"] is True
    assert not any(key.startswith("val/") and key != "val/absent" for key in flat)


def test_without_validation_or_inversion_oracle_polarity_is_default():
    test_probs, test_labels = _separable(0.1, 0.2, 0.8, 0.9)
    result = evaluate_binary(test_probs, test_labels)
    assert result.entries["oracle"].polarity == 1 and result.entries["oracle"].polarity_source == "default"


def test_as_dict_and_rows_are_flat_and_json_friendly():
    probs, labels = _separable(0.7, 0.9, 0.1, 0.2)
    result = evaluate_binary(probs, labels, val_probs=probs, val_labels=labels, fixed_threshold=0.75)
    flat = result.as_dict()
    for name in PROTOCOLS:
        for key in ("dice", "dice_img_mean", "dice_img_std", "iou", "precision", "recall", "accuracy", "auc",
                    "threshold", "polarity", "polarity_source", "threshold_source", "uses_test_labels"):
            assert f"{name}/{key}" in flat
    assert flat["fixed/threshold"] == 0.75
    assert all(isinstance(v, (int, float, str, bool)) for v in flat.values())
    json.dumps(flat)
    rows = result.as_rows()
    assert [row["protocol"] for row in rows] == list(PROTOCOLS)
    assert rows[0]["dice"] == flat["val/dice"]
    with pytest.raises(ParameterError, match="`name` must be one of"):
        result.as_row("best")


def test_evaluate_with_ignored_pixels_matches_report_without_them():
    probs, labels = _separable(0.6, 0.9, 0.1, 0.5)
    masked = labels.clone()
    masked[:, -1] = IGNORE
    result = evaluate_binary(probs, masked, val_probs=probs, val_labels=masked)
    assert result.entries["fixed"].metrics["n_pixels"] == int((masked != IGNORE).sum())


def test_evaluate_on_device(device):
    val_probs, val_labels = _separable(0.1, 0.2, 0.8, 0.9)
    test_probs, test_labels = _separable(0.15, 0.25, 0.7, 0.95)
    on_cpu = evaluate_binary(test_probs, test_labels, val_probs=val_probs, val_labels=val_labels,
                             allow_inversion=True).as_dict()
    on_device = evaluate_binary(test_probs.to(device), test_labels.to(device), val_probs=val_probs.to(device),
                                val_labels=val_labels.to(device), allow_inversion=True).as_dict()
    assert on_device.keys() == on_cpu.keys()
    for key, value in on_cpu.items():
        assert on_device[key] == (pytest.approx(value, nan_ok=True) if isinstance(value, float) else value)


def test_evaluate_errors():
    probs, labels = _separable(0.7, 0.9, 0.1, 0.2)
    with pytest.raises(ParameterError, match="`val_probs` and `val_labels` must be given together"):
        evaluate_binary(probs, labels, val_probs=probs)
    with pytest.raises(ShapeError, match="`test_probs` must hold at least one image"):
        evaluate_binary(probs[:0], labels[:0])
    with pytest.raises(ShapeError, match="`val_probs` must hold at least one image"):
        evaluate_binary(probs, labels, val_probs=probs[:0], val_labels=labels[:0])
    with pytest.raises(ShapeError, match=r"`val_probs` must be \(N, 1, H, W\)"):
        evaluate_binary(probs, labels, val_probs=probs[:, 0], val_labels=labels)
    with pytest.raises(ParameterError, match="`fixed_threshold` must be in"):
        evaluate_binary(probs, labels, fixed_threshold=float("nan"))
    with pytest.raises(DataError, match="`test_labels` must hold at least one labelled pixel"):
        evaluate_binary(probs, torch.full_like(labels, IGNORE))
    with pytest.raises(DataError, match="`val_labels` must hold at least one labelled pixel"):
        evaluate_binary(probs, labels, val_probs=probs, val_labels=torch.full_like(labels, IGNORE))
    with pytest.raises(ParameterError, match="`val_labels` must hold class indices in 0..1 or 255"):
        evaluate_binary(probs, labels, val_probs=probs, val_labels=labels * 3)
