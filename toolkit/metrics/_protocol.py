"""Evaluation protocols for binary score maps: threshold and polarity chosen on validation, on test, or fixed.

Legend: N batch · K thresholds · H, W pixels.

A score map has to be cut into a mask, and where the cut comes from decides how honest the number is:

- ``val`` (the headline): threshold and polarity are chosen on the validation set and applied to the test
  set; the test labels are never looked at;
- ``oracle`` (the protocol of Luo et al.): the best threshold on the test set itself, an optimistic upper
  bound; its polarity still comes from validation when a validation set is given;
- ``fixed``: the threshold 0.5 (``fixed_threshold``), polarity from validation or +1.

Polarity. Some label families invert the classes (a flip with ``f + b > 1``, a noise transition matrix with
a negative determinant), and a network trained on them learns the inverted map. With ``allow_inversion=True``
the inverted score ``1 - probs`` is swept too, and polarity -1 is chosen when it scores strictly higher. Each
entry records where its threshold and its polarity came from (``"validation"``, ``"test"``, ``"fixed"`` or
``"default"``) and whether test labels were used to make any choice (``uses_test_labels``), so a table can
never pass an oracle number off as an honest one. Thresholds are read on the polarity-adjusted score: polarity
-1 with threshold ``t`` predicts foreground where ``1 - probs >= t``.

References:
    Luo, Liu, Guo, Yang, "Elucidating Meta-Structures of Noisy Labels in Semantic Segmentation by Deep Neural
    Networks", arXiv 2205.00160 (evaluation by the best threshold on the test set).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Protocol

import torch

from .._check import check_in, check_int, check_range
from ..errors import DataError, MstoolWarning, ParameterError
from ._binary import (
    _as_scores,
    _auc_pair,
    _check_binary,
    _check_polarity,
    _confusion,
    _require_images,
    _summarise,
    binary_scores,
    threshold_grid,
)

__all__ = ["PROTOCOLS", "SELECTION_METRICS", "Choice", "ProtocolEntry", "ProtocolResult", "select_threshold",
           "evaluate_binary"]

PROTOCOLS = ("val", "oracle", "fixed")
"""Protocol names in report order; ``val`` is the headline."""

SELECTION_METRICS = ("dice", "iou", "accuracy")
"""Pooled metrics a threshold can be chosen by (precision and recall are maximised by degenerate cuts)."""


@dataclass(frozen=True)
class Choice:
    """A threshold and polarity picked on one set of scored images.

    Attributes:
        threshold: foreground where the polarity-adjusted score (``probs`` or ``1 - probs``) is
            ``>= threshold``.
        polarity: +1 (``probs``) or -1 (``1 - probs``).
        score: the pooled ``metric`` reached on the set it was chosen on.
        metric: the metric that was maximised.
        chosen_on: a name for that set (``"validation"``, ``"test"``).
    """

    threshold: float
    polarity: int
    score: float
    metric: str
    chosen_on: str


@dataclass(frozen=True)
class ProtocolEntry:
    """The test metrics of one protocol and where its threshold and polarity came from.

    Attributes:
        name: ``"val"``, ``"oracle"`` or ``"fixed"``.
        threshold: threshold applied to the polarity-adjusted test scores.
        polarity: +1 or -1.
        threshold_source: ``"validation"``, ``"test"`` or ``"fixed"``.
        polarity_source: ``"validation"``, ``"test"`` (no validation set was given: optimistic) or
            ``"default"`` (+1: inversion was not allowed, or there was no validation set to choose it on).
        uses_test_labels: True when the threshold or the polarity was chosen by looking at the test labels.
        metrics: the :func:`~mstool.metrics.binary_report` dict on the test set.
    """

    name: str
    threshold: float
    polarity: int
    threshold_source: str
    polarity_source: str
    uses_test_labels: bool
    metrics: dict[str, float | int] = field(repr=False)


@dataclass(frozen=True)
class ProtocolResult:
    """The three protocols on one test set. ``entries`` holds the protocols that could run, in
    :data:`PROTOCOLS` order; ``absent`` maps each one that could not to the reason; ``test`` is the scored test
    set itself, so that :meth:`report_at` can score it at a threshold some other rule chose."""

    entries: dict[str, ProtocolEntry]
    absent: dict[str, str]
    metric: str
    num_thresholds: int
    test: ScoredSet | None = field(default=None, repr=False, compare=False)

    def report_at(self, threshold: float, polarity: int = 1) -> dict[str, float | int]:
        """The test set's :func:`~mstool.metrics.binary_report` at ``threshold`` and ``polarity`` (a
        threshold no protocol chose, such as one read from the training labels); on histograms the threshold
        is the nearest bin edge, recorded as ``threshold``.

        Raises:
            ParameterError: a polarity other than +1/-1, a NaN threshold, or no test set kept.
        """
        if self.test is None:
            raise ParameterError("this ProtocolResult keeps no test set to report at another threshold")
        polarity = _check_polarity(polarity)
        return self.test.report(self.test.snap(check_range(threshold, "threshold")), polarity)

    def as_dict(self) -> dict[str, float | int | str | bool]:
        """One flat JSON-friendly dict: ``{"val/dice": ..., "val/dice_img_mean": ...,
        "val/polarity_source": ..., "oracle/...": ..., "val/absent": reason}`` (the last only for a protocol
        that did not run)."""
        out: dict[str, float | int | str | bool] = {}
        for name in PROTOCOLS:
            if name in self.absent:
                out[f"{name}/absent"] = self.absent[name]
                continue
            for key, value in self.as_row(name).items():
                if key != "protocol":
                    out[f"{name}/{key}"] = value
        return out

    def as_row(self, name: str) -> dict[str, float | int | str | bool]:
        """The flat row of one protocol that ran: ``protocol``, the provenance fields, then its metrics."""
        check_in(name, "name", list(self.entries))
        e = self.entries[name]
        return {"protocol": e.name, "threshold_source": e.threshold_source,
                "polarity_source": e.polarity_source, "uses_test_labels": e.uses_test_labels, **e.metrics}

    def as_rows(self) -> list[dict[str, float | int | str | bool]]:
        """One flat row per protocol that ran (a table's rows); see ``absent`` for the others."""
        return [self.as_row(name) for name in PROTOCOLS if name in self.entries]


# -------------------------------------------------------------------------------------------- functions
def select_threshold(
    probs: torch.Tensor,
    labels: torch.Tensor,
    *,
    num_thresholds: int = 50,
    metric: str = "dice",
    allow_inversion: bool = False,
    chosen_on: str = "validation",
    ignore_index: int = 255,
) -> Choice:
    """The threshold (and, when allowed, the polarity) that maximises a pooled metric on a set.

    ``num_thresholds`` levels strictly between the smallest and the largest score (:func:`threshold_grid`) are
    swept in one batched pass. When several thresholds reach the best score (a plateau, as for a map that
    separates the classes perfectly), the median of them is taken, which sits in the middle of the plateau.
    With ``allow_inversion`` the inverted map ``1 - probs`` is swept as well and wins only when strictly
    better.

    Args:
        probs: ``(N, 1, H, W)`` finite float scores, ``N >= 1``.
        labels: ``(N, H, W)`` int labels, 0, 1 or ``ignore_index``; at least one labelled pixel.
        num_thresholds: number of levels ``K >= 1``.
        metric: one of :data:`SELECTION_METRICS`, pooled over all pixels of the set.
        allow_inversion: also consider polarity -1.
        chosen_on: a name for the set, recorded in the :class:`Choice`.
        ignore_index: label value that marks unlabelled pixels.

    Returns:
        A :class:`Choice`.

    Raises:
        ShapeError: an empty batch or mismatched shapes.
        DTypeError, DeviceMismatchError: as for :func:`mstool.metrics.confusion_at_thresholds`.
        DataError: no labelled pixel.
        ParameterError: an unknown metric, ``num_thresholds < 1``.

    Warns:
        MstoolWarning: constant scores (no threshold separates anything), or no foreground pixel while
        choosing by Dice or IoU (every threshold then scores 0, so the choice is arbitrary).

    Example:
        >>> probs = torch.tensor([0.1, 0.2, 0.3, 0.4]).view(1, 1, 2, 2)
        >>> labels = torch.tensor([[[1, 1], [0, 0]]])
        >>> choice = select_threshold(probs, labels, num_thresholds=5, allow_inversion=True)
        >>> choice.polarity, round(choice.threshold, 2), choice.score
        (-1, 0.75, 1.0)
    """
    _check_binary(probs, labels, ignore_index)
    _require_images(probs, "probs")
    check_in(metric, "metric", SELECTION_METRICS)
    num_thresholds = _check_num(num_thresholds)
    polarities = (1, -1) if allow_inversion else (1,)
    return _best_choice(_TensorSet(probs, labels, ignore_index), polarities, num_thresholds, metric, chosen_on,
                        "labels")


def evaluate_binary(
    test_probs: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    val_probs: torch.Tensor | None = None,
    val_labels: torch.Tensor | None = None,
    num_thresholds: int = 50,
    allow_inversion: bool = False,
    fixed_threshold: float = 0.5,
    metric: str = "dice",
    ignore_index: int = 255,
) -> ProtocolResult:
    """Evaluate binary score maps under the ``val``, ``oracle`` and ``fixed`` protocols.

    - ``val``: threshold and polarity chosen on the validation set (by pooled ``metric``), applied to the test
      set. Absent, with a reason, when no validation set is given.
    - ``oracle``: the threshold that maximises the pooled ``metric`` on the test set itself (the paper's
      protocol). Polarity from validation when given, otherwise chosen on the test set too (flagged by
      ``polarity_source="test"``).
    - ``fixed``: ``fixed_threshold`` (0.5), polarity from validation when given, otherwise +1.

    Each entry carries the full :func:`~mstool.metrics.binary_report` on the test set (pooled and per-image
    mean/std, AUC in the entry's polarity).

    Args:
        test_probs: ``(N, 1, H, W)`` finite float test scores, ``N >= 1``.
        test_labels: ``(N, H, W)`` int test labels, 0, 1 or ``ignore_index``.
        val_probs: ``(M, 1, H', W')`` validation scores, or None.
        val_labels: ``(M, H', W')`` validation labels, or None (given together with ``val_probs``).
        num_thresholds: levels swept between the smallest and largest score of the set a choice is made on.
        allow_inversion: let polarity -1 (``1 - probs``) be chosen.
        fixed_threshold: the threshold of the ``fixed`` protocol.
        metric: the pooled metric thresholds are chosen by, one of :data:`SELECTION_METRICS`.
        ignore_index: label value that marks unlabelled pixels.

    Returns:
        A :class:`ProtocolResult`; ``as_dict()`` flattens it for JSON.

    Raises:
        ParameterError: only one of ``val_probs`` and ``val_labels`` given; a bad metric or threshold.
        ShapeError: an empty batch or mismatched shapes.
        DTypeError, DeviceMismatchError: as for :func:`mstool.metrics.confusion_at_thresholds`.
        DataError: a set without any labelled pixel.

    Example:
        >>> test = torch.tensor([0.1, 0.2, 0.3, 0.4]).view(1, 1, 2, 2)
        >>> labels = torch.tensor([[[0, 0], [1, 1]]])
        >>> result = evaluate_binary(test, labels, val_probs=test, val_labels=labels, num_thresholds=5)
        >>> result.entries["val"].metrics["dice"], result.entries["fixed"].metrics["dice"]
        (1.0, 0.0)
        >>> result.as_dict()["oracle/uses_test_labels"]
        True
    """
    _check_binary(test_probs, test_labels, ignore_index, "test_probs", "test_labels")
    _require_images(test_probs, "test_probs")
    check_in(metric, "metric", SELECTION_METRICS)
    num_thresholds = _check_num(num_thresholds)
    fixed_threshold = check_range(fixed_threshold, "fixed_threshold")
    if (val_probs is None) != (val_labels is None):
        raise ParameterError("`val_probs` and `val_labels` must be given together; got only "
                             + ("`val_probs`" if val_labels is None else "`val_labels`"))
    test = _TensorSet(test_probs, test_labels, ignore_index)
    val = None
    if val_probs is not None:
        _check_binary(val_probs, val_labels, ignore_index, "val_probs", "val_labels")
        _require_images(val_probs, "val_probs")
        val = _TensorSet(val_probs, val_labels, ignore_index)
    return run_protocols(test, val, num_thresholds=num_thresholds, allow_inversion=allow_inversion,
                         fixed_threshold=fixed_threshold, metric=metric)


def run_protocols(test: ScoredSet, val: ScoredSet | None, *, num_thresholds: int, allow_inversion: bool,
                  fixed_threshold: float, metric: str) -> ProtocolResult:
    """The three protocols on checked scored sets (the body of :func:`evaluate_binary`, shared with the
    histograms of :mod:`mstool.metrics` for sets too large to hold)."""
    entries: dict[str, ProtocolEntry] = {}
    absent: dict[str, str] = {}
    if val is not None:
        val_choice = _best_choice(val, (1, -1) if allow_inversion else (1,), num_thresholds, metric, "validation",
                                  "val_labels")
        polarity, polarity_source = val_choice.polarity, "validation" if allow_inversion else "default"
        entries["val"] = ProtocolEntry("val", val_choice.threshold, polarity, "validation", polarity_source,
                                       False, test.report(val_choice.threshold, polarity))
    else:
        absent["val"] = "no validation set was given, so no threshold could be chosen without the test labels"
        polarity, polarity_source = 1, "default"

    polarity_on_test = allow_inversion and val is None
    oracle_polarities = (1, -1) if polarity_on_test else (polarity,)
    oracle = _best_choice(test, oracle_polarities, num_thresholds, metric, "test", "test_labels")
    entries["oracle"] = ProtocolEntry("oracle", oracle.threshold, oracle.polarity, "test",
                                      "test" if polarity_on_test else polarity_source, True,
                                      test.report(oracle.threshold, oracle.polarity))
    fixed = test.snap(fixed_threshold)
    entries["fixed"] = ProtocolEntry("fixed", fixed, polarity, "fixed", polarity_source, False,
                                     test.report(fixed, polarity))
    ordered = {name: entries[name] for name in PROTOCOLS if name in entries}
    return ProtocolResult(ordered, absent, metric, num_thresholds, test)


# -------------------------------------------------------------------------------------------- helpers
class ScoredSet(Protocol):
    """What the protocols need of a set of scored images: a threshold sweep, a report at one threshold, and the
    checks that warn about a degenerate set. Tensors in memory (:func:`evaluate_binary`) and histograms
    accumulated batch by batch (:class:`~mstool.metrics.ScoreHistogram`) both provide it."""

    def check(self, metric: str, labels_name: str) -> None:
        """Raise DataError without a labelled pixel; warn on constant scores or (Dice, IoU) no foreground."""

    def sweep(self, polarity: int, num: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(K,)`` thresholds on the polarity-adjusted score and the pooled ``(K, 4)`` counts at them."""

    def report(self, threshold: float, polarity: int) -> dict[str, float | int]:
        """The :func:`~mstool.metrics.binary_report` dict at one threshold."""

    def snap(self, threshold: float) -> float:
        """The threshold the set can report at nearest ``threshold``."""


class _TensorSet:
    """A scored set held as tensors; the AUC is computed once and shared by both polarities."""

    def __init__(self, probs: torch.Tensor, labels: torch.Tensor, ignore_index: int) -> None:
        self.probs, self.labels, self.ignore_index = probs, labels, ignore_index
        self._auc: tuple[torch.Tensor, torch.Tensor] | None = None

    def check(self, metric: str, labels_name: str) -> None:
        warn_degenerate(labelled=bool((self.labels != self.ignore_index).any()),
                        constant=bool(self.probs.min() == self.probs.max()),
                        foreground=bool((self.labels == 1).any()), metric=metric, labels_name=labels_name,
                        ignore_index=self.ignore_index)

    def sweep(self, polarity: int, num: int) -> tuple[torch.Tensor, torch.Tensor]:
        s = _as_scores(self.probs, polarity)
        thresholds = threshold_grid(s, num)
        return thresholds, _confusion(s, self.labels, thresholds, self.ignore_index).sum(dim=0)

    def report(self, threshold: float, polarity: int) -> dict[str, float | int]:
        if self._auc is None:
            self._auc = _auc_pair(_as_scores(self.probs), self.labels, self.ignore_index)
        pooled, per_image = self._auc
        aucs = (pooled, per_image) if polarity == 1 else (1 - pooled, 1 - per_image)
        s = _as_scores(self.probs, polarity)
        t = torch.tensor([threshold], device=s.device, dtype=s.dtype)
        counts = _confusion(s, self.labels, t, self.ignore_index)[:, 0]
        return _summarise(counts, aucs, threshold=threshold, polarity=polarity)

    def snap(self, threshold: float) -> float:
        return threshold


def _check_num(num_thresholds: int) -> int:
    return check_int(num_thresholds, "num_thresholds", low=1)


def _best_choice(scored: ScoredSet, polarities: tuple[int, ...], num: int, metric: str, chosen_on: str,
                 labels_name: str) -> Choice:
    """Sweep each polarity on a checked set; a later polarity wins only with a strictly higher score."""
    scored.check(metric, labels_name)
    best: Choice | None = None
    for polarity in polarities:
        thresholds, counts = scored.sweep(polarity, num)
        scores = binary_scores(counts)[metric]
        k = _plateau_median(scores)
        candidate = Choice(float(thresholds[k]), polarity, float(scores[k]), metric, chosen_on)
        if best is None or candidate.score > best.score:
            best = candidate
    return best


def warn_degenerate(*, labelled: bool, constant: bool, foreground: bool, metric: str, labels_name: str,
                    ignore_index: int) -> None:
    """Refuse a set without a labelled pixel; warn when no threshold can mean anything on it."""
    if not labelled:
        raise DataError(f"`{labels_name}` must hold at least one labelled pixel to choose a threshold on; "
                        f"every pixel is ignore_index ({ignore_index}) or the images are empty")
    if constant:
        warnings.warn("the scores are constant, so no threshold separates anything; every level predicts "
                      "every pixel foreground", MstoolWarning, stacklevel=5)
    if metric in ("dice", "iou") and not foreground:
        warnings.warn(f"`{labels_name}` hold no foreground pixel, so every threshold scores {metric} 0 and "
                      "the choice is arbitrary", MstoolWarning, stacklevel=5)


def _plateau_median(scores: torch.Tensor) -> int:
    """Index of the median of the thresholds that reach the best (non-NaN) score."""
    filled = torch.nan_to_num(scores, nan=-torch.inf)
    tied = torch.nonzero(filled == filled.max()).flatten()
    return int(tied[(tied.numel() - 1) // 2])
