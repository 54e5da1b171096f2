"""Segmentation metrics on tensors: batched threshold sweeps, binary and multi-class scores, protocols.

Legend: N batch · K thresholds or classes · H, W pixels.

Diagnostics take tensors, not models: binary scores ``(N, 1, H, W)`` (a foreground probability or any score),
multi-class scores ``(N, K, H, W)`` or predictions ``(N, H, W)``, labels ``(N, H, W)`` int64 with ignore index
255. Everything runs batched on the device of the input; a threshold sweep is one pass, not a loop.

- :func:`threshold_grid`, :func:`confusion_at_thresholds`, :func:`binary_scores`, :func:`roc_auc`: the pieces;
- :func:`binary_report`: every binary metric at one threshold, pooled and per image (mean, std);
- :func:`select_threshold`, :func:`evaluate_binary`: the ``val`` / ``oracle`` / ``fixed`` protocols and
  polarity (inverted maps), each number saying where its threshold and polarity came from;
- :class:`ScoreHistogram`, :func:`evaluate_binary_histograms`: the same protocols on sets counted batch by
  batch, too large to hold (thresholds on bin edges);
- :func:`confusion_matrix`, :func:`multiclass_report`, :func:`multiclass_report_from_confusion`: mIoU, per-class
  IoU and Dice, pixel accuracy.

A 0/0 ratio (Dice of an empty prediction against an empty target, IoU of a class absent from both) is NaN and
left out of means.

Example:
    >>> import torch
    >>> probs = torch.tensor([0.1, 0.4, 0.6, 0.9]).view(1, 1, 2, 2)
    >>> labels = torch.tensor([[[0, 1], [0, 1]]])
    >>> counts = confusion_at_thresholds(probs, labels, threshold_grid(probs, 3))
    >>> binary_scores(counts.sum(dim=0))["dice"].tolist()
    [0.8, 0.5, 0.6666666666666666]
"""

from ._binary import (
    BINARY_METRICS,
    binary_report,
    binary_scores,
    confusion_at_thresholds,
    roc_auc,
    threshold_grid,
)
from ._multiclass import confusion_matrix, multiclass_report, multiclass_report_from_confusion
from ._protocol import (
    PROTOCOLS,
    SELECTION_METRICS,
    Choice,
    ProtocolEntry,
    ProtocolResult,
    evaluate_binary,
    select_threshold,
)
from ._streaming import ScoreHistogram, evaluate_binary_histograms

__all__ = [
    "BINARY_METRICS",
    "PROTOCOLS",
    "SELECTION_METRICS",
    "threshold_grid",
    "confusion_at_thresholds",
    "binary_scores",
    "roc_auc",
    "binary_report",
    "Choice",
    "ProtocolEntry",
    "ProtocolResult",
    "select_threshold",
    "evaluate_binary",
    "confusion_matrix",
    "multiclass_report",
    "multiclass_report_from_confusion",
    "ScoreHistogram",
    "evaluate_binary_histograms",
]
