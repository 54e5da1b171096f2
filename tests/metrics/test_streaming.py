"""Tests for mstool.metrics._streaming: the protocols on score histograms counted batch by batch."""

from __future__ import annotations

import pytest
import torch

from mstool.errors import DataError, MstoolWarning, ParameterError, ShapeError
from mstool.metrics import (
    ScoreHistogram,
    binary_report,
    confusion_matrix,
    evaluate_binary,
    evaluate_binary_histograms,
    multiclass_report,
    multiclass_report_from_confusion,
)


def _noisy_maps(n: int = 6, size: int = 24, seed: int = 0):
    """Probabilities that rank the labels well but not perfectly, with some ignored pixels."""
    g = torch.Generator().manual_seed(seed)
    labels = (torch.rand(n, size, size, generator=g) < 0.3).long()
    logits = 2.0 * (labels.float() - 0.5)[:, None] + torch.randn(n, 1, size, size, generator=g)
    labels[:, 0, :3] = 255
    return torch.sigmoid(logits), labels


def _histogram(probs, labels, batch: int = 4, **kwargs) -> ScoreHistogram:
    hist = ScoreHistogram(**kwargs)
    for start in range(0, probs.shape[0], batch):
        hist.update(probs[start:start + batch], labels[start:start + batch])
    return hist


def test_counts_at_an_edge_equal_the_tensor_report():
    probs, labels = _noisy_maps()
    hist = _histogram(probs, labels)
    for polarity in (1, -1):
        t = hist.snap(0.3719)
        assert t == 380 / 1024 and hist.snap(t) == t  # down to an edge; an edge is its own
        want = binary_report(probs, labels, threshold=t, polarity=polarity)
        got = hist.report(0.3719, polarity)
        for key in ("tp", "fp", "fn", "tn", "dice", "dice_img_mean", "iou_img_std", "auc_img_mean"):
            assert got[key] == pytest.approx(want[key], abs=1e-12), (polarity, key)
        assert got["auc"] == pytest.approx(want["auc"], abs=1e-4)
        assert got["threshold"] == t and got["n_images"] == 6


def test_batches_add_up_to_one_batch():
    probs, labels = _noisy_maps()
    one, several = _histogram(probs, labels, batch=6), _histogram(probs, labels, batch=1)
    assert torch.equal(one.counts(0.5), several.counts(0.5))
    assert one.report(0.5, 1) == several.report(0.5, 1)


def test_protocols_match_the_tensor_path_within_a_bin():
    probs, labels = _noisy_maps(seed=1)
    val_probs, val_labels = _noisy_maps(seed=2)
    want = evaluate_binary(probs, labels, val_probs=val_probs, val_labels=val_labels).as_dict()
    got = evaluate_binary_histograms(_histogram(probs, labels), val=_histogram(val_probs, val_labels)).as_dict()
    assert set(got) == set(want)
    # the validation choice lands on the same grid point, moved to an edge; the oracle's Dice is a near-plateau,
    # where a move of half a bin may pick a neighbouring grid point of the same Dice
    assert got["val/threshold"] == pytest.approx(want["val/threshold"], abs=1 / 1024)
    assert got["oracle/threshold"] == pytest.approx(want["oracle/threshold"], abs=0.05)
    for name in ("val", "oracle", "fixed"):
        assert got[f"{name}/dice"] == pytest.approx(want[f"{name}/dice"], abs=2e-3)
        assert got[f"{name}/auc"] == pytest.approx(want[f"{name}/auc"], abs=1e-4)
    assert got["fixed/dice"] == want["fixed/dice"]  # 0.5 is an edge: exact


def test_protocols_report_at_another_threshold_as_the_tensor_path_does():
    probs, labels = _noisy_maps(seed=4)
    tensors = evaluate_binary(probs, labels)
    hist = evaluate_binary_histograms(_histogram(probs, labels))
    for polarity in (1, -1):
        want = binary_report(probs, labels, threshold=0.3719, polarity=polarity)
        assert tensors.report_at(0.3719, polarity) == pytest.approx(want)
        on_edges = hist.report_at(0.3719, polarity)  # down to the bin edge, which it records
        assert on_edges["threshold"] == 380 / 1024 and on_edges["dice"] == pytest.approx(want["dice"], abs=0.02)
    assert hist.report_at(0.5)["dice"] == hist.entries["fixed"].metrics["dice"]
    with pytest.raises(ParameterError, match="polarity"):
        tensors.report_at(0.5, 0)
    with pytest.raises(ParameterError, match="threshold"):
        hist.report_at(float("nan"))


def test_inverted_maps_choose_polarity_minus_one_on_validation():
    probs, labels = _noisy_maps(seed=3)
    flipped = 1 - probs
    result = evaluate_binary_histograms(_histogram(flipped, labels), val=_histogram(flipped, labels),
                                        allow_inversion=True)
    assert result.entries["val"].polarity == -1
    assert result.entries["val"].metrics["dice"] > 0.6
    plain = evaluate_binary_histograms(_histogram(flipped, labels), val=_histogram(flipped, labels))
    assert plain.entries["val"].polarity == 1 and plain.entries["val"].metrics["dice"] < 0.6


def test_without_validation_the_val_protocol_is_absent():
    probs, labels = _noisy_maps()
    result = evaluate_binary_histograms(_histogram(probs, labels))
    assert "val" in result.absent and list(result.entries) == ["oracle", "fixed"]


def test_bad_input_is_refused():
    probs, labels = _noisy_maps()
    hist = ScoreHistogram()
    with pytest.raises(DataError, match=r"probabilities in \[0, 1\]"):
        hist.update(probs * 2, labels)
    with pytest.raises(ShapeError, match="at least one image"):
        evaluate_binary_histograms(hist)
    with pytest.raises(ParameterError, match="must be a ScoreHistogram"):
        evaluate_binary_histograms(probs)
    with pytest.raises(ParameterError, match="same bins"):
        evaluate_binary_histograms(_histogram(probs, labels), val=_histogram(probs, labels, bins=64))
    with pytest.raises(DataError, match="labelled pixel"):
        evaluate_binary_histograms(_histogram(probs, torch.full_like(labels, 255)))


def test_constant_scores_warn_and_score_as_the_tensor_path_does():
    _, labels = _noisy_maps()
    constant = torch.full((6, 1, 24, 24), 0.3001)  # inside a bin: a threshold at it must still take every pixel
    with pytest.warns(MstoolWarning, match="constant"):
        got = evaluate_binary_histograms(_histogram(constant, labels), val=_histogram(constant, labels)).as_dict()
    with pytest.warns(MstoolWarning, match="constant"):
        want = evaluate_binary(constant, labels, val_probs=constant, val_labels=labels).as_dict()
    assert got["val/dice"] == want["val/dice"] > 0.4 and got["val/fp"] == want["val/fp"]


def test_multiclass_report_from_confusion_equals_the_report():
    g = torch.Generator().manual_seed(0)
    pred, labels = torch.randint(0, 3, (4, 9, 9), generator=g), torch.randint(0, 3, (4, 9, 9), generator=g)
    labels[0, 0] = 255
    cm = confusion_matrix(pred, labels, 3, reduction="none")
    assert multiclass_report_from_confusion(cm) == multiclass_report(pred, labels, 3)
    with pytest.raises(ShapeError, match=r"\(N, K, K\)"):
        multiclass_report_from_confusion(cm[0])


def test_histograms_on_the_accelerator_equal_the_cpu(accel):
    probs, labels = _noisy_maps()
    on_cpu, on_accel = _histogram(probs, labels), _histogram(probs.to(accel), labels.to(accel))
    assert torch.equal(on_cpu.counts(0.25, -1), on_accel.counts(0.25, -1))
    assert on_cpu.report(0.5, 1)["auc_img_mean"] == pytest.approx(on_accel.report(0.5, 1)["auc_img_mean"], abs=1e-6)
